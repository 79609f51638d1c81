"""Pull: lease a batch of tasks in one statement, re-arm their locks, shape them for the
provider; and replay a pull repeated with the same request_id."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.db import transaction
from redis.exceptions import RedisError

from telegram_tasks import claims
from telegram_tasks.conf import app_settings
from telegram_tasks.exceptions import TaskConflict
from telegram_tasks.models import ExecutionMode, new_ulid
from telegram_tasks.services import settle, sql


@dataclass
class PullResult:
    tasks: list[dict[str, Any]]
    replayed: bool = False


def task_out(row: dict[str, Any]) -> dict[str, Any]:
    """A leased task as the provider receives it."""
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
RETURNING = (
    "t.id, t.order_id, t.action, t.link_hash, t.telegram_account_id, t.attempt, "
    # As the API renders it (UTC, ISO 8601): parsed into a datetime only to be printed again.
    """to_char(t.leased_until AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') """
    "AS leased_until, "
    "t.lease_id, t.per_call, t.payload->>'link' AS link, "
    "(t.payload->>'post_id')::bigint AS post_id, "
    "t.payload->'account'->>'provider_account_id' AS provider_account_id, "
    "t.payload->'account'->>'phone' AS phone, "
    "t.payload->'account'->>'tier' AS tier"
)


@cache
def lease_sql(*, by_accounts: bool = False, mode: str = ExecutionMode.PULL) -> str:
    """One statement leases a batch: pick with SKIP LOCKED (concurrent pulls skip each other's
    rows), lease, return everything the response needs (the payload snapshot: no per-task
    query). Leases that ran out (with hand-outs left, not abandoned) first, then queued tasks
    due and still reserved, oldest first — two index range scans (the partial indexes of
    ``leased`` and ``queued`` tasks; with ``by_accounts``, the one by account), never a sort of
    the backlog. Only tasks that may run now: order active and not paused, account active and
    not held; only tasks of ``mode`` (a pull never hands out a push task, nor the dispatcher
    a pull task). A push task whose last dispatch never reached the provider is the same
    hand-out again: its lease_id is kept and no attempt is counted."""
    accounts = "AND t.provider_account_id = ANY(%(accounts)s)" if by_accounts else ""
    accounts += f" AND t.execution_mode = {sql.literal(mode)}"
    runnable = settle.runnable_sql("t")
    return f"""
    WITH expired AS (
        SELECT t.id FROM {sql.TASKS} AS t
        WHERE t.status = {sql.LEASED} AND t.leased_until <= %(now)s
          AND t.leased_until > %(abandoned)s AND t.attempt + 1 < %(max_attempts)s
          {accounts} AND {runnable}
        ORDER BY t.leased_until, t.id
        LIMIT %(limit)s
        FOR UPDATE OF t SKIP LOCKED
    ), queued AS (
        SELECT t.id FROM {sql.TASKS} AS t
        WHERE t.status = {sql.QUEUED} AND t.available_at <= %(now)s
          AND t.reserved_until > %(now)s {accounts} AND {runnable}
        ORDER BY t.available_at, t.id
        LIMIT %(limit)s - (SELECT count(*) FROM expired)
        FOR UPDATE OF t SKIP LOCKED
    ), picked AS (
        SELECT id FROM expired UNION ALL SELECT id FROM queued
    )
    UPDATE {sql.TASKS} AS t
    SET status = {sql.LEASED},
        attempt = CASE WHEN t.redeliver THEN t.attempt
                       WHEN t.lease_id IS NULL THEN 0 ELSE t.attempt + 1 END,
        lease_id = CASE WHEN t.redeliver THEN t.lease_id ELSE %(lease_id)s END,
        redeliver = FALSE, leased_at = %(now)s, leased_until = %(until)s,
        updated_at = %(now)s
    FROM picked WHERE t.id = picked.id
    RETURNING {RETURNING}
    """  # noqa: S608


