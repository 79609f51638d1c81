"""Rebuild the Redis claim state from the ledger (``manage.py rebuild_claims``, and housekeeping
when Redis has lost it)."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from ulid import ULID

from telegram_tasks import claims
from telegram_tasks.claims import Restore, keys
from telegram_tasks.claims.operations import CAP_TTL_MARGIN_MS, local_day, ms, next_local_midnight
from telegram_tasks.conf import app_settings
from telegram_tasks.services import sql

logger = logging.getLogger(__name__)


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


# A rebuild reads the ledger's recent facts; far longer than one takes.
REBUILD_LOCK_SECONDS = 600
REBUILD_WAIT_SECONDS = 60


def claims_restore_if_lost(*, now: datetime) -> RebuildSummary | None:
    """Make sure Redis holds the claim state before a pass judges eligibility against it.

    Present: nothing to do. Lost (a fresh install, a flushed or replaced Redis): if the ledger
    holds nothing to rebuild, the marker is simply set; otherwise the state is rebuilt once,
    under a lock, while concurrent callers wait for it. Returns the rebuild's summary when one
    ran. Raises ``ClaimsStateLost`` when another rebuild holds the lock for too long.
    """
    if claims.state_present():
        return None
    lock = claims.pass_lock("rebuild", timeout=REBUILD_LOCK_SECONDS, wait=REBUILD_WAIT_SECONDS)
    if not lock.acquire():
        raise claims.ClaimsStateLost("a rebuild of the claim state is still running")
    try:
        if claims.state_present():  # rebuilt by whoever held the lock
            return None
        if not sql.rows(f"SELECT 1 FROM {sql.TASKS} LIMIT 1"):  # noqa: S608
            claims.mark_state(str(ULID()))
            logger.info("claim state marked present: the ledger holds nothing to rebuild")
            return RebuildSummary()
        return claims_rebuild(now=now)
    finally:
        lock.release()


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

    for account, action, last in sql.rows(
        f"SELECT telegram_account_id, action, max(finished_at) FROM {sql.TASKS} "  # noqa: S608
        f"WHERE status = {sql.DONE} AND telegram_account_id IS NOT NULL AND finished_at > %s "
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

    day = local_day(now)
    midnight = day.replace(hour=0, minute=0, second=0, microsecond=0)
    cap_ttl = ms(next_local_midnight(now)) - now_ms + CAP_TTL_MARGIN_MS
    for account, action, count in sql.rows(
        f"SELECT telegram_account_id, action, count(*) FROM {sql.TASKS} "  # noqa: S608
        f"WHERE status = {sql.DONE} AND telegram_account_id IS NOT NULL AND finished_at >= %s "
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
        for account, link_hash, action, last in sql.rows(
            f"""
            SELECT DISTINCT ON (telegram_account_id, link_hash)
                   telegram_account_id, link_hash, action, finished_at
            FROM {sql.TASKS}
            WHERE status = {sql.DONE} AND telegram_account_id IS NOT NULL AND action = ANY(%s)
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
        for account, action, link_hash, post, last in sql.rows(
            f"""
            SELECT telegram_account_id, action, link_hash, payload->>'post_id', max(finished_at)
            FROM {sql.TASKS}
            WHERE status = {sql.DONE} AND telegram_account_id IS NOT NULL AND action = ANY(%s)
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
    for task_id, account, action, status, reserved_until, leased_until in sql.rows(
        f"""
        SELECT id, telegram_account_id, action, status, reserved_until, leased_until
        FROM {sql.TASKS}
        WHERE status IN {sql.LIVE} AND telegram_account_id IS NOT NULL
        ORDER BY id
        """,  # noqa: S608
        [],
    ):
        if status == sql.S.QUEUED:
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
