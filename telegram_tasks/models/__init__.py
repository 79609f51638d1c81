"""The app's models, by what they record: accounts (and their memberships and one-shot
successes), tasks, what the passes keep between runs, and the operator's records (pass runs,
the hourly rollup). All importable from here, as migrations and callers name them."""

from telegram_tasks.models.accounts import Membership, OneShot, TelegramAccount
from telegram_tasks.models.passes import ClaimsCheckpoint, OrderPassStats, OrderTurn
from telegram_tasks.models.records import (
    GenerationPass,
    PassRun,
    RollupMark,
    TaskHour,
    TaskMinute,
    TaskTotal,
)
from telegram_tasks.models.tasks import (
    LIVE_STATUSES,
    ExecutionMode,
    TaskStatus,
    TelegramTask,
    default_execution_mode,
)

# The provider fleets, registered with the app's models here.
from telegram_tasks.providers import Provider, ProviderToken, default_provider_id

# ULIDs live in their own module; re-exported here, where migrations name ``new_ulid``.
from telegram_tasks.ulid import CROCKFORD, new_ulid, ulid_floor, ulid_time

__all__ = [
    "CROCKFORD",
    "LIVE_STATUSES",
    "ClaimsCheckpoint",
    "ExecutionMode",
    "GenerationPass",
    "Membership",
    "OneShot",
    "OrderPassStats",
    "OrderTurn",
    "PassRun",
    "Provider",
    "ProviderToken",
    "RollupMark",
    "TaskHour",
    "TaskMinute",
    "TaskStatus",
    "TaskTotal",
    "TelegramAccount",
    "TelegramTask",
    "default_execution_mode",
    "default_provider_id",
    "new_ulid",
    "ulid_floor",
    "ulid_time",
]
