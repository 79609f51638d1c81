"""Leases of handed-out tasks: extend (a heartbeat for slow work) and release (hand a task back
unfinished). A provider reaches only its own tasks: another provider's answers as an unknown
one does."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction

from telegram_tasks.conf import app_settings
from telegram_tasks.exceptions import DomainError, TaskConflict, TaskNotFound
from telegram_tasks.services import available, handouts, settle, sql


@dataclass(frozen=True)
class LeaseRef:
    task_id: str
    lease_id: str
    seconds: int | None = None  # extend: the lease ends this far from now (LEASE_SECONDS)


@dataclass
class LeaseOut:
    task_id: str
    leased_until: datetime | None = None
    error: DomainError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def tasks_extend(
    *, leases: Sequence[LeaseRef], now: datetime, provider_id: int | None = None
) -> list[LeaseOut]:
    """Heartbeat for slow work: push each lease's end to now + seconds, never past
    MAX_LEASE_SECONDS after the hand-out began; the tasks' locks follow, in the same
    transaction (a Redis error leaves the leases as they were). ``provider_id``: the caller's
    tasks only."""
    sql.check_batch(leases, most=app_settings.REPORT_MAX_BATCH, what="leases")
    if not leases:
        return []
    rows = json.dumps(
        [
            {"id": r.task_id, "lease": r.lease_id, "s": r.seconds or app_settings.LEASE_SECONDS}
            for r in leases
        ]
    )
    with transaction.atomic():
        candidates = sql.fetch(
            f"""
            SELECT t.id, t.telegram_account_id, t.action, t.link_hash, t.payload,
                   LEAST(%(now)s + make_interval(secs => r.s),
                         t.leased_at + make_interval(secs => %(cap)s)) AS new_until
            FROM {sql.TASKS} AS t
            JOIN jsonb_to_recordset(%(rows)s::jsonb) AS r(id varchar, lease varchar, s integer)
              ON t.id = r.id
            WHERE t.status = {sql.LEASED} AND t.lease_id = r.lease AND t.leased_until > %(now)s
              {_mine(provider_id, "t")}
            ORDER BY t.id
            FOR UPDATE OF t
            """,  # noqa: S608
            {
                "rows": rows,
                "now": now,
                "cap": app_settings.MAX_LEASE_SECONDS,
                "provider": provider_id,
            },
        )
        kept = settle.rearm(
            candidates, until=[r["new_until"] + settle.grace() for r in candidates], now=now
        )
        if kept:
            sql.fetch(
                f"""
                UPDATE {sql.TASKS} AS t SET leased_until = v.until, updated_at = %(now)s
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
    return _in_order(
        leases, {r["id"]: LeaseOut(r["id"], r["new_until"]) for r in kept}, provider_id
    )


def tasks_release(
    *, leases: Sequence[LeaseRef], now: datetime, provider_id: int | None = None
) -> list[LeaseOut]:
    """Hand tasks back unfinished: queued again at once, keeping their account, and the
    hand-out not counted as an attempt. A task whose COMMIT already happened is settled as
    done instead (and reported as not released); one whose order is no longer active or is
    paused, or whose account or provider can no longer run it, ends instead of going back to
    the queue. ``provider_id``: the caller's tasks only."""
    sql.check_batch(leases, most=app_settings.REPORT_MAX_BATCH, what="leases")
    if not leases:
        return []
    until = now + timedelta(seconds=app_settings.RESERVE_LOCK_SECONDS)
    wanted = {r.task_id: r.lease_id for r in leases}
    with transaction.atomic():
        rows = [
            r
            for r in sql.fetch(
                f"SELECT {settle.CLAIM_COLUMNS}, lease_id FROM {sql.TASKS} "  # noqa: S608
                f"WHERE id = ANY(%(ids)s) AND status = {sql.LEASED} {_mine(provider_id)} "
                "ORDER BY id FOR UPDATE",
                {"ids": list(wanted), "provider": provider_id},
            )
            if r["lease_id"] == wanted[r["id"]]
        ]
        committed, others = settle.split_committed(rows)
        settle.settle_committed(rows=committed, now=now)
        others, ended = settle.fail_blocked(others, now=now)
        released = sql.fetch(
            f"""
            UPDATE {sql.TASKS} AS t
            SET status = {sql.QUEUED}, available_at = %(now)s, reserved_until = %(until)s,
                leased_until = NULL,
                attempt = GREATEST(t.attempt - 1, 0),
                lease_id = CASE WHEN t.attempt = 0 THEN NULL ELSE t.lease_id END,
                updated_at = %(now)s, {handouts.ended(handouts.RELEASED, col="t.handouts")}
            WHERE t.id = ANY(%(ids)s)
            RETURNING t.id, t.telegram_account_id, t.action, t.link_hash, t.payload,
                      t.provider_id, t.provider_account_id, t.execution_mode
            """,  # noqa: S608
            {"ids": [r["id"] for r in others], "now": now, "until": until},
        )
        released = settle.rearm(released, until=settle.queued_lock_until(until), now=now)
        available.announce(
            (now, r["provider_id"], r["provider_account_id"], r["execution_mode"]) for r in released
        )
    return _in_order(leases, {r["id"]: LeaseOut(r["id"]) for r in [*released, *ended]}, provider_id)


def _mine(provider_id: int | None, alias: str = "") -> str:
    """The condition that keeps a caller to its own tasks (nothing for the broker's own)."""
    column = f"{alias}.provider_id" if alias else "provider_id"
    return "" if provider_id is None else f"AND {column} = %(provider)s"


def _in_order(
    refs: Sequence[LeaseRef], done: dict[str, LeaseOut], provider_id: int | None
) -> list[LeaseOut]:
    """One result per ref, in order; the refused ones say why (one query for all of them).
    Another provider's task is not found, as an unknown one."""
    missing = [r.task_id for r in refs if r.task_id not in done]
    known = (
        {
            row["id"]: row
            for row in sql.fetch(
                f"SELECT id, status, lease_id FROM {sql.TASKS} "  # noqa: S608
                f"WHERE id = ANY(%(ids)s) {_mine(provider_id)}",
                {"ids": missing, "provider": provider_id},
            )
        }
        if missing
        else {}
    )
    outs = []
    for ref in refs:
        if ref.task_id in done:
            outs.append(done[ref.task_id])
            continue
        row = known.get(ref.task_id)
        if row is None:
            error: DomainError = TaskNotFound(f"no task {ref.task_id}")
        elif row["lease_id"] != ref.lease_id:
            error = TaskConflict("lease_id is not the task's current lease", code="stale_lease")
        else:
            error = TaskConflict(f"the task is {row['status']}", code="task_not_leased")
        outs.append(LeaseOut(ref.task_id, error=error))
    return outs
