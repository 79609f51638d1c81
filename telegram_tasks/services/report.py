"""Report: classify each provider report against its task, then apply it — ``done`` commits,
``failed`` ends or retries the task (see ``outcomes``), ``pending`` parks it. The one completion
path: every result, whatever brought it, goes through ``tasks_report``."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from django.db import connections, transaction

from telegram_tasks import claims, failures
from telegram_tasks.conf import app_settings
from telegram_tasks.counters import REPORT_BATCHES, count_reports
from telegram_tasks.exceptions import TaskConflict, TaskNotFound
from telegram_tasks.failures import Reason
from telegram_tasks.models import TelegramTask
from telegram_tasks.providers import ProviderRef
from telegram_tasks.services import gathering, orders, outcomes, settle, sql
from telegram_tasks.services.report_items import ReportIn, ReportOut, ReportState

logger = logging.getLogger(__name__)

S = TelegramTask.Status


@dataclass
class _Batch:
    done: list[outcomes.Item] = field(default_factory=list)
    failed: list[outcomes.Item] = field(default_factory=list)
    retry: list[outcomes.Item] = field(default_factory=list)
    pending: list[outcomes.Item] = field(default_factory=list)
    plans: dict[str, failures.Plan] = field(default_factory=dict)


def tasks_report(
    *, reports: Sequence[ReportIn], now: datetime, provider: ProviderRef | None = None
) -> list[ReportOut]:
    """Apply provider reports; one result per report, in order. Idempotent per task.

    ``provider``: the caller; its own tasks only — another provider's task is answered exactly
    as a task that does not exist (the same statements find nothing: same status, same body,
    same work), and changes nothing. (None: a pass of the broker's own, for any provider.)

    Order of effects for ``done``: with the tasks' rows locked, Redis COMMIT first, then the
    ledger step (task done, units off the order) in the same transaction. COMMIT is idempotent
    per task id and remembers when it counted, so if PostgreSQL fails (or the process dies)
    in between, nothing is counted twice and nothing is lost: the provider's retry finds the
    COMMIT done and counts the success once in the ledger; without a retry, the next pull,
    heartbeat or housekeeping finds the COMMIT marker when it re-arms the task's lock and
    settles it (``settle.settle_committed``). The other way round, a crash after the ledger said
    done would leave cooldown and cap unconsumed, and no retry could mend it. ``failed``
    releases the lock after the ledger commits: a ROLLBACK that does not happen leaves a lock
    that lapses by its own deadline (and housekeeping sweeps it).
    """
    sql.check_batch(reports, most=app_settings.REPORT_MAX_BATCH, what="reports")
    if (
        len(reports) == 1
        and app_settings.REPORT_GROUP_MAX > 1
        and not transaction.get_connection().in_atomic_block
    ):
        return [_gathered(reports[0], now, provider)]
    return _report(reports, now, provider)


Gathered = tuple[ReportIn, datetime, ProviderRef | None]


def _gathered(report: ReportIn, now: datetime, provider: ProviderRef | None) -> ReportOut:
    """Group commit: a single report that arrives while another of its provider's is being
    applied in this process goes in the next batch with the others that arrived meanwhile (see
    ``gathering``): one transaction, one COMMIT round trip, one commit for all of them, each
    answered after it with its own outcome. (Not inside a caller's transaction: the batch
    would commit with it, after the others' answers.)"""
    group = gathering.gatherer(
        ("report", None if provider is None else provider.id),
        lambda: gathering.Gatherer(
            _report_one,
            _report_many,
            most=min(app_settings.REPORT_GROUP_MAX, app_settings.REPORT_MAX_BATCH),
            wait=app_settings.REPORT_GROUP_WAIT_MS / 1000,
            on_batch=REPORT_BATCHES.observe,
            before_wait=_give_back_connections,
        ),
    )
    return group.submit((report, now, provider))


def _give_back_connections() -> None:
    """A report waiting for its batch needs no database connection (the batch's leader uses
    its own): a pooled one goes back to the pool meanwhile, as the request would give it back
    at its end — else the waiting reports could hold every connection the leader needs."""
    for conn in connections.all(initialized_only=True):
        if not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()


def _report_one(item: Gathered) -> ReportOut:
    report, now, provider = item
    [out] = _report([report], now, provider)
    return out


def _report_many(items: Sequence[Gathered]) -> list[ReportOut]:
    """The batch, as if its reports had come one after another: a task reported again within
    it goes in a later round (its own transaction), which finds what the earlier one left."""
    now = max(at for _, at, _ in items)
    provider = items[0][2]
    outs: list[ReportOut | None] = [None] * len(items)
    left = list(range(len(items)))
    while left:
        seen: set[str] = set()
        this, later = [], []
        for i in left:
            task_id = items[i][0].task_id
            (later if task_id in seen else this).append(i)
            seen.add(task_id)
        reports = [items[i][0] for i in this]
        for i, out in zip(this, _many_then_report(reports, now, provider), strict=True):
            outs[i] = out
        left = later
    return outs  # type: ignore[return-value]


def _report(
    reports: Sequence[ReportIn], now: datetime, provider: ProviderRef | None
) -> list[ReportOut]:
    outs = [ReportOut(task_id=r.task_id) for r in reports]
    if not reports:
        return outs
    provider_id = None if provider is None else provider.id
    label = "" if provider is None else provider.name
    if len(reports) == 1 and reports[0].state == ReportState.DONE:
        single = _single_done(reports[0], now, provider_id)
        if single is not None:
            count_reports(reports, [single], provider=label)
            return [single]
    ids = sorted({r.task_id for r in reports})
    mine = "" if provider_id is None else "AND provider_id = %s "
    with transaction.atomic():
        # The batch's tasks are locked (in id order, so two batches never deadlock) from this
        # read to the commit: no other report, pull or housekeeping changes them in between.
        # (Another provider's task is not read, so not locked: it is as absent as an unknown.)
        current = {
            row["id"]: row
            for row in sql.fetch(
                f"SELECT {settle.CLAIM_COLUMNS}, status, lease_id, attempt, per_call "  # noqa: S608
                f"FROM {sql.TASKS} WHERE id = ANY(%s) {mine}ORDER BY id FOR UPDATE",
                [ids] if provider_id is None else [ids, provider_id],
            )
        }
        batch = _classify(reports, outs, current)
        _settle_instead(batch, now)
        _end_blocked_retries(batch)
        _note_start_counts(batch)
        committed_at: dict[str, datetime] = {}
        if batch.done:
            # A Redis that lost its state must be rebuilt first: counting into it now would
            # be undone by the rebuild's merge (the COMMITs refuse, in the same round trip).
            results = claims.commit_many_at(
                [settle.claim_of(row) for _, row, _ in batch.done], now=now, require_state=True
            )
            committed_at = {
                r.task_id: at for (r, _, _), (_, at) in zip(batch.done, results, strict=True)
            }
        done = [(r.task_id, committed_at[r.task_id], outcomes.result_json(r), r.provider_task_id)
                for r, _, _ in batch.done]  # fmt: skip
        # Only successes already COMMITted in Redis: a commit lost to a crash is settled again
        # from the COMMIT markers, so it need not wait for the WAL flush.
        only_done = not (batch.failed or batch.retry or batch.pending)
        finished = settle.mark_done(
            done,
            now=now,
            order_ids={row["order_id"] for _, row, _ in batch.done},
            durable=not only_done,
        )
        finished |= outcomes.apply_failed(batch.failed, batch.plans, now)
        finished |= outcomes.apply_retry(batch.retry, batch.plans, now)
        finished |= outcomes.apply_pending(batch.pending, now)
    for group, status in (
        (batch.done, S.DONE),
        (batch.failed, S.FAILED),
        (batch.retry, S.QUEUED),
        (batch.pending, S.PENDING),
    ):
        for report, _, out in group:
            if report.task_id in finished:
                out.status = status.value
            else:
                out.duplicate = True
    # A task reported twice in one batch: the repeat tells the status the first one left.
    first = {out.task_id: out.status for out in outs if out.ok and not out.duplicate}
    for out in outs:
        if out.duplicate and out.task_id in first:
            out.status = first[out.task_id]
    count_reports(reports, outs, provider=label)
    _log_failures(batch, finished)
    return outs


def _log_failures(batch: _Batch, finished: set[str]) -> None:
    """One line per failure report that took effect (a retry or an end), with the fields an
    operator filters logs by; repeats of a report already applied are not logged again."""
    for group, outcome in ((batch.failed, "failed"), (batch.retry, "retry")):
        for report, row, _ in group:
            if report.task_id not in finished:
                continue
            plan = batch.plans[report.task_id]
            logger.info(
                "report %s: task=%s account=%s action=%s error=%s reason=%s",
                outcome,
                report.task_id,
                row["telegram_account_id"],
                row["action"],
                report.error_code or "-",
                plan.reason,
                extra={
                    "event": "report_failed",
                    "outcome": outcome,
                    "task_id": report.task_id,
                    "order_id": row["order_id"],
                    "account_id": row["telegram_account_id"],
                    "action": row["action"],
                    "error_code": report.error_code,
                    "reason": str(plan.reason),
                    "scope": str(plan.scope),
                    "attempt": row["attempt"] + 1,
                    "retry_after": plan.retry_after if outcome == "retry" else None,
                },
            )


def _many_then_report(
    reports: Sequence[ReportIn], now: datetime, provider: ProviderRef | None
) -> list[ReportOut]:
    """Distinct tasks' reports: the done ones the short way (``_many_done``), the rest, and any
    done one it did not finish, the general way — one transaction each."""
    outs: dict[str, ReportOut] = {}
    done = [r for r in reports if r.state == ReportState.DONE]
    if len(done) > 1:
        outs = _many_done(done, now, None if provider is None else provider.id)
        finished = [r for r in done if r.task_id in outs]
        label = "" if provider is None else provider.name
        count_reports(finished, [outs[r.task_id] for r in finished], provider=label)
    rest = [r for r in reports if r.task_id not in outs]
    if rest:
        outs.update(zip([r.task_id for r in rest], _report(rest, now, provider), strict=True))
    return [outs[r.task_id] for r in reports]


class _NotFirst(Exception):
    """The success was COMMITted before (a retry after a lost ledger step): undo, go the
    general way, which keeps the first COMMIT's moment."""


def _single_done(report: ReportIn, now: datetime, provider_id: int | None) -> ReportOut | None:
    """One done report, the commonest request of all, in one statement and one COMMIT: the
    statement marks the task done and takes its unit off its order (its row locked, then the
    order's), Redis COMMITs in the same transaction, then the transaction commits — so the
    success is counted in Redis before the ledger step is, as on the general path. None when
    this call did not finish the task (already finished, never handed out, no such task, or
    COMMITted before, another provider's): the general path answers those."""
    at = now.replace(microsecond=now.microsecond // 1000 * 1000)  # COMMIT keeps milliseconds
    try:
        with transaction.atomic():
            row = settle.mark_one_done(
                report.task_id,
                at=at,
                result=outcomes.result_json(report),
                provider_task_id=report.provider_task_id,
                now=now,
                provider_id=provider_id,
            )
            if row is None:
                return None
            [(first, _)] = claims.commit_many_at([settle.claim_of(row)], now=at, require_state=True)
            if not first:
                raise _NotFirst
    except _NotFirst:
        return None
    return ReportOut(task_id=report.task_id, status=S.DONE.value)


def _many_done(
    reports: Sequence[ReportIn], now: datetime, provider_id: int | None
) -> dict[str, ReportOut]:
    """``_single_done`` for a batch of done reports of distinct tasks: their tasks, then their
    orders, locked in id order (one statement), the tasks this call finishes marked done with
    their units off their orders (one statement), COMMITted in Redis (one round trip), then one
    commit. The outcomes of the reports it finished; the others (already finished, never handed
    out, unknown, another provider's) are the general path's to answer. Nothing when any
    success was COMMITted before (a retry after a lost ledger step): the general path keeps
    that COMMIT's moment."""
    at = now.replace(microsecond=now.microsecond // 1000 * 1000)  # COMMIT keeps milliseconds
    try:
        with transaction.atomic():
            orders.lock_tasks_then_orders([r.task_id for r in reports], provider_id=provider_id)
            rows = settle.mark_many_done(
                [(r.task_id, outcomes.result_json(r), r.provider_task_id) for r in reports],
                at=at,
                now=now,
                provider_id=provider_id,
            )
            if not rows:
                return {}
            results = claims.commit_many_at(
                [settle.claim_of(row) for row in rows], now=at, require_state=True
            )
            if not all(first for first, _ in results):
                raise _NotFirst
    except _NotFirst:
        return {}
    finished = {row["id"] for row in rows}
    return {
        r.task_id: ReportOut(task_id=r.task_id, status=S.DONE.value)
        for r in reports
        if r.task_id in finished
    }


def _note_start_counts(batch: _Batch) -> None:
    """A failed or pending report may carry its order's start count (``data.start_count``); a
    done one's is taken by the statement that marks its task done. No statement unless one
    does."""
    counts = [
        (row["order_id"], json.dumps(report.data))
        for report, row, _ in (*batch.failed, *batch.retry, *batch.pending)
        if isinstance(report.data, dict) and "start_count" in report.data
    ]
    orders.orders_note_start_count(counts)


def _end_blocked_retries(batch: _Batch) -> None:
    """A failure that asks to run the task again cannot requeue it when its order is no longer
    active or is paused, or its account is inactive: the task ends, with that reason (the
    account is still held if the error says so)."""
    if not batch.retry:
        return
    reasons = settle.blocked([r.task_id for r, _, _ in batch.retry])
    for report, _, _ in batch.retry:
        if report.task_id in reasons:
            plan = batch.plans[report.task_id]
            batch.plans[report.task_id] = replace(
                plan, reason=reasons[report.task_id], retry_after=None
            )
    batch.failed += [i for i in batch.retry if i[0].task_id in reasons]
    batch.retry = [i for i in batch.retry if i[0].task_id not in reasons]


def _settle_instead(batch: _Batch, now: datetime) -> None:
    """A failed or pending report for a task whose COMMIT already counted a success (the
    provider reported done, then the ledger step was lost) cannot undo that success: the task
    is settled as done instead, and the report changes nothing else."""
    others = [*batch.failed, *batch.retry, *batch.pending]
    if not others:
        return
    committed, _ = settle.split_committed([row for _, row, _ in others])
    if not committed:
        return
    ids = {row["id"] for row in committed}
    settle.settle_committed(rows=committed, now=now)
    for _, row, out in others:
        if row["id"] in ids:
            out.status, out.duplicate = S.DONE.value, True
    batch.failed = [i for i in batch.failed if i[1]["id"] not in ids]
    batch.retry = [i for i in batch.retry if i[1]["id"] not in ids]
    batch.pending = [i for i in batch.pending if i[1]["id"] not in ids]


def _classify(
    reports: Sequence[ReportIn], outs: list[ReportOut], current: dict[str, dict[str, Any]]
) -> _Batch:
    batch = _Batch()
    seen: set[str] = set()
    for report, out in zip(reports, outs, strict=True):
        row = current.get(report.task_id)
        if row is None:
            out.error = TaskNotFound(f"no task {report.task_id}")
            continue
        if report.task_id in seen:
            # The same task twice in one batch: the first report decides, this one repeats it.
            out.duplicate, out.status = True, row["status"]
            continue
        seen.add(report.task_id)
        out.status = row["status"]
        if row["status"] in TelegramTask.FINAL:
            out.duplicate = True
            continue
        if row["lease_id"] is None:
            out.error = TaskConflict("the task was never handed out", code="task_not_leased")
            continue
        if report.state == ReportState.DONE:
            batch.done.append((report, row, out))  # accepted from any holder, once
            continue
        if report.lease_id is not None and report.lease_id != row["lease_id"]:
            out.error = TaskConflict("lease_id is not the task's current lease", code="stale_lease")
            continue
        if row["status"] == S.QUEUED:
            out.error = TaskConflict("the task is queued, not handed out", code="task_not_leased")
            continue
        if report.state == ReportState.PENDING:
            batch.pending.append((report, row, out))
            continue
        plan = failures.plan_failure(report.error_code, report.retry_after)
        if plan.scope is failures.Scope.TARGET_DEAD and row["payload"].get("membership_id"):
            # An automatic unsubscribe from a channel that is gone or closed to the account:
            # it is not in it any more; the membership ends, the order goes on.
            plan = replace(plan, scope=failures.Scope.NOT_MEMBER)
        batch.plans[report.task_id] = plan
        if plan.retry_after is not None and row["attempt"] + 2 <= app_settings.MAX_ATTEMPTS:
            batch.retry.append((report, row, out))
        else:
            if plan.retry_after is not None:  # no hand-out left to run it again
                batch.plans[report.task_id] = replace(plan, reason=Reason.ATTEMPTS_EXHAUSTED)
            batch.failed.append((report, row, out))
    return batch