def lease_params(
    *, limit: int, now: datetime, accounts: Sequence[str] | None, lease_id: str
) -> dict[str, Any]:
    """The parameters of ``lease_sql`` (shared with the pull benchmark's baseline)."""
    return {
        "now": now,
        "until": now + timedelta(seconds=app_settings.LEASE_SECONDS),
        "limit": limit,
        "lease_id": lease_id,
        "max_attempts": app_settings.MAX_ATTEMPTS,
        # A lease over for longer than the grace is abandoned: housekeeping ends it.
        "abandoned": now - settle.grace(),
        "accounts": None if accounts is None else list(accounts),
    }


def replay_fingerprint(limit: int, accounts: Sequence[str] | None) -> str:
    """What a request_id is bound to: the same id with other parameters is another request."""
    body = json.dumps([limit, None if accounts is None else sorted(accounts)])
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def tasks_pull(
    *,
    limit: int,
    now: datetime,
    accounts: Sequence[str] | None = None,
    request_id: str | None = None,
) -> PullResult:
    """Lease up to ``limit`` tasks: queued ones that are due and still reserved, and leases
    that ran out (with hand-outs left), oldest first. Two pulls never get the same task."""
    claims.ping()
    if request_id:
        fingerprint = replay_fingerprint(limit, accounts)
        replay = claims.pull_replay_begin(
            request_id, fingerprint, ttl=app_settings.PULL_REPLAY_SECONDS
        )
        if replay is claims.REPLAY_IN_PROGRESS:
            raise TaskConflict(
                "a pull with this request_id is still in progress", {"request_id": request_id}
            )
        if replay is not None:
            if replay.get("fp") != fingerprint:
                raise TaskConflict(
                    "this request_id was used for a pull with other parameters (limit, "
                    "accounts); use a new request_id for a new pull",
                    {"request_id": request_id},
                    code="request_id_reused",
                )
            return PullResult(tasks=_replayed(replay, now=now), replayed=True)
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
                {"fp": fingerprint, "lease_id": lease_id, "ids": [t["task_id"] for t in tasks]},
                ttl=app_settings.PULL_REPLAY_SECONDS,
            )
        except RedisError:
            # The tasks are leased: hand them out; only a replay of this pull is lost.
            with contextlib.suppress(RedisError):
                claims.pull_replay_forget(request_id)
    return PullResult(tasks=tasks)


def _lease(*, limit: int, now: datetime, accounts: Sequence[str] | None) -> list[dict[str, Any]]:
    return lease_tasks(limit=limit, now=now, accounts=accounts, mode=ExecutionMode.PULL)


def lease_tasks(
    *, limit: int, now: datetime, accounts: Sequence[str] | None = None, mode: str
) -> list[dict[str, Any]]:
    """Lease up to ``limit`` tasks of ``mode`` in one statement and re-arm their locks in the
    same transaction; the tasks as the provider receives them (pull's answer, push's body)."""
    params = lease_params(limit=limit, now=now, accounts=accounts, lease_id=new_ulid())
    with transaction.atomic():
        rows = sql.fetch(lease_sql(by_accounts=accounts is not None, mode=mode), params)
        if not rows:
            return []
        # Re-arming checks eligibility against Redis: a Redis that lost its state (flushed,
        # restarted empty) would say yes to anything. Refuse (503, the lease rolls back) until
        # rebuild_claims has run.
        claims.ensure_state()
        rows.sort(key=lambda r: r["id"])
        rows = settle.rearm(rows, until=params["until"] + settle.grace(), now=now)
    return [task_out(r) for r in rows]


def _replayed(replay: dict[str, Any], *, now: datetime) -> list[dict[str, Any]]:
    """What the first pull with this request_id leased, as far as it is still that pull's: the
    same hand-out (lease_id), still leased, its lease not run out. A lease that ran out may be
    another puller's by now; it is never returned."""
    if not replay.get("ids"):
        return []
    rows = sql.fetch(
        f"SELECT {RETURNING} FROM {sql.TASKS} AS t "  # noqa: S608
        f"WHERE t.id = ANY(%s) AND t.lease_id = %s AND t.status = {sql.LEASED} "
        "AND t.leased_until > %s ORDER BY t.id",
        [replay["ids"], replay["lease_id"], now],
    )
    return [task_out(r) for r in rows]
