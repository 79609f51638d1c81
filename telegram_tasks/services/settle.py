"""The shared kernel of a task's life: end tasks, re-arm their locks, mark them done, settle a
COMMIT whose ledger step was lost, and run Redis effects once the ledger has committed. Every
phase (pull, report, leases, operator, accounts, housekeeping) ends and settles tasks through
these functions."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, transaction
from redis.exceptions import RedisError

from telegram_tasks import claims
from telegram_tasks.claims import Claim, ExtendResult, Refusal, Target
from telegram_tasks.conf import DEFAULT_TIER, app_settings
from telegram_tasks.failures import Reason
from telegram_tasks.models import ClaimsCheckpoint
from telegram_tasks.services import done_sql, handouts, orders, sql

logger = logging.getLogger(__name__)

CHECKPOINT = ClaimsCheckpoint._meta.db_table

# The columns every function here needs to know a task's claim.
CLAIM_COLUMNS = "id, order_id, telegram_account_id, action, link_hash, payload"


def claim_of(row: dict[str, Any]) -> Claim:
    """The claim a task row holds on its account (the token is the task id; the tier is the
    account's when the task was reserved, kept in its payload)."""
    if "post_id" in row:
        post_id, tier = row["post_id"], row.get("tier")
    else:
        payload = row["payload"]
        post_id, tier = payload.get("post_id"), (payload.get("account") or {}).get("tier")
    return Claim(
        row["telegram_account_id"],
        row["action"],
        Target(row["link_hash"], post_id),
        row["id"],
        tier or DEFAULT_TIER,
    )


def runnable_sql(alias: str = "t") -> str:
    """SQL that holds for a task that may be handed out now: its order active and not paused
    (an automatic unsubscribe runs whatever its order's state), its account active and not
    held (``%(now)s`` is the moment).

    Scalar subqueries, not EXISTS: the planner cannot turn them into joins, so a queue read
    stays an ordered index scan that stops at its LIMIT, checking each task it meets by key
    (a join would read the whole queue, and every account, before sorting)."""
    o = sql.order_table()
    return (
        f"({alias}.membership_id IS NOT NULL OR (SELECT "  # noqa: S608
        f"o.{o['status']} IN {sql.literals(orders.active_statuses())} "
        f"AND o.{o['paused_at']} IS NULL FROM {o.table} AS o WHERE o.{o.pk} = {alias}.order_id)) "
        "AND (SELECT a.is_active AND (a.held_until IS NULL OR a.held_until <= %(now)s) "
        f"FROM {sql.ACCOUNTS} AS a WHERE a.id = {alias}.telegram_account_id)"
    )


def blocked(task_ids: Sequence[str]) -> dict[str, Reason]:
    """The tasks among these that may never run again, and why: their account is inactive,
    their provider disabled, their order finished or stopped, or is paused. (A held account is
    not a reason: its tasks wait for the hold to end.)"""
    if not task_ids:
        return {}
    o = sql.order_table()
    rows = sql.rows(
        f"""
        SELECT t.id,
               CASE WHEN a.id IS NULL OR NOT a.is_active THEN %(account)s
                    WHEN p.id IS NULL OR NOT p.enabled THEN %(provider)s
                    WHEN t.membership_id IS NOT NULL THEN NULL
                    WHEN o.{o.pk} IS NULL
                         OR o.{o["status"]} NOT IN {sql.literals(orders.active_statuses())}
                         THEN %(inactive)s
                    WHEN o.{o["paused_at"]} IS NOT NULL THEN %(paused)s END
        FROM {sql.TASKS} AS t
        LEFT JOIN {o.table} AS o ON o.{o.pk} = t.order_id
        LEFT JOIN {sql.ACCOUNTS} AS a ON a.id = t.telegram_account_id
        LEFT JOIN {sql.PROVIDERS} AS p ON p.id = t.provider_id
        WHERE t.id = ANY(%(ids)s)
        """,  # noqa: S608
        {
            "ids": list(task_ids),
            "account": Reason.ACCOUNT_INACTIVE.value,
            "provider": Reason.PROVIDER_DISABLED.value,
            "inactive": Reason.ORDER_INACTIVE.value,
            "paused": Reason.ORDER_PAUSED.value,
        },
    )
    return {task_id: Reason(reason) for task_id, reason in rows if reason}


def fail_blocked(
    rows: list[dict[str, Any]], *, now: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Before a path requeues or hands out these (locked) tasks: end the ones that may never run
    again (see ``blocked``), each with its reason (a task whose COMMIT already counted is
    settled as done instead), and roll their locks back after the commit. Returns (the rows
    still runnable, the rows ended)."""
    reasons = blocked([r["id"] for r in rows])
    if not reasons:
        return rows, []
    committed, others = split_committed([r for r in rows if r["id"] in reasons])
    settle_committed(rows=committed, now=now)
    ended: list[dict[str, Any]] = []
    for reason in {reasons[r["id"]] for r in others}:
        ids = [r["id"] for r in others if reasons[r["id"]] is reason]
        ended += fail_rows(ids, reason=reason, now=now)
    after_commit_rollback(ended, now=now)
    return [r for r in rows if r["id"] not in reasons], ended


def grace() -> timedelta:
    """A hand-out's lock outlives its lease by this much, so a report a little late still finds
    its account locked, and a lapsed lease is re-leased before anyone else takes the account."""
    return timedelta(seconds=app_settings.RESERVE_LOCK_SECONDS)


def queued_lock_until(reserved_until: datetime) -> datetime:
    """How long a queued task's lock is held: a lease and its grace past the reservation, so a
    pull at any moment of the reservation hands it out under a lock that already outlasts the
    lease (nothing to re-arm). Every path that queues a task reserves or re-arms its lock until
    this; a task that is never pulled gives its lock back when housekeeping expires it, at the
    end of its reservation."""
    return reserved_until + timedelta(seconds=app_settings.LEASE_SECONDS) + grace()


def after_commit(effect: Callable[[], Any], *, skipped: Callable[[], None] | None = None) -> None:
    """Run a Redis effect once the ledger has committed. The ledger is the truth: if Redis is
    down then, the change stands and the effect is left to time and housekeeping (a lock lapses
    by its deadline and the sweep releases it; a hold or flag is set again by the next report
    with that error), instead of answering an error for a write that did happen. ``skipped``
    is told when that happens."""

    def run() -> None:
        try:
            effect()
        except RedisError:
            logger.warning("Redis effect after commit skipped (Redis unavailable)", exc_info=True)
            if skipped is not None:
                skipped()

    transaction.on_commit(run)


def after_commit_rollback(rows: Sequence[dict[str, Any]], *, now: datetime) -> None:
    """ROLLBACK the locks of tasks that just ended, once their end is committed. If Redis is
    down then, the ledger notes when (``ClaimsCheckpoint.sweep_from``) and housekeeping's sweep
    releases them once Redis is back; at worst a lock lapses by its own deadline: a lock
    outlives its task by its TTL at most."""
    with_account = [claim_of(r) for r in rows if r["telegram_account_id"] is not None]
    if with_account:
        after_commit(
            lambda: claims.rollback_many(with_account), skipped=lambda: note_sweep(now=now)
        )


def note_sweep(*, now: datetime) -> None:
    """A ROLLBACK of tasks that ended at ``now`` was skipped: the next housekeeping pass sweeps
    the tasks that ended since (the earliest note is kept). PostgreSQL down too, or no
    housekeeping pass yet (no checkpoint row): nothing is noted, and the locks lapse by their
    deadlines."""
    try:
        sql.fetch(
            f"UPDATE {CHECKPOINT} "  # noqa: S608
            "SET sweep_from = LEAST(COALESCE(sweep_from, %(now)s), %(now)s) WHERE id = 1",
            {"now": now},
        )
    except DatabaseError:
        logger.warning("a skipped ROLLBACK was not noted (PostgreSQL unavailable)")


def split_committed(rows: Sequence[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """(rows whose COMMIT already counted a success, the others), in one round trip."""
    with_account = [r for r in rows if r["telegram_account_id"] is not None]
    flags = claims.committed_many([claim_of(r) for r in with_account])
    committed = {r["id"] for r, flag in zip(with_account, flags, strict=True) if flag}
    return (
        [r for r in rows if r["id"] in committed],
        [r for r in rows if r["id"] not in committed],
    )


def end_tasks(
    *, where: str, params: dict[str, Any], reason: str, now: datetime, skip_locked: bool = False
) -> list[dict[str, Any]]:
    """End the unfinished tasks ``where`` selects as failed with ``reason`` — except those whose
    COMMIT already counted a success (a ledger step lost to a crash): those are settled as done,
    never failed, so no success is lost. Rows are locked in id order (every path that locks
    several tasks does, so none deadlocks another); ``skip_locked`` passes over rows someone
    holds (housekeeping: they are being decided right now). Locks are rolled back after the
    commit. Returns the rows failed."""
    lock = "FOR UPDATE SKIP LOCKED" if skip_locked else "FOR UPDATE"
    rows = sql.fetch(
        f"SELECT {CLAIM_COLUMNS} FROM {sql.TASKS} "  # noqa: S608
        f"WHERE status IN {sql.LIVE} AND ({where}) ORDER BY id {lock}",
        params,
    )
    if not rows:
        return []
    committed, others = split_committed(rows)
    settle_committed(rows=committed, now=now)
    ended = fail_rows([r["id"] for r in others], reason=reason, now=now)
    after_commit_rollback(ended, now=now)
    return ended


def fail_rows(ids: Sequence[str], *, reason: str, now: datetime) -> list[dict[str, Any]]:
    """Mark these (locked, unfinished) tasks failed with ``reason``; returns their rows."""
    if not ids:
        return []
    return sql.fetch(
        f"""
        UPDATE {sql.TASKS} SET status = {sql.FAILED}, failure_reason = %(reason)s,
               finished_at = %(now)s, updated_at = %(now)s, leased_until = NULL,
               {handouts.ended(handouts.FAILED, error="%(reason)s")}
        WHERE id = ANY(%(ids)s) AND status IN {sql.LIVE}
        RETURNING {CLAIM_COLUMNS}, failure_reason
        """,  # noqa: S608
        {"reason": reason, "now": now, "ids": list(ids)},
    )


def rearm(
    rows: list[dict[str, Any]],
    *,
    until: Sequence[datetime] | datetime,
    now: datetime,
    require_state: bool = False,
) -> list[dict[str, Any]]:
    """Re-arm live tasks' locks (one pipeline of RESERVE with each task's own token: a lock
    it holds is renewed, one that lapsed is taken again only if the account is still eligible).
    Returns the rows re-armed. Tasks whose COMMIT already happened are settled as done; tasks
    whose account went to another task cannot run safely any more and fail (``lock_lost``).
    ``require_state``: ClaimsStateLost unless the claim state is present (asked in the same
    round trip)."""
    if not rows:
        if require_state:
            claims.ensure_state()
        return []
    untils = [until] * len(rows) if isinstance(until, datetime) else list(until)
    claims_ = [claim_of(r) for r in rows]
    # Most locks are still held: a one-key EXTEND renews them; only the others need RESERVE.
    extended = claims.extend_many(claims_, now=now, until=untils, require_state=require_state)
    kept = [r for r, e in zip(rows, extended, strict=True) if e is ExtendResult.REARMED]
    # Not held any more (lapsed, or taken by another task): RESERVE says whether the task
    # already succeeded (COMMIT released its lock), can take it back, or has lost it.
    lapsed = [i for i, e in enumerate(extended) if e is not ExtendResult.REARMED]
    lost: list[str] = []
    committed = []
    if lapsed:
        refusals = claims.reserve_many(
            [claims_[i] for i in lapsed], now=now, until=[untils[i] for i in lapsed]
        )
        for i, refusal in zip(lapsed, refusals, strict=True):
            if refusal is None:
                kept.append(rows[i])
            elif refusal is Refusal.COMMITTED:
                committed.append(rows[i])
            else:
                lost.append(rows[i]["id"])
    settle_committed(rows=committed, now=now)
    fail_rows(lost, reason=Reason.LOCK_LOST, now=now)
    return kept


def settle_committed(*, rows: Sequence[dict[str, Any]], now: datetime) -> set[str]:
    """Tasks Redis says were committed (a ``done`` whose ledger step never happened: the
    process died or PostgreSQL failed after COMMIT) are done in the ledger too, at the moment
    COMMIT counted them. Every path that would end, re-arm or requeue a task calls this when
    Redis answers ``committed`` for the task's own token."""
    if not rows:
        return set()
    results = claims.commit_many_at([claim_of(r) for r in rows], now=now)  # no-op: tells when
    return mark_done(
        [(r["id"], at, None, None) for r, (_, at) in zip(rows, results, strict=True)], now=now
    )


def mark_done(
    done: Sequence[tuple[str, datetime, str | None, str | None]],
    *,
    now: datetime,
    order_ids: set[int] | None = None,
    durable: bool = True,
) -> set[str]:
    """Mark tasks done — (task id, when COMMIT counted it, result JSON, provider_task_id) — and
    take their units off their orders; returns the ids this call finished.

    ``finished_at`` is when COMMIT first counted the success (a retried report keeps it), so
    the ledger's times are the ones cooldowns were measured from. The status guard lets one
    call per task through, and only that one counts its units (never below zero).
    ``order_ids``: the tasks' orders, when the caller knows them. ``durable=False``: the
    transaction's commit does not wait for the WAL flush — for a transaction that only marks
    COMMITted tasks done: should PostgreSQL crash and lose it, the COMMIT markers in Redis
    make the next re-arm (pull, heartbeat, housekeeping) settle each task again, counted once.
    """
    if not done:
        return set()
    if order_ids is None or len(order_ids) > 1:
        # Several orders: locked in id order first, so two batches never deadlock on them. (The
        # one order of a batch is locked by the statement's own update, after the tasks: the
        # order every path follows.)
        orders.lock_orders_of_tasks([d[0] for d in done])
    return {r["id"] for r in _mark_done(done, now=now, durable=durable)}


def mark_one_done(
    task_id: str,
    *,
    at: datetime,
    result: str | None,
    provider_task_id: str | None,
    now: datetime,
    provider_id: int | None = None,
) -> dict[str, Any] | None:
    """Mark one handed-out task (of ``provider_id``, when given) done, taking its unit off its
    order, in one statement that locks the task's row (then its order's: the order every path
    follows); its claim (``claim_of``) if this call finished it, else None (finished already,
    never handed out, another provider's, or no such task). For a report's fast path: the
    caller COMMITs in Redis next, in the same transaction, before anything is committed."""
    rows = _mark_done(
        [(task_id, at, result, provider_task_id)],
        now=now,
        durable=False,
        handed_out=True,
        provider_id=provider_id,
    )
    return rows[0] if rows else None


def mark_many_done(
    done: Sequence[tuple[str, str | None, str | None]],
    *,
    at: datetime,
    now: datetime,
    provider_id: int | None = None,
) -> list[dict[str, Any]]:
    """``mark_one_done`` for several tasks — (task id, result JSON, provider_task_id), each id
    once — whose rows and orders the caller has locked (``orders.lock_tasks_then_orders``):
    the claims of those this call finished."""
    return _mark_done(
        [(task_id, at, result, ptid) for task_id, result, ptid in done],
        now=now,
        durable=False,
        handed_out=True,
        provider_id=provider_id,
    )


def _mark_done(
    done: Sequence[tuple[str, datetime, str | None, str | None]],
    *,
    now: datetime,
    durable: bool,
    handed_out: bool = False,
    provider_id: int | None = None,
) -> list[dict[str, Any]]:
    rows = json.dumps(
        [{"id": i, "at": at.isoformat(), "result": res, "ptid": ptid} for i, at, res, ptid in done]
    )
    finished = sql.fetch(
        done_sql.done_statement(
            durable=durable, handed_out=handed_out, scoped=provider_id is not None
        ),
        {
            "rows": rows,
            "now": now,
            "one_shot": done_sql.one_shot_actions(),
            "provider": provider_id,
            **orders.deliver_params(now),
        },
    )
    gated = {a: app_settings.policy(a).gate for a in app_settings.ACTIONS}
    if any(gated.get(r["action"]) for r in finished):
        done_sql.move_memberships([r for r in finished if gated.get(r["action"])])
    return finished
