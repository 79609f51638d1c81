"""Housekeeping: end the tasks that can no longer finish, keep live tasks' locks alive, and
rebuild the claim state in Redis from the ledger when Redis has lost it.

Everything that runs housekeeping (Celery beat every minute, ``manage.py
telegram_housekeeping``, tests, the simulation) calls ``tasks_housekeep``.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from ulid import ULID

from telegram_tasks import claims
from telegram_tasks.claims import Restore, keys
from telegram_tasks.claims.operations import ms, next_local_midnight
from telegram_tasks.conf import app_settings
from telegram_tasks.models import TelegramTask
from telegram_tasks.services import _claim, _end, _fetch, _rearm

logger = logging.getLogger(__name__)
TASKS = TelegramTask._meta.db_table


@dataclass
class HousekeepingSummary:
    ended: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rearmed: int = 0
    swept: int = 0
    rebuilt: bool = False
    seconds: float = 0.0

    def line(self) -> str:
        ended = " ".join(f"{k}={v}" for k, v in sorted(self.ended.items())) or "ended=0"
        return (
            f"{ended} rearmed={self.rearmed} swept={self.swept} "
            f"rebuilt={'yes' if self.rebuilt else 'no'} seconds={self.seconds:.3f}"
        )


def tasks_housekeep(*, now: datetime) -> HousekeepingSummary:
    started = time.perf_counter()
    summary = HousekeepingSummary()
    if not claims.state_present():
        claims_rebuild(now=now)
        summary.rebuilt = True
    grace = timedelta(seconds=app_settings.RESERVE_LOCK_SECONDS)
    for reason, where in (
        # Queued and never handed out before its reservation lapsed.
        ("expired", "status = 'queued' AND reserved_until <= %(now)s"),
        # Handed out MAX_ATTEMPTS times, the last lease over, no final report.
        (
            "attempts_exhausted",
            "status = 'leased' AND leased_until <= %(now)s AND attempt + 1 >= %(max)s",
        ),
        # Pending past its TTL (leased_until holds its deadline).
        ("pending_timeout", "status = 'pending' AND leased_until <= %(now)s"),
        # A lease over for longer than the grace and not pulled again (its worker is gone, or
        # pulls filter by accounts that no longer include it): its lock is lapsing.
        ("lease_abandoned", "status = 'leased' AND leased_until <= %(abandoned)s"),
    ):
        # Each rule in a transaction of its own, passing over rows a report or pull holds.
        with transaction.atomic():
            ended = _end(
                where=where,
                params={"now": now, "max": app_settings.MAX_ATTEMPTS, "abandoned": now - grace},
                reason=reason,
                now=now,
                skip_locked=True,
            )
        summary.ended[reason] += len(ended)
    # Every live hand-out keeps its account locked as long as it lives: re-arm leased and
    # pending tasks' locks (a re-arm that failed earlier, a lease waiting to be pulled again).
    # A task whose COMMIT happened without its ledger step is settled as done here.
    live = _fetch(
        f"SELECT id, telegram_account_id, action, link_hash, payload, leased_until "  # noqa: S608
        f"FROM {TASKS} WHERE status IN ('leased', 'pending') AND telegram_account_id IS NOT NULL "
        "ORDER BY id",
        [],
    )
    if live:
        with transaction.atomic():
            ids = [r["id"] for r in live]
            # Locked (skipping any a report or pull holds right now) so nothing ends them
            # between this read and the re-arm.
            locked = {
                r["id"]
                for r in _fetch(
                    f"SELECT id FROM {TASKS} WHERE id = ANY(%s) "  # noqa: S608
                    "AND status IN ('leased', 'pending') ORDER BY id FOR UPDATE SKIP LOCKED",
                    [ids],
                )
            }
            rows = [r for r in live if r["id"] in locked]
            untils = [max(r["leased_until"] or now, now) + grace for r in rows]
            kept = _rearm(rows, until=untils, now=now)
            summary.rearmed = len(kept)
            summary.ended["lock_lost_or_settled"] += len(rows) - len(kept)
    # Tasks that ended since the last run give back any lock they still hold (a ROLLBACK after
    # a commit may have met Redis down); ROLLBACK only releases a lock its token holds.
    recent = _fetch(
        f"SELECT id, telegram_account_id, action, link_hash, payload FROM {TASKS} "  # noqa: S608
        "WHERE status IN ('done', 'failed') AND finished_at > %s "
        "AND telegram_account_id IS NOT NULL",
        [now - 3 * timedelta(seconds=app_settings.GENERATION_TICK_SECONDS)],
    )
    if recent:
        summary.swept = sum(claims.rollback_many([_claim(r) for r in recent]))
    summary.seconds = time.perf_counter() - started
    logger.info("housekeeping: %s", summary.line())
    return summary


@dataclass
class RebuildSummary:
    cooldowns: int = 0
    caps: int = 0
    states: int = 0
    dedupes: int = 0
    locks: int = 0
    written: int = 0

    def line(self) -> str:
        return (
            f"cooldowns={self.cooldowns} caps={self.caps} states={self.states} "
            f"dedupes={self.dedupes} locks={self.locks} written={self.written}"
        )


def claims_rebuild(*, now: datetime) -> RebuildSummary:
    """Restore the claim state from the ledger: cooldowns still running, today's cap counts,
    link states and dedupe keys within their TTL (from done tasks), and the locks of unfinished
    tasks. Numbers are merged with what Redis holds (the larger wins), so reports committing
    during a rebuild are not undone. Then the marker says the state is present."""
    summary = RebuildSummary()
    actions = app_settings.ACTIONS
    policies = {a: app_settings.policy(a) for a in actions}
    per_account: dict[int, list[Restore]] = defaultdict(list)
    now_ms = ms(now)
    longest_cd = max((p.cooldown for p in policies.values()), default=0)

    for account, action, last in _rows(
        f"SELECT telegram_account_id, action, max(finished_at) FROM {TASKS} "  # noqa: S608
        "WHERE status = 'done' AND telegram_account_id IS NOT NULL AND finished_at > %s "
        "GROUP BY 1, 2",
        [now - timedelta(seconds=longest_cd)],
    ):
        policy = policies.get(action)
        if policy is None or not policy.cooldown:
            continue
        deadline = ms(last) + policy.cooldown * 1000
        if deadline > now_ms:
            per_account[account].append(
                Restore(keys.cooldown(account, action), "max", str(deadline), deadline - now_ms)
            )
            summary.cooldowns += 1

    day = claims.operations.local_day(now)
    midnight = day.replace(hour=0, minute=0, second=0, microsecond=0)
    cap_ttl = ms(next_local_midnight(now)) - now_ms + claims.operations.CAP_TTL_MARGIN_MS
    for account, action, count in _rows(
        f"SELECT telegram_account_id, action, count(*) FROM {TASKS} "  # noqa: S608
        "WHERE status = 'done' AND telegram_account_id IS NOT NULL AND finished_at >= %s "
        "GROUP BY 1, 2",
        [midnight],
    ):
        per_account[account].append(
            Restore(keys.cap(account, action, day), "max", str(count), cap_ttl)
        )
        summary.caps += 1

    gated = [a for a, p in policies.items() if p.gate]
    if gated:
        state_ttl = app_settings.STATE_TTL_SECONDS * 1000
        for account, link_hash, action, last in _rows(
            f"""
            SELECT DISTINCT ON (telegram_account_id, link_hash)
                   telegram_account_id, link_hash, action, finished_at
            FROM {TASKS}
            WHERE status = 'done' AND telegram_account_id IS NOT NULL AND action = ANY(%s)
              AND finished_at > %s
            ORDER BY telegram_account_id, link_hash, finished_at DESC
            """,  # noqa: S608
            [gated, now - timedelta(seconds=app_settings.STATE_TTL_SECONDS)],
        ):
            value = "subscribed" if policies[action].gate == "subscribe" else "unsubscribed"
            ttl = ms(last) + state_ttl - now_ms
            per_account[account].append(Restore(keys.state(account, link_hash), "set", value, ttl))
            summary.states += 1

    one_shot = [a for a, p in policies.items() if p.one_shot]
    if one_shot:
        dedupe_ttl = app_settings.DEDUPE_TTL_SECONDS * 1000
        for account, action, link_hash, post, last in _rows(
            f"""
            SELECT telegram_account_id, action, link_hash, payload->>'post_id', max(finished_at)
            FROM {TASKS}
            WHERE status = 'done' AND telegram_account_id IS NOT NULL AND action = ANY(%s)
              AND finished_at > %s
            GROUP BY 1, 2, 3, 4
            """,  # noqa: S608
            [one_shot, now - timedelta(seconds=app_settings.DEDUPE_TTL_SECONDS)],
        ):
            post_id = int(post) if post else None
            key = keys.dedupe(account, action, link_hash, post_id)
            per_account[account].append(Restore(key, "set", "1", ms(last) + dedupe_ttl - now_ms))
            summary.dedupes += 1

    grace_ms = app_settings.RESERVE_LOCK_SECONDS * 1000
    for task_id, account, action, status, reserved_until, leased_until in _rows(
        f"""
        SELECT id, telegram_account_id, action, status, reserved_until, leased_until
        FROM {TASKS}
        WHERE status IN ('queued', 'leased', 'pending') AND telegram_account_id IS NOT NULL
        ORDER BY id
        """,  # noqa: S608
        [],
    ):
        if status == "queued":
            until = ms(reserved_until) if reserved_until else 0
        else:
            # A lapsed lease waiting to be pulled again keeps its account too.
            until = max(ms(leased_until) if leased_until else 0, now_ms) + grace_ms
        if until > now_ms:
            per_account[account].append(
                Restore(keys.lock(account, action), "lock", f"{task_id}|{until}", until - now_ms)
            )
            summary.locks += 1

    summary.written = claims.rebuild_accounts(per_account)
    claims.mark_state(str(ULID()))
    logger.warning("claims rebuilt from the ledger: %s", summary.line())
    return summary


def _rows(sql: str, params: Any) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()
