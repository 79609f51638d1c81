"""Services of the provider API: account sync, leased pull, report, extend, release.

Every state transition of a task happens here (generation lives in ``generation.py``). Views,
Celery tasks, commands and admin actions call these functions and hold no rules of their own.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, connection, transaction
from redis.exceptions import RedisError

from telegram_tasks import claims, errors
from telegram_tasks.claims import Claim, ExtendResult, Refusal, Target
from telegram_tasks.conf import app_settings, get_order_model
from telegram_tasks.exceptions import BatchTooLarge, TaskConflict
from telegram_tasks.models import TelegramAccount, TelegramTask, new_ulid

logger = logging.getLogger(__name__)
S = TelegramTask.Status
TASKS = TelegramTask._meta.db_table


def _claim(row: dict[str, Any]) -> Claim:
    post_id = row["post_id"] if "post_id" in row else row["payload"].get("post_id")
    return Claim(
        row["telegram_account_id"], row["action"], Target(row["link_hash"], post_id), row["id"]
    )


def _grace() -> timedelta:
    # A hand-out's lock outlives its lease by this much, so a report a little late still finds
    # its account locked, and a lapsed lease is re-leased before anyone else takes the account.
    return timedelta(seconds=app_settings.RESERVE_LOCK_SECONDS)


def _fetch(sql: str, params: Sequence[Any] | dict[str, Any]) -> list[dict[str, Any]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if cursor.description is None:
            return []
        names = [c.name for c in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    # Django has psycopg hand jsonb over as text (it decodes JSON itself in the ORM).
    for row in rows:
        if isinstance(row.get("payload"), str):
            row["payload"] = json.loads(row["payload"])
    return rows


# --- accounts ----------------------------------------------------------------------------------


@dataclass
class SyncResult:
    synced: int
    deactivated: int = 0


def accounts_sync(*, items: list[dict[str, Any]], now: datetime) -> SyncResult:
    """Upsert accounts by provider_account_id.

    ``items`` are validated dicts holding ``provider_account_id`` and any of ``phone``,
    ``is_active``, ``meta``; a field an item leaves out keeps its stored value (new accounts
    get the model default). One INSERT … ON CONFLICT per combination of fields present, so the
    number of queries does not grow with the batch. Accounts switched off here stop being
    picked, and their queued tasks are released for other accounts.
    """
    if len(items) > app_settings.SYNC_MAX_BATCH:
        raise BatchTooLarge(
            f"at most {app_settings.SYNC_MAX_BATCH} accounts per sync",
            {"max": app_settings.SYNC_MAX_BATCH, "got": len(items)},
        )
    # Sorted, and existing rows locked first in that order: two syncs of overlapping accounts
    # queue behind each other instead of deadlocking.
    items = sorted(items, key=lambda i: i["provider_account_id"])
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for item in items:
        present = tuple(sorted(k for k in ("phone", "is_active", "meta") if k in item))
        groups.setdefault(present, []).append(item)
    turned_off = [i["provider_account_id"] for i in items if i.get("is_active") is False]
    with transaction.atomic():
        list(
            TelegramAccount.objects.select_for_update()
            .filter(provider_account_id__in=[i["provider_account_id"] for i in items])
            .order_by("provider_account_id")
            .values_list("id", flat=True)
        )
        was_active = set(
            TelegramAccount.objects.filter(
                provider_account_id__in=turned_off, is_active=True
            ).values_list("id", flat=True)
        )
        for present, group in groups.items():
            TelegramAccount.objects.bulk_create(
                [
                    TelegramAccount(
                        provider_account_id=i["provider_account_id"],
                        **{k: i[k] for k in present},
                        created_at=now,
                        updated_at=now,
                    )
                    for i in group
                ],
                update_conflicts=True,
                unique_fields=["provider_account_id"],
                update_fields=[*present, "updated_at"],
            )
        tasks_release_for_accounts(account_ids=sorted(was_active), now=now)
    return SyncResult(synced=len(items), deactivated=len(was_active))


def _end(
    *, where: str, params: dict[str, Any], reason: str, now: datetime, skip_locked: bool = False
) -> list[dict[str, Any]]:
    """End the unfinished tasks ``where`` selects as failed with ``reason`` — except those whose
    COMMIT already counted a success (a ledger step lost to a crash): those are settled as done,
    never failed, so no success is lost. Rows are locked in id order (every path that locks
    several tasks does, so none deadlocks another); ``skip_locked`` passes over rows someone
    holds (housekeeping: they are being decided right now). Locks are rolled back after the
    commit. Returns the rows failed."""
    lock = "FOR UPDATE SKIP LOCKED" if skip_locked else "FOR UPDATE"
    rows = _fetch(
        f"SELECT id, order_id, telegram_account_id, action, link_hash, payload FROM {TASKS} "  # noqa: S608
        f"WHERE status IN ('queued', 'leased', 'pending') AND ({where}) ORDER BY id {lock}",
        params,
    )
    if not rows:
        return []
    with_account = [r for r in rows if r["telegram_account_id"] is not None]
    flags = claims.committed_many([_claim(r) for r in with_account])
    committed = {r["id"] for r, flag in zip(with_account, flags, strict=True) if flag}
    tasks_settle_committed(rows=[r for r in rows if r["id"] in committed], now=now)
    ended = _fetch(
        f"""
        UPDATE {TASKS} SET status = 'failed', failure_reason = %(reason)s,
               finished_at = %(now)s, updated_at = %(now)s, leased_until = NULL
        WHERE id = ANY(%(ids)s)
        RETURNING id, order_id, telegram_account_id, action, link_hash, payload
        """,  # noqa: S608
        {"reason": reason, "now": now, "ids": [r["id"] for r in rows if r["id"] not in committed]},
    )
    _after_commit_rollback([r for r in ended if r["telegram_account_id"] is not None])
    return ended


def tasks_release_for_accounts(*, account_ids: Sequence[int], now: datetime) -> int:
    """Queued tasks of these accounts fail (``account_inactive``) and give back their locks, so
    their orders get tasks on other accounts. Leased and pending tasks are left to finish."""
    if not account_ids:
        return 0
    ended = _end(
        where="telegram_account_id = ANY(%(accounts)s) AND status = 'queued'",
        params={"accounts": list(account_ids)},
        reason="account_inactive",
        now=now,
    )
    return len(ended)


def accounts_deactivate(*, account_ids: Sequence[int], now: datetime) -> int:
    """An account that is gone (banned, session revoked): never picked again, and its queued
    tasks are released for other accounts."""
    with transaction.atomic():
        tasks_release_for_accounts(account_ids=account_ids, now=now)
        changed = TelegramAccount.objects.filter(id__in=account_ids, is_active=True).update(
            is_active=False, updated_at=now
        )
    return changed


def tasks_fail(
    *,
    reason: str,
    now: datetime,
    task_ids: Sequence[str] | None = None,
    order_ids: Sequence[int] | None = None,
    statuses: Sequence[str] = (S.QUEUED, S.LEASED, S.PENDING),
) -> int:
    """End unfinished tasks (by id or by order) as failed with ``reason`` (see ``_end``); a
    late ``done`` for them is then a duplicate."""
    with transaction.atomic():
        ended = _end(
            where="status = ANY(%(statuses)s) "
            "AND (%(ids)s::varchar[] IS NULL OR id = ANY(%(ids)s)) "
            "AND (%(orders)s::bigint[] IS NULL OR order_id = ANY(%(orders)s))",
            params={
                "statuses": [str(s) for s in statuses],
                "ids": None if task_ids is None else list(task_ids),
                "orders": None if order_ids is None else list(order_ids),
            },
            reason=reason,
            now=now,
        )
    return len(ended)


def tasks_requeue(*, task_ids: Sequence[str], now: datetime) -> tuple[int, int]:
    """Put stuck unfinished tasks back in the queue at once, on the same account, with a fresh
    reservation (see ``_rearm``). Returns (requeued, not requeued); finished tasks are left
    alone (their orders get new tasks from generation)."""
    until = now + timedelta(seconds=app_settings.RESERVE_LOCK_SECONDS)
    with transaction.atomic():
        rows = _fetch(
            f"SELECT id, telegram_account_id, action, link_hash, payload FROM {TASKS} "  # noqa: S608
            "WHERE id = ANY(%s) AND status IN ('queued', 'leased', 'pending') "
            "AND telegram_account_id IS NOT NULL ORDER BY id FOR UPDATE",
            [list(task_ids)],
        )
        if not rows:
            return 0, 0
        ok = [r["id"] for r in _rearm(rows, until=until, now=now)]
        if ok:
            _fetch(
                f"""
                UPDATE {TASKS} SET status = 'queued', available_at = %(now)s,
                       reserved_until = %(until)s, leased_until = NULL, updated_at = %(now)s
                WHERE id = ANY(%(ids)s) AND status IN ('queued', 'leased', 'pending')
                """,  # noqa: S608
                {"now": now, "until": until, "ids": ok},
            )
    return len(ok), len(rows) - len(ok)


def orders_stop(*, order_ids: Sequence[int], reason: str, now: datetime) -> int:
    """The target is unusable: active orders end PARTIAL (something was delivered) or CANCELED,
    and their unfinished tasks are failed and rolled back. Tasks are locked before orders, in id
    order, as every path does."""
    Order = get_order_model()
    meta = Order._meta
    col = {f: meta.get_field(f).column for f in ("remains", "quantity", "status", "updated_at")}
    with transaction.atomic():
        tasks_fail(reason=reason, now=now, order_ids=list(order_ids))
        stopped = _fetch(
            f"""
            WITH locked AS (
                SELECT {meta.pk.column} AS id FROM {meta.db_table}
                WHERE {meta.pk.column} = ANY(%(ids)s) AND {col["status"]} = ANY(%(active)s)
                ORDER BY {meta.pk.column} FOR UPDATE
            )
            UPDATE {meta.db_table} AS o
            SET {col["status"]} = CASE WHEN o.{col["remains"]} < o.{col["quantity"]}
                                       THEN %(partial)s ELSE %(canceled)s END,
                {col["updated_at"]} = %(now)s
            FROM locked WHERE o.{meta.pk.column} = locked.id
            RETURNING o.{meta.pk.column} AS id
            """,  # noqa: S608
            {
                "ids": list(order_ids),
                "active": [s.value for s in Order.ACTIVE],
                "partial": Order.Status.PARTIAL.value,
                "canceled": Order.Status.CANCELED.value,
                "now": now,
            },
        )
    return len(stopped)


def _after_commit_rollback(rows: list[dict[str, Any]]) -> None:
    """ROLLBACK the locks of tasks that just ended, once their end is committed. If Redis is
    down then, the locks lapse by their own deadline: a lock outlives its task by its TTL at
    most."""
    if not rows:
        return
    claims_ = [_claim(r) for r in rows]
    _after_commit(lambda: claims.rollback_many(claims_))


def _after_commit(effect: Callable[[], Any]) -> None:
    """Run a Redis effect once the ledger has committed. The ledger is the truth: if Redis is
    down then, the change stands and the effect is left to time and housekeeping (a lock lapses
    by its deadline and the sweep releases it; a hold or flag is set again by the next report
    with that error), instead of answering an error for a write that did happen."""

    def run() -> None:
        try:
            effect()
        except RedisError:
            logger.warning("Redis effect after commit skipped (Redis unavailable)", exc_info=True)

    transaction.on_commit(run)


def _rearm(
    rows: list[dict[str, Any]], *, until: Sequence[datetime] | datetime, now: datetime
) -> list[dict[str, Any]]:
    """Re-arm live tasks' locks (one pipeline of RESERVE with each task's own token: a lock
    it holds is renewed, one that lapsed is taken again only if the account is still eligible).
    Returns the rows re-armed. Tasks whose COMMIT already happened are settled as done; tasks
    whose account went to another task cannot run safely any more and fail (``lock_lost``)."""
    if not rows:
        return []
    untils = [until] * len(rows) if isinstance(until, datetime) else list(until)
    claims_ = [_claim(r) for r in rows]
    # Most locks are still held: a one-key EXTEND renews them; only the others need RESERVE.
    extended = claims.extend_many(claims_, now=now, until=untils)
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
    tasks_settle_committed(rows=committed, now=now)
    if lost:
        _fetch(
            f"""
            UPDATE {TASKS} SET status = 'failed', failure_reason = 'lock_lost',
                   finished_at = %s, updated_at = %s, leased_until = NULL
            WHERE id = ANY(%s) AND status IN ('queued', 'leased', 'pending')
            """,  # noqa: S608
            [now, now, lost],
        )
    return kept


# --- pull --------------------------------------------------------------------------------------


@dataclass
class PullResult:
    tasks: list[dict[str, Any]]
    replayed: bool = False


def _task_out(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "task_id": row["id"],
        "order_id": row["order_id"],
        "action": row["action"],
        "link": row["link"],
        "account": {"provider_account_id": row["provider_account_id"], "phone": row["phone"]},
        "per_call": row["per_call"],
        "post_id": row["post_id"],
        "link_hash": row["link_hash"],
        "attempt": row["attempt"],
        "leased_until": row["leased_until"],
        "lease_id": row["lease_id"],
    }


# What a pull returns: the snapshot's fields read out in SQL, so no payload is decoded in Python.
_RETURNING = (
    "t.id, t.order_id, t.action, t.link_hash, t.telegram_account_id, t.attempt, "
    # As the API renders it (UTC, ISO 8601): parsed into a datetime only to be printed again.
    """to_char(t.leased_until AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') """
    "AS leased_until, "
    "t.lease_id, t.per_call, t.payload->>'link' AS link, "
    "(t.payload->>'post_id')::bigint AS post_id, "
    "t.payload->'account'->>'provider_account_id' AS provider_account_id, "
    "t.payload->'account'->>'phone' AS phone"
)


