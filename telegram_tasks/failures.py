"""What a provider's failure means, by its Telegram error code: the one code parser, one table,
one function that turns a failure into a plan."""

from __future__ import annotations

import enum
import random
import re
from dataclasses import dataclass

from telegram_tasks.conf import app_settings


class Reason(enum.StrEnum):
    """Why a task failed (``TelegramTask.failure_reason``): every reason any path writes."""

    PROVIDER_FAILED = "provider_failed"  # the provider reported an error with no known code
    NOT_PARTICIPANT = "not_participant"  # an unsubscribe from a channel the account was not in
    FLOOD_WAIT = "flood_wait"
    WAIT_TOO_LONG = "wait_too_long"  # a wait longer than MAX_WAIT_SECONDS: the order moves on
    PEER_FLOOD = "peer_flood"
    SLOWMODE_WAIT = "slowmode_wait"
    ACCOUNT_DEAD = "account_dead"
    CHANNELS_TOO_MUCH = "channels_too_much"
    TARGET_UNAVAILABLE = "target_unavailable"
    # Telegram refused a parameter or the post it acts on (the order ends, or a mix goes on
    # without the emoji):
    REACTION_INVALID = "reaction_invalid"  # the channel does not allow that emoji
    POST_UNAVAILABLE = "post_unavailable"  # the post is gone (MESSAGE_ID_INVALID)
    POLL_CLOSED = "poll_closed"
    OPTION_INVALID = "option_invalid"  # the poll has no such option
    START_PARAM_INVALID = "start_param_invalid"  # the bot refuses the start parameter
    ATTEMPTS_EXHAUSTED = "attempts_exhausted"
    EXPIRED = "expired"  # queued, never handed out before its reservation lapsed
    PENDING_TIMEOUT = "pending_timeout"
    LEASE_ABANDONED = "lease_abandoned"
    LOCK_LOST = "lock_lost"
    # Reserved against a Redis that had lost its last writes (a crash, a failover): once heal
    # restored them, the reservation would be refused (a one-shot already done, a cap reached…).
    CLAIMS_CONFLICT = "claims_conflict"
    ACCOUNT_INACTIVE = "account_inactive"
    ACCOUNT_HELD = "account_held"  # its account's hold outlasts the task's window
    PROVIDER_DISABLED = "provider_disabled"  # its account's provider was disabled
    ORDER_PAUSED = "order_paused"
    ORDER_CANCELED = "order_canceled"
    ORDER_INACTIVE = "order_inactive"  # its order finished or stopped meanwhile
    ADMIN_FAILED = "admin_failed"
    PUSH_UNREACHABLE = "push_unreachable"  # push: never reached the provider, PUSH_MAX_RETRIES
    # push: the provider refused the hand-out; written as push_http_<status> (push_rejected)
    PUSH_REJECTED = "push_http"


class Scope(enum.StrEnum):
    TASK = "task"  # this task failed; nothing else is wrong
    RETRY = "retry"  # the task may run again later on the same account
    ACCOUNT_HOLD = "account_hold"  # the account must wait; the task runs again after the wait
    ACCOUNT_FLOOD = "account_flood"  # the account is flood-limited for long; task goes elsewhere
    ACCOUNT_DEAD = "account_dead"  # the account is gone: deactivate, release its queued tasks
    ACCOUNT_FULL = "account_full"  # the account joined too many channels: no subscribe for now
    # The channel, invite, post or parameter is unusable: the order stops.
    TARGET_DEAD = "target_dead"
    # The channel refuses the task's emoji: the order's mix drops it; the order stops when it was
    # its only one.
    REACTION_REFUSED = "reaction_refused"
    NOT_MEMBER = "not_member"  # the account is not in the channel (any more): its membership ends


