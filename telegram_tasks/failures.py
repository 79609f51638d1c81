"""What a provider's failure means, by its Telegram error code: the one code parser, one table,
one function that turns a failure into a plan."""

from __future__ import annotations

import enum
import random
import re
from dataclasses import dataclass


class Scope(enum.StrEnum):
    TASK = "task"  # this task failed; nothing else is wrong
    RETRY = "retry"  # the task may run again later on the same account
    ACCOUNT_HOLD = "account_hold"  # the account must wait; the task runs again after the wait
    ACCOUNT_FLOOD = "account_flood"  # the account is flood-limited for long; task goes elsewhere
    ACCOUNT_DEAD = "account_dead"  # the account is gone: deactivate, release its queued tasks
    ACCOUNT_FULL = "account_full"  # the account joined too many channels: no subscribe for now
    TARGET_DEAD = "target_dead"  # the channel or invite is unusable: the order stops


# Telegram error code -> (scope, failure reason kept on the task)
TABLE: dict[str, tuple[Scope, str]] = {
    "FLOOD_WAIT": (Scope.ACCOUNT_HOLD, "flood_wait"),
    "FLOOD_PREMIUM_WAIT": (Scope.ACCOUNT_HOLD, "flood_wait"),
    "PEER_FLOOD": (Scope.ACCOUNT_FLOOD, "peer_flood"),
    "SLOWMODE_WAIT": (Scope.RETRY, "slowmode_wait"),
    "AUTH_KEY_UNREGISTERED": (Scope.ACCOUNT_DEAD, "account_dead"),
    "AUTH_KEY_DUPLICATED": (Scope.ACCOUNT_DEAD, "account_dead"),
    "SESSION_REVOKED": (Scope.ACCOUNT_DEAD, "account_dead"),
    "SESSION_EXPIRED": (Scope.ACCOUNT_DEAD, "account_dead"),
    "USER_DEACTIVATED": (Scope.ACCOUNT_DEAD, "account_dead"),
    "USER_DEACTIVATED_BAN": (Scope.ACCOUNT_DEAD, "account_dead"),
    "CHANNELS_TOO_MUCH": (Scope.ACCOUNT_FULL, "channels_too_much"),
    "CHANNEL_PRIVATE": (Scope.TARGET_DEAD, "target_unavailable"),
    "CHANNEL_INVALID": (Scope.TARGET_DEAD, "target_unavailable"),
    "USERNAME_NOT_OCCUPIED": (Scope.TARGET_DEAD, "target_unavailable"),
    "USERNAME_INVALID": (Scope.TARGET_DEAD, "target_unavailable"),
    "INVITE_HASH_EXPIRED": (Scope.TARGET_DEAD, "target_unavailable"),
    "INVITE_HASH_INVALID": (Scope.TARGET_DEAD, "target_unavailable"),
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
    reason: str
    retry_after: int | None = None  # run the task again after this many seconds
    hold_seconds: float = 0.0  # keep the account off every action this long


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
    code: str | None, retry_after: int | None, rng: random.Random | None = None
) -> Plan:
    name, seconds = parse(code)
    scope, reason = TABLE.get(name or "", (Scope.TASK, "provider_failed"))
    wait = seconds if seconds is not None else retry_after
    rng = rng or random
    if scope is Scope.ACCOUNT_HOLD:
        wait = wait or 60
        jittered = wait + rng.uniform(0, wait * JITTER_FRACTION) + rng.uniform(0, 3)
        return Plan(scope, reason, retry_after=int(jittered + 0.999), hold_seconds=jittered)
    if scope is Scope.RETRY:
        return Plan(scope, reason, retry_after=wait or 10)
    if scope is Scope.ACCOUNT_FLOOD:
        return Plan(scope, reason, hold_seconds=max(PEER_FLOOD_HOLD_SECONDS, wait or 0))
    if scope is Scope.TASK and retry_after:
        # An unknown error with retry_after: the provider asks for a wait (issue #5 semantics).
        return Plan(Scope.ACCOUNT_HOLD, reason, retry_after=retry_after, hold_seconds=retry_after)
    return Plan(scope, reason)
