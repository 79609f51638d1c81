"""Heal: the ledger mends Redis after it lost its last writes. A Redis that crashes with AOF
``everysec``, or fails over to an asynchronous replica, loses its last writes while its marker
survives: a counted success may lose its cooldown, cap count, link state or dedupe key; a queued
task may lose its lock. Such a loss only happens at a restart or a failover, and each changes
the id of the server's run (``claims.node_identities``), which every housekeeping pass compares
with the ledger's record. Only then does heal re-apply, idempotently (larger or newer wins), the
claim effects of what finished within ``HEAL_WINDOW_SECONDS``, the holds still running, and the
locks of what was reserved within the window; then it checks every task reserved within the
window against the repaired state and ends those it would refuse (reserved against a state that
was missing: a second one-shot, a cap overshot, a subscribe while subscribed). A pass with
nothing lost costs an INFO per server, never a read of the recent ledger.

A loss older than the window is caught by the heartbeat: each pass writes the time to Redis and
to the ledger (``ClaimsCheckpoint``); a Redis whose heartbeat is older than the ledger's went
back in time (a restore from an old snapshot, a replica far behind), and if further back than
the window, the whole state is rebuilt."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction

from telegram_tasks import claims
from telegram_tasks.claims import Refusal
from telegram_tasks.conf import app_settings
from telegram_tasks.failures import Reason
from telegram_tasks.models import ClaimsCheckpoint, ulid_floor
from telegram_tasks.services import settle, sql
from telegram_tasks.services.rebuild import (
    Restores,
    claims_rebuild,
    record_heartbeat,
    release_finished_locks,
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

# A live task's reservation that the repaired state refuses for one of these is still valid:
# a hold or CHANNELS_TOO_MUCH only keep the account from taking new work.
_STILL_VALID = {Refusal.HOLD, Refusal.FULL}


@dataclass
class HealSummary:
    restored: int = 0  # keys written back (0 when Redis lost nothing)
    healed: bool = False  # a restart or failover was seen: the window was re-applied
    ended: Counter[str] = field(default_factory=Counter)  # live tasks ended, by reason
    rebuilt: bool = False  # Redis went back further than the window: rebuilt whole

    @property
    def conflicts(self) -> int:
        return sum(self.ended.values())


def claims_heal(*, now: datetime) -> HealSummary:
    """Repair what Redis may have lost since the last pass (see the module's doc)."""
    summary = HealSummary()
    since = now - seconds(app_settings.HEAL_WINDOW_SECONDS)
    checkpoint = ClaimsCheckpoint.objects.filter(pk=1).first()
    last = checkpoint.heartbeat_at if checkpoint else None
    beat = claims.heartbeat(tz=now.tzinfo)
    nodes = claims.node_identities()
    if last is not None and (beat is None or beat < last) and (beat is None or beat < since):
        logger.warning(
            "Redis lost writes older than the heal window (its heartbeat %s, the ledger's %s): "
            "rebuilding the claim state",
            beat,
            last,
        )
        claims_rebuild(now=now)  # records the heartbeat
        summary.rebuilt = True
        return summary
    if checkpoint is None or checkpoint.nodes != nodes:
        if checkpoint is not None:
            logger.warning(
                "Redis restarted or failed over (its run changed: %s -> %s): re-applying the "
                "last %s s of the ledger",
                checkpoint.nodes,
                nodes,
                app_settings.HEAL_WINDOW_SECONDS,
            )
        heal_window(since=since, now=now, summary=summary)
    record_heartbeat(now, nodes=nodes)
    return summary


def heal_window(*, since: datetime, now: datetime, summary: HealSummary) -> None:
    """Re-apply the claim effects of the ledger since ``since``, then end the live tasks the
    repaired state refuses."""
    summary.healed = True
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
    locked = restore_locks(per_account, now=now, queued_since=since)
    summary.restored = claims.rebuild_accounts(per_account)
    release_finished_locks(locked)
    summary.ended.update(_end_refused(since=since, now=now))


def _end_refused(*, since: datetime, now: datetime) -> Counter[str]:
    """Check each live task reserved within the window (created since, or queued and due
    since) against the repaired state, as if it were being reserved now. One whose lock
    another live task holds ends ``lock_lost``; one the state refuses for any other reason
    (a dedupe, a gate, a cap, a cooldown, channels) ends ``claims_conflict``; one whose
    COMMIT already counted is settled as done. The others keep running."""
    columns = settle.CLAIM_COLUMNS
    rows = sql.fetch(
        f"(SELECT {columns} FROM {sql.TASKS} WHERE id >= %(floor)s "  # noqa: S608
        f"AND status IN {sql.LIVE} AND telegram_account_id IS NOT NULL) UNION "
        + sql.queued_since(columns),
        {"floor": ulid_floor(since), "since": since},
    )
    if not rows:
        return Counter()
    refusals = claims.verify_reservations([settle.claim_of(r) for r in rows], now=now)
    refused = {r["id"]: refusal for r, refusal in zip(rows, refusals, strict=True) if refusal}
    locked_out = [r for r in rows if refused.get(r["id"]) is Refusal.LOCKED]
    holders = claims.lock_holders([(r["telegram_account_id"], r["action"]) for r in locked_out])
    live_holders = {
        r["id"]
        for r in sql.fetch(
            f"SELECT id FROM {sql.TASKS} WHERE id = ANY(%s) AND status IN {sql.LIVE}",  # noqa: S608
            [sorted({h for h in holders if h})],
        )
    }
    # An intruder that is no live task is no conflict: the lock lapses by itself.
    lock_lost = [
        r["id"] for r, h in zip(locked_out, holders, strict=True) if h and h in live_holders
    ]
    conflicts = [
        task_id
        for task_id, refusal in refused.items()
        if refusal not in (Refusal.LOCKED, Refusal.COMMITTED) and refusal not in _STILL_VALID
    ]
    committed = [r for r in rows if refused.get(r["id"]) is Refusal.COMMITTED]
    ended: Counter[str] = Counter()
    with transaction.atomic():
        settle.settle_committed(rows=committed, now=now)
        for reason, ids in ((Reason.LOCK_LOST, lock_lost), (Reason.CLAIMS_CONFLICT, conflicts)):
            if ids:
                ended[reason] += len(
                    settle.end_tasks(
                        where="id = ANY(%(ids)s)",
                        params={"ids": ids},
                        reason=reason,
                        now=now,
                        skip_locked=True,
                    )
                )
    if ended:
        logger.warning("heal: live tasks reserved against the lost state ended: %s", dict(ended))
    return ended
