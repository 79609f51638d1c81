"""The services of telegram_tasks: every write and every task state transition, one module per
phase of a task's life. Interfaces (DRF views, Celery tasks, commands, admin actions, the orders
app) import from here.

    generation    due orders become tasks (RESERVE); memberships whose time is up unsubscribe
    due_orders    the pass's page of due orders (locked, keyset) and their slots in the tick
    pass_stats    what each pass found for the orders short of accounts
    available     announce tasks now available (NOTIFY; the API's long-poll listens)
    memberships   automatic unsubscribes; memberships that ended without one
    dispatch      the push dispatcher: lease, hand to a transport, apply the answers
    pull          lease a batch of tasks
    report        the one completion path (done → COMMIT; failed, pending → ``outcomes``)
    leases        extend, release
    housekeeping  end what can no longer finish, keep live locks, rebuild when Redis lost state
    rebuild       the claim state from the ledger
    heal          every housekeeping pass re-applies recent claim effects (partial Redis loss)
    retention     finished tasks older than TASK_RETENTION_DAYS go, in bounded batches
    operator      fail, requeue; cancel, pause, resume, stop orders
    accounts      sync, deactivate, reactivate, clear holds, release an account's tasks
    providers     the fleets: make, tokens (add, revoke), disable, enable; routing
    rollup        hourly counts for the dashboard and the metrics; the passes' record
    farm          the accounts by state (active, held, cooling, capped, inactive)
    settle        the shared kernel: end, re-arm, mark done, settle a lost ledger step
    done_sql      the statements that mark tasks done (one-shot rows, memberships)
    orders        every write to the order model
    sql           table names, status fragments, the fetch helper
"""

from telegram_tasks.services.accounts import (
    SyncResult,
    accounts_clear_hold,
    accounts_deactivate,
    accounts_reactivate,
    accounts_sync,
    tasks_release_for_accounts,
)
from telegram_tasks.services.dispatch import PushSummary, push_breaker, push_waiting, tasks_push
from telegram_tasks.services.due_orders import order_slots
from telegram_tasks.services.generation import GenerationSummary, tasks_generate
from telegram_tasks.services.housekeeping import HousekeepingSummary, tasks_housekeep
from telegram_tasks.services.leases import LeaseOut, LeaseRef, tasks_extend, tasks_release
from telegram_tasks.services.operator import (
    orders_cancel,
    orders_pause,
    orders_resume,
    orders_stop,
    tasks_fail,
    tasks_requeue,
)
from telegram_tasks.services.providers import (
    ProviderError,
    provider_token_add,
    provider_token_revoke,
    providers_create,
    providers_disable,
    providers_enable,
)
from telegram_tasks.services.pull import PullResult, lease_params, lease_sql, tasks_pull
from telegram_tasks.services.rebuild import (
    RebuildSummary,
    claims_rebuild,
    claims_restore_if_lost,
)
from telegram_tasks.services.report import tasks_report
from telegram_tasks.services.report_items import ReportIn, ReportOut, ReportState
from telegram_tasks.services.retention import (
    RetentionSummary,
    retention_preview,
    retention_purge,
)
from telegram_tasks.services.settle import settle_committed as tasks_settle_committed

__all__ = [
    "GenerationSummary",
    "HousekeepingSummary",
    "LeaseOut",
    "LeaseRef",
    "ProviderError",
    "PullResult",
    "PushSummary",
    "RebuildSummary",
    "ReportIn",
    "ReportOut",
    "ReportState",
    "RetentionSummary",
    "SyncResult",
    "accounts_clear_hold",
    "accounts_deactivate",
    "accounts_reactivate",
    "accounts_sync",
    "claims_rebuild",
    "claims_restore_if_lost",
    "lease_params",
    "lease_sql",
    "order_slots",
    "orders_cancel",
    "orders_pause",
    "orders_resume",
    "orders_stop",
    "provider_token_add",
    "provider_token_revoke",
    "providers_create",
    "providers_disable",
    "providers_enable",
    "push_breaker",
    "push_waiting",
    "retention_preview",
    "retention_purge",
    "tasks_extend",
    "tasks_fail",
    "tasks_generate",
    "tasks_housekeep",
    "tasks_pull",
    "tasks_push",
    "tasks_release",
    "tasks_release_for_accounts",
    "tasks_report",
    "tasks_requeue",
    "tasks_settle_committed",
]