def tasks_pull(
    *,
    limit: int,
    now: datetime,
    accounts: Sequence[str] | None = None,
    request_id: str | None = None,
) -> PullResult:
    """Lease up to ``limit`` tasks: queued ones that are due and still reserved, and leases
    that ran out (with hand-outs left), oldest first. Two pulls never get the same task."""
    if request_id:
        replay = claims.pull_replay_begin(request_id, ttl=app_settings.PULL_REPLAY_SECONDS)
        if replay is claims.REPLAY_IN_PROGRESS:
            raise TaskConflict(
                "a pull with this request_id is still in progress", {"request_id": request_id}
            )
        if replay is not None:
            return PullResult(tasks=_replayed(replay), replayed=True)
    try:
        tasks = _lease(limit=limit, now=now, accounts=accounts)
    except BaseException:
        if request_id:
            claims.pull_replay_forget(request_id)
        raise
    if request_id:
        lease_id = tasks[0]["lease_id"] if tasks else None
        try:
            claims.pull_replay_store(
                request_id,
                {"lease_id": lease_id, "ids": [t["task_id"] for t in tasks]},
                ttl=app_settings.PULL_REPLAY_SECONDS,
            )
        except RedisError:
            # The tasks are leased: hand them out; only a replay of this pull is lost.
            with contextlib.suppress(RedisError):
                claims.pull_replay_forget(request_id)
    return PullResult(tasks=tasks)


