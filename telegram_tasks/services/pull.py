"""Pull: lease a batch of tasks in one statement, re-arm their locks, shape them for the
provider; and replay a pull repeated with the same request_id."""

from __future__ import annotations

import contextlib
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
from telegram_tasks.models import new_ulid
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
    "t.payload->'account'->>'phone' AS phone"
)


@cache
def lease_sql() -> str:
    """One statement leases a batch: pick with SKIP LOCKED (concurrent pulls skip each other's
    rows), lease, return everything the response needs (the payload snapshot: no join, no
    per-task query). Queued tasks due and still reserved, and leases over but not abandoned,
    oldest first."""
    return f"""
    WITH picked AS (
        SELECT id FROM {sql.TASKS}
        WHERE ((status = {sql.QUEUED} AND available_at <= %(now)s AND reserved_until > %(now)s)
            OR (status = {sql.LEASED} AND leased_until <= %(now)s
                AND leased_until > %(abandoned)s AND attempt + 1 < %(max_attempts)s))
          AND (%(accounts)s::varchar[] IS NULL OR provider_account_id = ANY(%(accounts)s))
        ORDER BY available_at, id
        LIMIT %(limit)s
        FOR UPDATE SKIP LOCKED
    )
    UPDATE {sql.TASKS} AS t
    SET status = {sql.LEASED},
        attempt = CASE WHEN t.lease_id IS NULL THEN 0 ELSE t.attempt + 1 END,
        lease_id = %(lease_id)s, leased_at = %(now)s, leased_until = %(until)s,
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


def _lease(*, limit: int, now: datetime, accounts: Sequence[str] | None) -> list[dict[str, Any]]:
    params = lease_params(limit=limit, now=now, accounts=accounts, lease_id=new_ulid())
    with transaction.atomic():
        rows = sql.fetch(lease_sql(), params)
        if not rows:
            return []
        # Re-arming checks eligibility against Redis: a Redis that lost its state (flushed,
        # restarted empty) would say yes to anything. Refuse (503, the lease rolls back) until
        # rebuild_claims has run.
        claims.ensure_state()
        rows.sort(key=lambda r: r["id"])
        rows = settle.rearm(rows, until=params["until"] + settle.grace(), now=now)
    return [task_out(r) for r in rows]


def _replayed(replay: dict[str, Any]) -> list[dict[str, Any]]:
    if not replay.get("ids"):
        return []
    rows = sql.fetch(
        f"SELECT {RETURNING} FROM {sql.TASKS} AS t "  # noqa: S608
        f"WHERE t.id = ANY(%s) AND t.lease_id = %s AND t.status = {sql.LEASED} ORDER BY t.id",
        [replay["ids"], replay["lease_id"]],
    )
    return [task_out(r) for r in rows]