R = Reason
# Telegram error code -> (scope, failure reason kept on the task)
TABLE: dict[str, tuple[Scope, Reason]] = {
    "FLOOD_WAIT": (Scope.ACCOUNT_HOLD, R.FLOOD_WAIT),
    "FLOOD_PREMIUM_WAIT": (Scope.ACCOUNT_HOLD, R.FLOOD_WAIT),
    "PEER_FLOOD": (Scope.ACCOUNT_FLOOD, R.PEER_FLOOD),
    "SLOWMODE_WAIT": (Scope.RETRY, R.SLOWMODE_WAIT),
    "AUTH_KEY_UNREGISTERED": (Scope.ACCOUNT_DEAD, R.ACCOUNT_DEAD),
    "AUTH_KEY_DUPLICATED": (Scope.ACCOUNT_DEAD, R.ACCOUNT_DEAD),
    "SESSION_REVOKED": (Scope.ACCOUNT_DEAD, R.ACCOUNT_DEAD),
    "SESSION_EXPIRED": (Scope.ACCOUNT_DEAD, R.ACCOUNT_DEAD),
    "USER_DEACTIVATED": (Scope.ACCOUNT_DEAD, R.ACCOUNT_DEAD),
    "USER_DEACTIVATED_BAN": (Scope.ACCOUNT_DEAD, R.ACCOUNT_DEAD),
    "CHANNELS_TOO_MUCH": (Scope.ACCOUNT_FULL, R.CHANNELS_TOO_MUCH),
    "CHANNEL_PRIVATE": (Scope.TARGET_DEAD, R.TARGET_UNAVAILABLE),
    "CHANNEL_INVALID": (Scope.TARGET_DEAD, R.TARGET_UNAVAILABLE),
    "USERNAME_NOT_OCCUPIED": (Scope.TARGET_DEAD, R.TARGET_UNAVAILABLE),
    "USERNAME_INVALID": (Scope.TARGET_DEAD, R.TARGET_UNAVAILABLE),
    "INVITE_HASH_EXPIRED": (Scope.TARGET_DEAD, R.TARGET_UNAVAILABLE),
    "INVITE_HASH_INVALID": (Scope.TARGET_DEAD, R.TARGET_UNAVAILABLE),
    "USER_NOT_PARTICIPANT": (Scope.NOT_MEMBER, R.NOT_PARTICIPANT),
    "BOT_INVALID": (Scope.TARGET_DEAD, R.TARGET_UNAVAILABLE),
    "REACTION_INVALID": (Scope.REACTION_REFUSED, R.REACTION_INVALID),
    "MESSAGE_ID_INVALID": (Scope.TARGET_DEAD, R.POST_UNAVAILABLE),
    "MSG_ID_INVALID": (Scope.TARGET_DEAD, R.POST_UNAVAILABLE),
    "MESSAGE_POLL_CLOSED": (Scope.TARGET_DEAD, R.POLL_CLOSED),
    "OPTION_INVALID": (Scope.TARGET_DEAD, R.OPTION_INVALID),
    "START_PARAM_INVALID": (Scope.TARGET_DEAD, R.START_PARAM_INVALID),
}

PEER_FLOOD_HOLD_SECONDS = 24 * 3600
# Many accounts released by one wave of FLOOD_WAITs should not all come back in the same second.
JITTER_FRACTION = 0.1
WITH_SECONDS = re.compile(r"^(?P<name>[A-Z_]+?)_(?P<seconds>\d{1,9})$")
# What a Telegram error code looks like: FLOOD_WAIT_30, CHANNEL_PRIVATE, …
ERROR_CODE = re.compile(r"^([A-Z][A-Z0-9_]*?)(?:_(\d+))?$")


@dataclass(frozen=True)
class Plan:
    scope: Scope
    reason: Reason
    retry_after: int | None = None  # run the task again after this many seconds
    hold_seconds: float = 0.0  # keep the account off every action this long


def push_rejected(status: int) -> str:
    """The failure reason of a push the provider refused with HTTP ``status`` (a 4xx)."""
    return f"{Reason.PUSH_REJECTED}_{status}"


def error_code(text: str) -> str:
    """The Telegram error code a provider's message starts with, or "":
    "FLOOD_WAIT_30 (caused by …)" → "FLOOD_WAIT_30"."""
    head = text.strip().split(" ", 1)[0].split(":", 1)[0][:64]
    return head if ERROR_CODE.match(head) else ""


def parse(code: str | None) -> tuple[str | None, int | None]:
    """("FLOOD_WAIT", 30) from "FLOOD_WAIT_30"; the code itself when it carries no number."""
    if not code:
        return None, None
    match = WITH_SECONDS.match(code)
    if match and match["name"] in TABLE:
        return match["name"], int(match["seconds"])
    return code, None


def plan_failure(
    code: str | None,
    retry_after: int | None,
    rng: random.Random | None = None,
    *,
    max_wait: int | None = None,
) -> Plan:
    """What to do about one failed report. A wait longer than ``max_wait`` (default
    MAX_WAIT_SECONDS) is not waited for: the task fails (``wait_too_long``) and its order moves
    on to other accounts; an account-wide wait still holds the account, for ``max_wait``."""
    longest = app_settings.MAX_WAIT_SECONDS if max_wait is None else max_wait
    name, seconds = parse(code)
    scope, reason = TABLE.get(name or "", (Scope.TASK, Reason.PROVIDER_FAILED))
    wait = seconds if seconds is not None else retry_after
    rng = rng or random
    if scope is Scope.ACCOUNT_HOLD:
        wait = wait or 60
        if wait > longest:
            return Plan(scope, Reason.WAIT_TOO_LONG, hold_seconds=longest)
        jittered = wait + rng.uniform(0, wait * JITTER_FRACTION) + rng.uniform(0, 3)
        return Plan(scope, reason, retry_after=int(jittered + 0.999), hold_seconds=jittered)
    if scope is Scope.RETRY:
        if (wait or 0) > longest:
            return Plan(scope, Reason.WAIT_TOO_LONG)
        return Plan(scope, reason, retry_after=wait or 10)
    if scope is Scope.ACCOUNT_FLOOD:
        hold = max(PEER_FLOOD_HOLD_SECONDS, min(wait or 0, longest))
        return Plan(scope, reason, hold_seconds=hold)
    if scope is Scope.TASK and retry_after:
        # An unknown error with retry_after: the provider asks for a wait (issue #5 semantics).
        return Plan(Scope.ACCOUNT_HOLD, reason, retry_after=retry_after, hold_seconds=retry_after)
    return Plan(scope, reason)