# One statement leases a batch: pick with SKIP LOCKED (concurrent pulls skip each other's rows),
# lease, return everything the response needs (the payload snapshot: no join, no per-task
# query). Queued tasks due and still reserved, and leases over but not abandoned, oldest first.
LEASE_SQL = f"""
    WITH picked AS (
        SELECT id FROM {TASKS}
        WHERE ((status = 'queued' AND available_at <= %(now)s AND reserved_until > %(now)s)
            OR (status = 'leased' AND leased_until <= %(now)s
                AND leased_until > %(abandoned)s AND attempt + 1 < %(max_attempts)s))
          AND (%(accounts)s::varchar[] IS NULL OR provider_account_id = ANY(%(accounts)s))
        ORDER BY available_at, id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    )
    UPDATE {TASKS} AS t
    SET status = 'leased',
        attempt = CASE WHEN t.lease_id IS NULL THEN 0 ELSE t.attempt + 1 END,
        lease_id = %(lease_id)s, leased_at = %(now)s, leased_until = %(until)s,
        updated_at = %(now)s
    FROM picked WHERE t.id = picked.id
    RETURNING {_RETURNING}
"""  # noqa: S608


def _lease(*, limit: int, now: datetime, accounts: Sequence[str] | None) -> list[dict[str, Any]]:
    lease_id = new_ulid()
    until = now + timedelta(seconds=app_settings.LEASE_SECONDS)
    with transaction.atomic():
        rows = _fetch(
            LEASE_SQL,
            {
                "now": now,
                "until": until,
                "limit": limit,
                "lease_id": lease_id,
                "max_attempts": app_settings.MAX_ATTEMPTS,
                # A lease over for longer than the grace is abandoned: housekeeping ends it.
                "abandoned": now - _grace(),
                "accounts": None if accounts is None else list(accounts),
            },
        )
        if not rows:
            return []
        # Re-arming checks eligibility against Redis: a Redis that lost its state (flushed,
        # restarted empty) would say yes to anything. Refuse (503, the lease rolls back) until
        # rebuild_claims has run.
        claims.ensure_state()
        rows.sort(key=lambda r: r["id"])
        rows = _rearm(rows, until=until + _grace(), now=now)
    return [_task_out(r) for r in rows]


