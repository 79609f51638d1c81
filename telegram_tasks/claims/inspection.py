"""What accounts' claims look like right now, read-only (the admin's account pages, the
dashboard): one pipeline for a page of accounts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from telegram_tasks.claims import keys
from telegram_tasks.claims.operations import local_day, ms
from telegram_tasks.claims.scripts import connection
from telegram_tasks.conf import app_settings


@dataclass(frozen=True)
class ActionState:
    cooldown_until: datetime | None  # None: not cooling down
    today: int  # successes of this action today
    lock_token: str | None  # the live task holding the account for this action
    lock_until: datetime | None


@dataclass(frozen=True)
class AccountState:
    hold_until: datetime | None
    account_cooldown_until: datetime | None
    today: int  # successes today, all actions
    channels: int
    channels_too_much: bool  # the CHANNELS_TOO_MUCH flag
    actions: dict[str, ActionState]


def account_states(account_ids: Sequence[int], *, now: datetime) -> dict[int, AccountState]:
    """The claim state of these accounts as RESERVE sees it at ``now``, read in one pipeline
    (deadlines already past read as None)."""
    if not account_ids:
        return {}
    actions = list(app_settings.ACTIONS)
    day = local_day(now)
    pipe = connection().pipeline(transaction=False)
    for account in account_ids:
        pipe.get(keys.hold(account))
        pipe.get(keys.account_cooldown(account))
        pipe.get(keys.account_cap(account, day))
        pipe.get(keys.channels(account))
        pipe.exists(keys.full(account))
        for action in actions:
            pipe.get(keys.cooldown(account, action))
            pipe.get(keys.cap(account, action, day))
            pipe.hmget(keys.lock(account, action), "token", "until")
    answers = iter(pipe.execute())
    now_ms = ms(now)

    def deadline(raw: Any) -> datetime | None:
        if raw is None or int(raw) <= now_ms:
            return None
        return datetime.fromtimestamp(int(raw) / 1000, tz=now.tzinfo)

    states = {}
    for account in account_ids:
        hold, acd, today, channels, full = (next(answers) for _ in range(5))
        per_action = {}
        for action in actions:
            cd, cap, (token, until) = next(answers), next(answers), next(answers)
            live = token is not None and until is not None and int(until) > now_ms
            per_action[action] = ActionState(
                cooldown_until=deadline(cd),
                today=int(cap or 0),
                lock_token=token.decode() if live else None,
                lock_until=deadline(until) if live else None,
            )
        states[account] = AccountState(
            hold_until=deadline(hold),
            account_cooldown_until=deadline(acd),
            today=int(today or 0),
            channels=int(channels or 0),
            channels_too_much=bool(full),
            actions=per_action,
        )
    return states
