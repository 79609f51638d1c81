"""What a non-``done`` report does to its task: fail it (and apply what the error says about the
account or the target), queue it again after a wait, or park it as pending."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, transaction
from redis.exceptions import RedisError

from telegram_tasks import claims, failures
from telegram_tasks.conf import app_settings
from telegram_tasks.services import available, handouts, settle, sql
from telegram_tasks.services.accounts import (
    accounts_deactivate,
    accounts_hold,
    tasks_release_outlasted,
)
from telegram_tasks.services.memberships import memberships_left
from telegram_tasks.services.operator import orders_drop_reactions, orders_stop
from telegram_tasks.services.report_items import ReportIn, ReportOut

logger = logging.getLogger(__name__)

# (the report, its task's locked row, its outcome)
Item = tuple[ReportIn, dict[str, Any], ReportOut]


def result_json(report: ReportIn) -> str:
    """What the ledger keeps of a report (the task's ``result``)."""
    return json.dumps(
        {
            "state": report.state,
            "error": report.error_code or report.error_message,
            "error_message": report.error_message,
            "retry_after": report.retry_after,
            "data": report.data,
        }
    )


def _error_text(report: ReportIn) -> str:
    return (report.error_message or report.error_code or "")[:2000]


def apply_failed(items: list[Item], plans: dict[str, failures.Plan], now: datetime) -> set[str]:
    """Failed: the task ends and gives its lock back; what the error says about the account
    or the target is applied once, for the reports that did end their task."""
    if not items:
        return set()
    rows = json.dumps(
        [
            {
                "id": r.task_id,
                "lease": row["lease_id"],
                "result": result_json(r),
                "ptid": r.provider_task_id,
                "err": _error_text(r),
                "reason": plans[r.task_id].reason,
            }
            for r, row, _ in items
        ]
    )
    ended = sql.fetch(
        f"""
        UPDATE {sql.TASKS} AS t
        SET status = {sql.FAILED}, result = r.result::jsonb, failure_reason = r.reason,
            last_error = r.err, provider_task_id = COALESCE(r.ptid, t.provider_task_id),
            finished_at = %(now)s, updated_at = %(now)s, leased_until = NULL,
            {handouts.ended(handouts.FAILED, col="t.handouts", error="r.err")}
        FROM jsonb_to_recordset(%(rows)s::jsonb)
             AS r(id varchar, lease varchar, result text, ptid varchar, err text, reason varchar)
        WHERE t.id = r.id AND t.status IN {sql.HANDED_OUT} AND t.lease_id = r.lease
        RETURNING t.id, t.order_id, t.telegram_account_id, t.action, t.link_hash, t.payload
        """,  # noqa: S608
        {"rows": rows, "now": now},
    )
    settle.after_commit_rollback(ended, now=now)
    _apply_consequences(ended, plans, now)
    return {r["id"] for r in ended}


def _apply_consequences(
    ended: list[dict[str, Any]], plans: dict[str, failures.Plan], now: datetime
) -> None:
    by_scope: dict[failures.Scope, list[dict[str, Any]]] = {}
    for row in ended:
        by_scope.setdefault(plans[row["id"]].scope, []).append(row)
    scope = failures.Scope
    dead = sorted({r["telegram_account_id"] for r in by_scope.get(scope.ACCOUNT_DEAD, [])})
    full = sorted({r["telegram_account_id"] for r in by_scope.get(scope.ACCOUNT_FULL, [])})
    if full:
        settle.after_commit(
            lambda: claims.mark_full(full, ttl_seconds=app_settings.STATE_TTL_SECONDS)
        )
    left = sorted(
        {(r["telegram_account_id"], r["link_hash"]) for r in by_scope.get(scope.NOT_MEMBER, [])}
    )
    if left:
        memberships_left(left, now=now)
        settle.after_commit(lambda: claims.leave_many(left, now=now))
    # A flood wait on the last hand-out still holds the account off, even though the task ends.
    _apply_holds(ended, plans, now)
    # Orders whose target is unusable stop, each for its own reason (a channel gone, a post
    # gone, a poll closed, …); a refused emoji leaves its order's mix.
    stopped: dict[str, set[int]] = {}
    for r in by_scope.get(scope.TARGET_DEAD, []):
        if r["order_id"] is not None:  # (an automatic unsubscribe of a deleted order)
            stopped.setdefault(plans[r["id"]].reason, set()).add(r["order_id"])
    refused = sorted(
        {
            (r["order_id"], reaction)
            for r in by_scope.get(scope.REACTION_REFUSED, [])
            if r["order_id"] is not None
            and (reaction := (r["payload"].get("params") or {}).get("reaction"))
        }
    )
    # Deactivating an account and stopping an order touch other tasks than the reported ones:
    # done after the report commits, each in a transaction of its own, so a report never
    # waits on rows another report holds while holding its own.
    if dead or stopped or refused:

        def ledger_effects() -> None:
            try:
                if dead:
                    accounts_deactivate(account_ids=dead, now=now)
                for reason, order_ids in sorted(stopped.items()):
                    orders_stop(order_ids=sorted(order_ids), reason=reason, now=now)
                if refused:
                    orders_drop_reactions(refused=refused, now=now)
            except (DatabaseError, RedisError):
                logger.warning("consequence of a failure report not applied", exc_info=True)

        transaction.on_commit(ledger_effects)


def _apply_holds(
    rows: list[dict[str, Any]], plans: dict[str, failures.Plan], now: datetime
) -> None:
    """Flood waits hold their accounts off every action: in the ledger within this transaction
    (pulls skip a held account's tasks at once), in Redis once it commits (RESERVE refuses the
    account); then the account's queued tasks that would expire before the hold ends are
    released to other accounts."""
    holds = [
        (r["telegram_account_id"], plans[r["id"]].hold_seconds)
        for r in rows
        if plans[r["id"]].hold_seconds and r["telegram_account_id"] is not None
    ]
    if not holds:
        return
    reasons = {
        r["telegram_account_id"]: str(plans[r["id"]].reason)
        for r in rows
        if plans[r["id"]].hold_seconds
    }
    accounts_hold([(a, now + timedelta(seconds=s), reasons[a]) for a, s in holds], now=now)
    settle.after_commit(lambda: claims.hold_many(holds, now=now))
    held = sorted({a for a, _ in holds})

    def release_outlasted() -> None:
        try:
            tasks_release_outlasted(account_ids=held, now=now)
        except (DatabaseError, RedisError):
            logger.warning("tasks of held accounts not released", exc_info=True)

    transaction.on_commit(release_outlasted)


def apply_retry(items: list[Item], plans: dict[str, failures.Plan], now: datetime) -> set[str]:
    """Failed, to run again: queued again on the same account (its lock is kept for it),
    available after the wait; a flood wait also holds the account off every action."""
    if not items:
        return set()
    grace = settle.grace()
    wait = {r.task_id: timedelta(seconds=plans[r.task_id].retry_after or 0) for r, _, _ in items}
    rows = json.dumps(
        [
            {
                "id": r.task_id,
                "lease": row["lease_id"],
                "at": (now + wait[r.task_id]).isoformat(),
                "until": (now + wait[r.task_id] + grace).isoformat(),
                "err": _error_text(r),
                "result": result_json(r),
            }
            for r, row, _ in items
        ]
    )
    requeued = sql.fetch(
        f"""
        UPDATE {sql.TASKS} AS t
        SET status = {sql.QUEUED}, available_at = r.at, reserved_until = r.until,
            leased_until = NULL, last_error = r.err, result = r.result::jsonb,
            updated_at = %(now)s, {handouts.ended(handouts.RETRY, col="t.handouts", error="r.err")}
        FROM jsonb_to_recordset(%(rows)s::jsonb)
             AS r(id varchar, lease varchar, at timestamptz, until timestamptz, err text,
                  result text)
        WHERE t.id = r.id AND t.status IN {sql.HANDED_OUT} AND t.lease_id = r.lease
        RETURNING t.id, t.telegram_account_id, t.action, t.link_hash, t.payload, t.reserved_until,
                  t.available_at, t.provider_id, t.provider_account_id, t.execution_mode
        """,  # noqa: S608
        {"rows": rows, "now": now},
    )
    available.announce(
        (r["available_at"], r["provider_id"], r["provider_account_id"], r["execution_mode"])
        for r in requeued
    )
    if requeued:
        claims_ = [settle.claim_of(r) for r in requeued]
        untils = [settle.queued_lock_until(r["reserved_until"]) for r in requeued]
        settle.after_commit(lambda: claims.extend_many(claims_, now=now, until=untils))
        _apply_holds(requeued, plans, now)
    return {r["id"] for r in requeued}


def apply_pending(items: list[Item], now: datetime) -> set[str]:
    """Pending: parked until a final report or the pending TTL, its lock re-armed as long."""
    if not items:
        return set()
    until = now + timedelta(seconds=app_settings.PENDING_TTL_SECONDS)
    rows = json.dumps(
        [
            {"id": r.task_id, "lease": row["lease_id"], "ptid": r.provider_task_id}
            for r, row, _ in items
        ]
    )
    parked = sql.fetch(
        f"""
        UPDATE {sql.TASKS} AS t
        SET status = {sql.PENDING}, leased_until = %(until)s,
            provider_task_id = COALESCE(r.ptid, t.provider_task_id), updated_at = %(now)s,
            {handouts.parked(col="t.handouts")}
        FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(id varchar, lease varchar, ptid varchar)
        WHERE t.id = r.id AND t.status IN {sql.HANDED_OUT} AND t.lease_id = r.lease
        RETURNING t.id, t.telegram_account_id, t.action, t.link_hash, t.payload
        """,  # noqa: S608
        {"rows": rows, "now": now, "until": until},
    )
    # Re-armed before the commit: a pending task without its lock could run beside another.
    return {r["id"] for r in settle.rearm(parked, until=until + settle.grace(), now=now)}