def _replayed(replay: dict[str, Any]) -> list[dict[str, Any]]:
    if not replay.get("ids"):
        return []
    rows = _fetch(
        f"SELECT {_RETURNING} FROM {TASKS} AS t "  # noqa: S608
        "WHERE t.id = ANY(%s) AND t.lease_id = %s AND t.status = 'leased' ORDER BY t.id",
        [replay["ids"], replay["lease_id"]],
    )
    return [_task_out(r) for r in rows]


# --- report ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportIn:
    task_id: str
    state: str  # done | failed | pending
    error_code: str | None = None
    error_message: str | None = None
    retry_after: int | None = None
    provider_task_id: str | None = None
    data: Any = None
    lease_id: str | None = None


@dataclass
class ReportOut:
    task_id: str
    ok: bool = True
    duplicate: bool = False
    status: str | None = None
    error: dict[str, Any] | None = None
    http_status: int = 200

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"task_id": self.task_id, "ok": self.ok}
        if self.ok:
            out["status"] = self.status
            if self.duplicate:
                out["duplicate"] = True
        else:
            out["error"] = self.error
        return out


Item = tuple[ReportIn, dict[str, Any], ReportOut]


@dataclass
class _Batch:
    done: list[Item] = field(default_factory=list)
    failed: list[Item] = field(default_factory=list)
    retry: list[Item] = field(default_factory=list)
    pending: list[Item] = field(default_factory=list)
    plans: dict[str, errors.Plan] = field(default_factory=dict)


def _refuse(out: ReportOut, status: int, code: str, message: str) -> None:
    out.ok, out.http_status = False, status
    out.error = {"code": code, "message": message, "details": {}}


