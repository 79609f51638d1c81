"""Heal: the ledger mends Redis continuously. A Redis that crashes with AOF ``everysec``, or
fails over to an asynchronous replica, loses its last writes while its marker survives: a
counted success may lose its cooldown, cap count, link state or dedupe key; a queued task may
lose its lock. Every housekeeping pass re-applies, idempotently (larger or newer wins), the
claim effects of what finished within ``HEAL_WINDOW_SECONDS``, the holds still running, and the
locks of what was reserved within the window, so any such loss is repaired by the next pass.

A loss older than the window is caught by the heartbeat: each pass writes the time to Redis and
to the ledger (``ClaimsCheckpoint``); a Redis whose heartbeat is older than the ledger's went
back in time (a restore from an old snapshot, a replica far behind), and if further back than
the window, the whole state is rebuilt."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction

from telegram_tasks import claims
from telegram_tasks.conf import app_settings
from telegram_tasks.failures import Reason
from telegram_tasks.models import ClaimsCheckpoint
from telegram_tasks.services import settle, sql
from telegram_tasks.services.rebuild import (
    Restores,
    claims_rebuild,
    record_heartbeat,
    restore_account_limits,
    restore_caps,
    restore_channels,
    restore_cooldowns,
    restore_dedupes,
    restore_holds,
    restore_locks,
    restore_states,
    seconds,
)

logger = logging.getLogger(__name__)


@dataclass
class HealSummary:
    restored: int = 0  # keys written back (0 when Redis lost nothing)
    conflicts: int = 0  # queued tasks whose lost lock another task had taken: ended
    rebuilt: bool = False  # Redis went back further than the window: rebuilt whole


def claims_heal(*, now: datetime) -> HealSummary:
    """Re-apply the recent claim effects of the ledger to Redis (see the module's doc)."""
    summary = HealSummary()
    since = now - seconds(app_settings.HEAL_WINDOW_SECONDS)
    checkpoint = ClaimsCheckpoint.objects.filter(pk=1).values_list("heartbeat_at", flat=True)
    last = checkpoint.first()
    beat = claims.heartbeat(tz=now.tzinfo)
    if last is not None and (beat is None or beat < last) and (beat is None or beat < since):
        logger.warning(
            "Redis lost writes older than the heal window (its heartbeat %s, the ledger's %s): "
            "rebuilding the claim state",
            beat,
            last,
        )
        claims_rebuild(now=now)  # records the heartbeat
        summary.rebuilt = True
    else:
        per_account: Restores = defaultdict(list)
        restore_cooldowns(per_account, since=since, now=now)
        recent = {
            (account, action)
            for account, action in sql.rows(
                f"SELECT DISTINCT telegram_account_id, action FROM {sql.TASKS} "  # noqa: S608
                f"WHERE status = {sql.DONE} AND finished_at > %s "
                "AND telegram_account_id IS NOT NULL",
                [since],
            )
        }
        if recent:
            restore_caps(per_account, now=now, only=recent)
            accounts = sorted({account for account, _ in recent})
            restore_account_limits(per_account, since=since, now=now, accounts=accounts)
        restore_states(per_account, since=since, now=now, changed_only=True)
        moved = [
            account
            for (account,) in sql.rows(
                f"SELECT DISTINCT account_id FROM {sql.MEMBERSHIPS} "  # noqa: S608
                "WHERE subscribed_at > %(since)s OR unsubscribed_at > %(since)s",
                {"since": since},
            )
        ]
        if moved:
            restore_channels(per_account, accounts=moved)
        restore_dedupes(per_account, since=since, now=now)
        restore_holds(per_account, now=now)
        restore_locks(per_account, now=now, queued_since=since)
        summary.restored = claims.rebuild_accounts(per_account)
        summary.conflicts = _end_lock_conflicts(since=since, now=now)
        record_heartbeat(now)
    return summary


def _end_lock_conflicts(*, since: datetime, now: datetime) -> int:
    """A queued task whose lost lock another live task took while it was missing cannot run
    beside it: it ends (``lock_lost``); the other keeps the account."""
    rows = sql.fetch(sql.queued_since(settle.CLAIM_COLUMNS), {"since": since})
    if not rows:
        return 0
    holders = claims.lock_holders([(r["telegram_account_id"], r["action"]) for r in rows])
    taken = {r["id"]: h for r, h in zip(rows, holders, strict=True) if h and h != r["id"]}
    if not taken:
        return 0
    live = {
        r["id"]
        for r in sql.fetch(
            f"SELECT id FROM {sql.TASKS} WHERE id = ANY(%s) AND status IN {sql.LIVE}",  # noqa: S608
            [sorted(set(taken.values()))],
        )
    }
    losers = [task_id for task_id, holder in taken.items() if holder in live]
    if not losers:
        return 0
    with transaction.atomic():
        ended = settle.end_tasks(
            where=f"id = ANY(%(ids)s) AND status = {sql.QUEUED}",
            params={"ids": losers},
            reason=Reason.LOCK_LOST,
            now=now,
            skip_locked=True,
        )
    if ended:
        logger.warning("heal: %d queued task(s) lost their lock to another task", len(ended))
    return len(ended)
