"""Housekeeping: end the tasks that can no longer finish, keep live tasks' locks alive, and
rebuild the claim state in Redis from the ledger when Redis has lost it (``rebuild``).

Everything that runs housekeeping (Celery beat every minute, ``manage.py
telegram_housekeeping``, tests, the simulation) calls ``tasks_housekeep``.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction

from telegram_tasks import claims
from telegram_tasks.conf import app_settings
from telegram_tasks.failures import Reason
from telegram_tasks.logs import log_fields
from telegram_tasks.models import ClaimsCheckpoint
from telegram_tasks.services import settle, sql
from telegram_tasks.services.farm import refresh_account_counts
from telegram_tasks.services.heal import claims_heal
from telegram_tasks.services.liveness import records_pass
from telegram_tasks.services.rebuild import claims_restore_if_lost
from telegram_tasks.services.retention import retention_purge
from telegram_tasks.services.rollup import rollup

logger = logging.getLogger(__name__)


@dataclass
class HousekeepingSummary:
    ended: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rearmed: int = 0
    swept: int = 0
    healed: int = 0
    purged: int = 0  # finished tasks older than the retention, deleted
    rolled_up: int = 0  # tasks created or finished since the last pass, counted for the charts
    rebuilt: bool = False
    seconds: float = 0.0

    def line(self) -> str:
        ended = " ".join(f"{k}={v}" for k, v in sorted(self.ended.items())) or "ended=0"
        return (
            f"{ended} rearmed={self.rearmed} swept={self.swept} healed={self.healed} "
            f"purged={self.purged} rolled_up={self.rolled_up} "
            f"rebuilt={'yes' if self.rebuilt else 'no'} seconds={self.seconds:.3f}"
        )


@records_pass("housekeeping")
def tasks_housekeep(*, now: datetime) -> HousekeepingSummary:
    started = time.perf_counter()
    summary = HousekeepingSummary()
    summary.rebuilt = claims_restore_if_lost(now=now) is not None
    grace = timedelta(seconds=app_settings.RESERVE_LOCK_SECONDS)
    for reason, where in (
        # Queued and never handed out before its reservation lapsed.
        (Reason.EXPIRED, f"status = {sql.QUEUED} AND reserved_until <= %(now)s"),
        # Handed out MAX_ATTEMPTS times, the last lease over for longer than the grace any
        # lease gets (a done arriving within it still counts), no final report.
        (
            Reason.ATTEMPTS_EXHAUSTED,
            f"status = {sql.LEASED} AND leased_until <= %(abandoned)s AND attempt + 1 >= %(max)s",
        ),
        # Pending past its TTL (leased_until holds its deadline).
        (Reason.PENDING_TIMEOUT, f"status = {sql.PENDING} AND leased_until <= %(now)s"),
        # A lease over for longer than the grace and not pulled again (its worker is gone, or
        # pulls filter by accounts that no longer include it): its lock is lapsing.
        (Reason.LEASE_ABANDONED, f"status = {sql.LEASED} AND leased_until <= %(abandoned)s"),
        # Queued for a provider disabled since (a pass that picked its account as it was being
        # disabled): its order moves on to other providers. On each disabled provider's own
        # queue index; nothing to read while none is disabled.
        (
            Reason.PROVIDER_DISABLED,
            f"status = {sql.QUEUED} AND provider_id IN "  # noqa: S608
            f"(SELECT id FROM {sql.PROVIDERS} WHERE NOT enabled)",
        ),
    ):
        # Each rule in a transaction of its own, passing over rows a report or pull holds.
        with transaction.atomic():
            ended = settle.end_tasks(
                where=where,
                params={"now": now, "max": app_settings.MAX_ATTEMPTS, "abandoned": now - grace},
                reason=reason,
                now=now,
                skip_locked=True,
            )
        summary.ended[reason] += len(ended)
    _end_blocked_lapsed_leases(now, summary)
    # Every live hand-out keeps its account locked as long as it lives: re-arm leased and
    # pending tasks' locks (a re-arm that failed earlier, a lease waiting to be pulled again).
    # A task whose COMMIT happened without its ledger step is settled as done here.
    # One query per status, each on that status's own index.
    by_status = [
        f"(SELECT {settle.CLAIM_COLUMNS}, leased_until FROM {sql.TASKS} "  # noqa: S608
        f"WHERE status = {sql.literal(status)} AND telegram_account_id IS NOT NULL)"
        for status in (sql.S.LEASED, sql.S.PENDING)
    ]
    live = sql.fetch(" UNION ALL ".join(by_status) + " ORDER BY id")
    if live:
        with transaction.atomic():
            ids = [r["id"] for r in live]
            # Locked (skipping any a report or pull holds right now) so nothing ends them
            # between this read and the re-arm.
            locked = {
                r["id"]
                for r in sql.fetch(
                    f"SELECT id FROM {sql.TASKS} WHERE id = ANY(%s) "  # noqa: S608
                    f"AND status IN {sql.HANDED_OUT} ORDER BY id FOR UPDATE SKIP LOCKED",
                    [ids],
                )
            }
            rows = [r for r in live if r["id"] in locked]
            untils = [max(r["leased_until"] or now, now) + grace for r in rows]
            kept = settle.rearm(rows, until=untils, now=now)
            summary.rearmed = len(kept)
            summary.ended["lock_lost_or_settled"] += len(rows) - len(kept)
    summary.swept = sweep_skipped_rollbacks(now=now)
    summary.purged = retention_purge(now=now, most=app_settings.RETENTION_PER_PASS).tasks
    summary.rolled_up = rollup(now=now)
    # The accounts' states as the dashboard and the metrics show them (kept a few minutes).
    refresh_account_counts(now=now)
    if not summary.rebuilt:
        healed = claims_heal(now=now)
        summary.healed = healed.restored
        summary.rebuilt = healed.rebuilt
        for reason, n in healed.ended.items():
            summary.ended[reason] += n
    summary.seconds = time.perf_counter() - started
    logger.info("housekeeping: %s", summary.line(), extra=log_fields("housekeeping", summary))
    return summary


def sweep_skipped_rollbacks(*, now: datetime) -> int:
    """A ROLLBACK after a commit that met Redis down (``settle.after_commit_rollback``) noted
    when in the ledger: the tasks that ended since then give back any lock they still hold
    (ROLLBACK only releases a lock its own token holds), and the note is cleared. Nothing to
    read on a pass where no ROLLBACK was skipped (a lock left by a crashed process lapses by its
    own deadline)."""
    since = ClaimsCheckpoint.objects.filter(pk=1).values_list("sweep_from", flat=True).first()
    if since is None:
        return 0
    # A margin before the note: the failed ROLLBACK's task finished a moment before it.
    ended = sql.fetch(
        f"SELECT {settle.CLAIM_COLUMNS} FROM {sql.TASKS} "  # noqa: S608
        f"WHERE status IN {sql.FINISHED} AND finished_at > %s "
        "AND telegram_account_id IS NOT NULL",
        [since - timedelta(seconds=app_settings.GENERATION_TICK_SECONDS)],
    )
    swept = sum(claims.rollback_many([settle.claim_of(r) for r in ended])) if ended else 0
    # Cleared only if no ROLLBACK failed again meanwhile (that one moved the note).
    ClaimsCheckpoint.objects.filter(pk=1, sweep_from=since).update(sweep_from=None)
    return swept


def _end_blocked_lapsed_leases(now: datetime, summary: HousekeepingSummary) -> None:
    """A lease that ran out is never handed out again when its order is no longer active or is
    paused, its account inactive or its provider disabled (pulls check): end it now rather than
    after the grace."""
    with transaction.atomic():
        rows = sql.fetch(
            f"SELECT {settle.CLAIM_COLUMNS} FROM {sql.TASKS} "  # noqa: S608
            f"WHERE status = {sql.LEASED} AND leased_until <= %s "
            "ORDER BY id FOR UPDATE SKIP LOCKED",
            [now],
        )
        _, ended = settle.fail_blocked(rows, now=now)
    for reason in (
        Reason.ORDER_PAUSED,
        Reason.ORDER_INACTIVE,
        Reason.ACCOUNT_INACTIVE,
        Reason.PROVIDER_DISABLED,
    ):
        n = sum(1 for r in ended if r.get("failure_reason") == reason)
        if n:
            summary.ended[reason] += n