def tasks_report(*, reports: Sequence[ReportIn], now: datetime) -> list[ReportOut]:
    """Apply provider reports; one result per report, in order. Idempotent per task.

    Order of effects for ``done``: with the tasks' rows locked, Redis COMMIT first, then the
    ledger step (task done, units off the order) in the same transaction. COMMIT is idempotent
    per task id and remembers when it counted, so if PostgreSQL fails (or the process dies)
    in between, nothing is counted twice and nothing is lost: the provider's retry finds the
    COMMIT done and counts the success once in the ledger; without a retry, the next pull,
    heartbeat or housekeeping finds the COMMIT marker when it re-arms the task's lock and
    settles it (``tasks_settle_committed``). The other way round, a crash after the ledger said
    done would leave cooldown and cap unconsumed, and no retry could mend it. ``failed``
    releases the lock after the ledger commits: a ROLLBACK that does not happen leaves a lock
    that lapses by its own deadline (and housekeeping sweeps it).
    """
    if len(reports) > app_settings.REPORT_MAX_BATCH:
        raise BatchTooLarge(
            f"at most {app_settings.REPORT_MAX_BATCH} reports per request",
            {"max": app_settings.REPORT_MAX_BATCH, "got": len(reports)},
        )
    outs = [ReportOut(task_id=r.task_id) for r in reports]
    if not reports:
        return outs
    ids = sorted({r.task_id for r in reports})
    with transaction.atomic():
        # The batch's tasks are locked (in id order, so two batches never deadlock) from this
        # read to the commit: no other report, pull or housekeeping changes them in between.
        current = {
            row["id"]: row
            for row in _fetch(
                "SELECT id, order_id, action, link_hash, telegram_account_id, payload, status, "  # noqa: S608
                f"lease_id, attempt, per_call FROM {TASKS} WHERE id = ANY(%s) "
                "ORDER BY id FOR UPDATE",
                [ids],
            )
        }
        batch = _classify(reports, outs, current)
        _settle_instead(batch, now)
        committed_at: dict[str, datetime] = {}
        if batch.done:
            # A Redis that lost its state must be rebuilt first: counting into it now would
            # be undone by the rebuild's merge.
            claims.ensure_state()
            results = claims.commit_many_at([_claim(row) for _, row, _ in batch.done], now=now)
            committed_at = {
                r.task_id: at for (r, _, _), (_, at) in zip(batch.done, results, strict=True)
            }
        done = [(r.task_id, committed_at[r.task_id], _result(r), r.provider_task_id)
                for r, _, _ in batch.done]  # fmt: skip
        finished = _mark_done(done, now)
        finished |= _apply_failed(batch.failed, batch.plans, now)
        finished |= _apply_retry(batch.retry, batch.plans, now)
        finished |= _apply_pending(batch.pending, now)
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
    return outs


def _settle_instead(batch: _Batch, now: datetime) -> None:
    """A failed or pending report for a task whose COMMIT already counted a success (the
    provider reported done, then the ledger step was lost) cannot undo that success: the task
    is settled as done instead, and the report changes nothing else."""
    others = [*batch.failed, *batch.retry, *batch.pending]
    if not others:
        return
    flags = claims.committed_many([_claim(row) for _, row, _ in others])
    committed = [item for item, flag in zip(others, flags, strict=True) if flag]
    if not committed:
        return
    ids = {row["id"] for _, row, _ in committed}
    tasks_settle_committed(rows=[row for _, row, _ in committed], now=now)
    for _, _, out in committed:
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
            _refuse(out, 404, "task_not_found", f"no task {report.task_id}")
            continue
        if report.task_id in seen:
            # The same task twice in one batch: the first report decides, this one repeats it.
            out.duplicate, out.status = True, row["status"]
            continue
        seen.add(report.task_id)
        out.status = row["status"]
        if row["status"] in (S.DONE, S.FAILED):
            out.duplicate = True
            continue
        if row["lease_id"] is None:
            _refuse(out, 409, "task_not_leased", "the task was never handed out")
            continue
        if report.state == "done":
            batch.done.append((report, row, out))  # accepted from any holder, once
            continue
        if report.lease_id is not None and report.lease_id != row["lease_id"]:
            _refuse(out, 409, "stale_lease", "lease_id is not the task's current lease")
            continue
        if row["status"] == S.QUEUED:
            _refuse(out, 409, "task_not_leased", "the task is queued, not handed out")
            continue
        if report.state == "pending":
            batch.pending.append((report, row, out))
            continue
        plan = errors.plan_failure(report.error_code, report.retry_after)
        batch.plans[report.task_id] = plan
        if plan.retry_after is not None and row["attempt"] + 2 <= app_settings.MAX_ATTEMPTS:
            batch.retry.append((report, row, out))
        else:
            if plan.retry_after is not None:  # no hand-out left to run it again
                batch.plans[report.task_id] = replace(plan, reason="attempts_exhausted")
            batch.failed.append((report, row, out))
    return batch


def _result(report: ReportIn) -> str:
    return json.dumps(
        {
            "state": report.state,
            "error": report.error_code or report.error_message,
            "error_message": report.error_message,
            "retry_after": report.retry_after,
            "data": report.data,
        }
    )


def _mark_done(
    done: Sequence[tuple[str, datetime, str | None, str | None]], now: datetime
) -> set[str]:
    """Mark tasks done — (task id, when COMMIT counted it, result JSON, provider_task_id) — and
    take their units off their orders; returns the ids this call finished.

    ``finished_at`` is when COMMIT first counted the success (a retried report keeps it), so
    the ledger's times are the ones cooldowns were measured from. The status guard lets one
    call per task through, and only that one counts its units (never below zero).
    """
    if not done:
        return set()
    Order = get_order_model()
    meta = Order._meta
    col = {f: meta.get_field(f).column for f in ("remains", "status", "updated_at")}
    rows = json.dumps(
        [{"id": i, "at": at.isoformat(), "result": res, "ptid": ptid} for i, at, res, ptid in done]
    )
    # Orders are locked in id order before the update: concurrent batches over the same orders
    # queue instead of deadlocking.
    _fetch(
        f"SELECT 1 FROM {meta.db_table} WHERE {meta.pk.column} IN "  # noqa: S608
        f"(SELECT order_id FROM {TASKS} WHERE id = ANY(%s)) ORDER BY {meta.pk.column} FOR UPDATE",
        [[d[0] for d in done]],
    )
    finished = _fetch(
        f"""
        WITH r AS (
            SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb)
                          AS r(id varchar, result text, ptid varchar, at timestamptz)
        ), done AS (
            UPDATE {TASKS} AS t
            SET status = 'done', result = COALESCE(r.result::jsonb, t.result),
                provider_task_id = COALESCE(r.ptid, t.provider_task_id),
                finished_at = r.at, updated_at = %(now)s, leased_until = NULL
            FROM r
            WHERE t.id = r.id AND t.status IN ('queued', 'leased', 'pending')
            RETURNING t.id, t.order_id, t.per_call
        ), units AS (
            SELECT order_id, SUM(per_call) AS units FROM done GROUP BY order_id
        ), orders AS (
            UPDATE {meta.db_table} AS o
            SET {col["remains"]} = GREATEST(o.{col["remains"]} - units.units, 0),
                {col["status"]} = CASE
                    WHEN o.{col["remains"]} - units.units <= 0
                         AND o.{col["status"]} = ANY(%(active)s) THEN %(completed)s
                    ELSE o.{col["status"]} END,
                {col["updated_at"]} = %(now)s
            FROM units WHERE o.{meta.pk.column} = units.order_id
            RETURNING o.{meta.pk.column}
        )
        SELECT id FROM done
        """,  # noqa: S608
        {
            "rows": rows,
            "now": now,
            "active": [s.value for s in Order.ACTIVE],
            "completed": Order.Status.COMPLETED.value,
        },
    )
    return {r["id"] for r in finished}


def tasks_settle_committed(*, rows: Sequence[dict[str, Any]], now: datetime) -> set[str]:
    """Tasks Redis says were committed (a ``done`` whose ledger step never happened: the
    process died or PostgreSQL failed after COMMIT) are done in the ledger too, at the moment
    COMMIT counted them. Pull, extend, pending and housekeeping call this when RESERVE answers
    ``committed`` for a task's own token."""
    if not rows:
        return set()
    results = claims.commit_many_at([_claim(r) for r in rows], now=now)  # no-op: tells when
    return _mark_done(
        [(r["id"], at, None, None) for r, (_, at) in zip(rows, results, strict=True)], now
    )


def _apply_failed(items: list[Item], plans: dict[str, errors.Plan], now: datetime) -> set[str]:
    """Failed: the task ends and gives its lock back; what the error says about the account
    or the target is applied once, for the reports that did end their task."""
    if not items:
        return set()
    rows = json.dumps(
        [
            {
                "id": r.task_id,
                "lease": row["lease_id"],
                "result": _result(r),
                "ptid": r.provider_task_id,
                "err": (r.error_message or r.error_code or "")[:2000],
                "reason": plans[r.task_id].reason,
            }
            for r, row, _ in items
        ]
    )
    ended = _fetch(
        f"""
        UPDATE {TASKS} AS t
        SET status = 'failed', result = r.result::jsonb, failure_reason = r.reason,
            last_error = r.err, provider_task_id = COALESCE(r.ptid, t.provider_task_id),
            finished_at = %(now)s, updated_at = %(now)s, leased_until = NULL
        FROM jsonb_to_recordset(%(rows)s::jsonb)
             AS r(id varchar, lease varchar, result text, ptid varchar, err text, reason varchar)
        WHERE t.id = r.id AND t.status IN ('leased', 'pending') AND t.lease_id = r.lease
        RETURNING t.id, t.order_id, t.telegram_account_id, t.action, t.link_hash, t.payload
        """,  # noqa: S608
        {"rows": rows, "now": now},
    )
    _after_commit_rollback(ended)
    _apply_consequences(ended, plans, now)
    return {r["id"] for r in ended}


def _apply_consequences(
    ended: list[dict[str, Any]], plans: dict[str, errors.Plan], now: datetime
) -> None:
    by_scope: dict[errors.Scope, list[dict[str, Any]]] = {}
    for row in ended:
        by_scope.setdefault(plans[row["id"]].scope, []).append(row)
    dead = sorted({r["telegram_account_id"] for r in by_scope.get(errors.Scope.ACCOUNT_DEAD, [])})
    full = sorted({r["telegram_account_id"] for r in by_scope.get(errors.Scope.ACCOUNT_FULL, [])})
    # A flood wait on the last hand-out still holds the account off, even though the task ends.
    flooded = [
        (r["telegram_account_id"], plans[r["id"]].hold_seconds)
        for scope in (errors.Scope.ACCOUNT_FLOOD, errors.Scope.ACCOUNT_HOLD)
        for r in by_scope.get(scope, [])
        if plans[r["id"]].hold_seconds
    ]
    if full or flooded:

        def redis_effects() -> None:
            claims.mark_full(full, ttl_seconds=app_settings.STATE_TTL_SECONDS)
            claims.hold_many(flooded, now=now)

        _after_commit(redis_effects)
    stopped = sorted({r["order_id"] for r in by_scope.get(errors.Scope.TARGET_DEAD, [])})
    # Deactivating an account and stopping an order touch other tasks than the reported ones:
    # done after the report commits, each in a transaction of its own, so a report never
    # waits on rows another report holds while holding its own.
    if dead or stopped:

        def ledger_effects() -> None:
            try:
                if dead:
                    accounts_deactivate(account_ids=dead, now=now)
                if stopped:
                    orders_stop(order_ids=stopped, reason="target_unavailable", now=now)
            except (DatabaseError, RedisError):
                logger.warning("consequence of a failure report not applied", exc_info=True)

        transaction.on_commit(ledger_effects)


def _apply_retry(items: list[Item], plans: dict[str, errors.Plan], now: datetime) -> set[str]:
    """Failed, to run again: queued again on the same account (its lock is kept for it),
    available after the wait; a flood wait also holds the account off every action."""
    if not items:
        return set()
    grace = _grace()
    wait = {r.task_id: timedelta(seconds=plans[r.task_id].retry_after or 0) for r, _, _ in items}
    rows = json.dumps(
        [
            {
                "id": r.task_id,
                "lease": row["lease_id"],
                "at": (now + wait[r.task_id]).isoformat(),
                "until": (now + wait[r.task_id] + grace).isoformat(),
                "err": (r.error_message or r.error_code or "")[:2000],
                "result": _result(r),
            }
            for r, row, _ in items
        ]
    )
    requeued = _fetch(
        f"""
        UPDATE {TASKS} AS t
        SET status = 'queued', available_at = r.at, reserved_until = r.until, leased_until = NULL,
            last_error = r.err, result = r.result::jsonb, updated_at = %(now)s
        FROM jsonb_to_recordset(%(rows)s::jsonb)
             AS r(id varchar, lease varchar, at timestamptz, until timestamptz, err text,
                  result text)
        WHERE t.id = r.id AND t.status IN ('leased', 'pending') AND t.lease_id = r.lease
        RETURNING t.id, t.telegram_account_id, t.action, t.link_hash, t.payload, t.reserved_until
        """,  # noqa: S608
        {"rows": rows, "now": now},
    )
    if requeued:
        claims_ = [_claim(r) for r in requeued]
        untils = [r["reserved_until"] for r in requeued]
        holds = [
            (r["telegram_account_id"], plans[r["id"]].hold_seconds)
            for r in requeued
            if plans[r["id"]].hold_seconds
        ]

        def redis_effects() -> None:
            claims.hold_many(holds, now=now)
            claims.extend_many(claims_, now=now, until=untils)

        _after_commit(redis_effects)
    return {r["id"] for r in requeued}


def _apply_pending(items: list[Item], now: datetime) -> set[str]:
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
    parked = _fetch(
        f"""
        UPDATE {TASKS} AS t
        SET status = 'pending', leased_until = %(until)s,
            provider_task_id = COALESCE(r.ptid, t.provider_task_id), updated_at = %(now)s
        FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(id varchar, lease varchar, ptid varchar)
        WHERE t.id = r.id AND t.status IN ('leased', 'pending') AND t.lease_id = r.lease
        RETURNING t.id, t.telegram_account_id, t.action, t.link_hash, t.payload
        """,  # noqa: S608
        {"rows": rows, "now": now, "until": until},
    )
    # Re-armed before the commit: a pending task without its lock could run beside another.
    return {r["id"] for r in _rearm(parked, until=until + _grace(), now=now)}


# --- extend and release ------------------------------------------------------------------------


@dataclass(frozen=True)
class LeaseRef:
    task_id: str
    lease_id: str
    seconds: int = 0


@dataclass
class LeaseOut:
    task_id: str
    ok: bool
    leased_until: datetime | None = None
    error: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"task_id": self.task_id, "ok": self.ok}
        if self.ok:
            if self.leased_until is not None:
                out["leased_until"] = self.leased_until
        else:
            out["error"] = self.error
        return out


def _lease_errors(refs: Sequence[LeaseRef], changed: set[str]) -> list[LeaseOut]:
    """Why the refs that changed nothing were refused (one query)."""
    missing = [r.task_id for r in refs if r.task_id not in changed]
    known = {
        row["id"]: row
        for row in _fetch(
            f"SELECT id, status, lease_id FROM {TASKS} WHERE id = ANY(%s)",  # noqa: S608
            [missing],
        )
    }
    outs = []
    for ref in refs:
        if ref.task_id in changed:
            continue
        row = known.get(ref.task_id)
        if row is None:
            err = {"code": "task_not_found", "message": f"no task {ref.task_id}"}
        elif row["lease_id"] != ref.lease_id:
            err = {"code": "stale_lease", "message": "lease_id is not the task's current lease"}
        else:
            err = {"code": "task_not_leased", "message": f"the task is {row['status']}"}
        outs.append(LeaseOut(ref.task_id, False, error={**err, "details": {}}))
    return outs


def tasks_extend(*, leases: Sequence[LeaseRef], now: datetime) -> list[LeaseOut]:
    """Heartbeat for slow work: push each lease's end to now + seconds, never past
    MAX_LEASE_SECONDS after the hand-out began; the tasks' locks follow, in the same
    transaction (a Redis error leaves the leases as they were)."""
    _check_batch(leases)
    if not leases:
        return []
    rows = json.dumps([{"id": r.task_id, "lease": r.lease_id, "s": r.seconds} for r in leases])
    with transaction.atomic():
        candidates = _fetch(
            f"""
            SELECT t.id, t.telegram_account_id, t.action, t.link_hash, t.payload,
                   LEAST(%(now)s + make_interval(secs => r.s),
                         t.leased_at + make_interval(secs => %(cap)s)) AS new_until
            FROM {TASKS} AS t
            JOIN jsonb_to_recordset(%(rows)s::jsonb) AS r(id varchar, lease varchar, s integer)
              ON t.id = r.id
            WHERE t.status = 'leased' AND t.lease_id = r.lease AND t.leased_until > %(now)s
            ORDER BY t.id
            FOR UPDATE OF t
            """,  # noqa: S608
            {"rows": rows, "now": now, "cap": app_settings.MAX_LEASE_SECONDS},
        )
        kept = _rearm(candidates, until=[r["new_until"] + _grace() for r in candidates], now=now)
        if kept:
            _fetch(
                f"""
                UPDATE {TASKS} AS t SET leased_until = v.until, updated_at = %(now)s
                FROM jsonb_to_recordset(%(rows)s::jsonb) AS v(id varchar, until timestamptz)
                WHERE t.id = v.id
                """,  # noqa: S608
                {
                    "now": now,
                    "rows": json.dumps(
                        [{"id": r["id"], "until": r["new_until"].isoformat()} for r in kept]
                    ),
                },
            )
    return _in_order(leases, {r["id"]: LeaseOut(r["id"], True, r["new_until"]) for r in kept})


def tasks_release(*, leases: Sequence[LeaseRef], now: datetime) -> list[LeaseOut]:
    """Hand tasks back unfinished: queued again at once, keeping their account, and the
    hand-out not counted as an attempt. A task whose COMMIT already happened is settled as
    done instead (and reported as not released)."""
    _check_batch(leases)
    if not leases:
        return []
    until = now + timedelta(seconds=app_settings.RESERVE_LOCK_SECONDS)
    wanted = {r.task_id: r.lease_id for r in leases}
    with transaction.atomic():
        rows = [
            r
            for r in _fetch(
                "SELECT id, order_id, telegram_account_id, action, link_hash, payload, "  # noqa: S608
                f"lease_id FROM {TASKS} WHERE id = ANY(%s) AND status = 'leased' "
                "ORDER BY id FOR UPDATE",
                [list(wanted)],
            )
            if r["lease_id"] == wanted[r["id"]]
        ]
        flags = claims.committed_many([_claim(r) for r in rows])
        tasks_settle_committed(rows=[r for r, f in zip(rows, flags, strict=True) if f], now=now)
        release = [r["id"] for r, f in zip(rows, flags, strict=True) if not f]
        released = _fetch(
            f"""
            UPDATE {TASKS} AS t
            SET status = 'queued', available_at = %(now)s, reserved_until = %(until)s,
                leased_until = NULL,
                attempt = GREATEST(t.attempt - 1, 0),
                lease_id = CASE WHEN t.attempt = 0 THEN NULL ELSE t.lease_id END,
                updated_at = %(now)s
            WHERE t.id = ANY(%(ids)s)
            RETURNING t.id, t.telegram_account_id, t.action, t.link_hash, t.payload
            """,  # noqa: S608
            {"ids": release, "now": now, "until": until},
        )
        released = _rearm(released, until=until, now=now)
    return _in_order(leases, {r["id"]: LeaseOut(r["id"], True) for r in released})


def _check_batch(leases: Sequence[LeaseRef]) -> None:
    if len(leases) > app_settings.REPORT_MAX_BATCH:
        raise BatchTooLarge(
            f"at most {app_settings.REPORT_MAX_BATCH} leases per request",
            {"max": app_settings.REPORT_MAX_BATCH, "got": len(leases)},
        )


def _in_order(refs: Sequence[LeaseRef], done: dict[str, LeaseOut]) -> list[LeaseOut]:
    refused = (
        {o.task_id: o for o in _lease_errors(refs, set(done))} if len(done) < len(refs) else {}
    )
    return [done.get(r.task_id) or refused[r.task_id] for r in refs]
