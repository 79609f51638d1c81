"""Pull: lease a batch of the caller's tasks in one statement, re-arm their locks, shape them for
the provider; and replay a pull repeated with the same request_id (the provider's own)."""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any, NamedTuple, Protocol

from django.db import transaction
from redis.exceptions import RedisError

from telegram_tasks import claims
from telegram_tasks.conf import app_settings
from telegram_tasks.exceptions import TaskConflict
from telegram_tasks.failures import Reason
from telegram_tasks.models import ExecutionMode, Provider, default_provider_id, new_ulid
from telegram_tasks.providers import ProviderRef
from telegram_tasks.services import handouts, settle, sql

PROVIDERS = Provider._meta.db_table


@dataclass
class PullResult:
    """The leased tasks as the provider receives them: one JSON object each, built by
    PostgreSQL in the leasing statement (``tasks_json``), never decoded on the way out."""

    tasks_json: list[str]
    replayed: bool = False

    @property
    def tasks(self) -> list[dict[str, Any]]:
        """The same tasks decoded (for callers in Python: push, tests, tools)."""
        return [json.loads(t) for t in self.tasks_json]


def task_json_sql(leased_until: str) -> str:
    """A leased task as the provider receives it, as JSON text built in SQL (``t``: the task;
    ``leased_until``: an SQL expression of the lease's end as the API prints it). ``params``:
    the task's own (``{}`` for an action that takes none, and for a task made before them)."""
    return f"""json_build_object(
        'task_id', t.id, 'order_id', t.order_id, 'action', t.action,
        'link', t.payload->'link',
        'account', json_build_object(
            'provider_account_id', t.payload->'account'->'provider_account_id',
            'phone', t.payload->'account'->'phone'),
        'per_call', t.per_call, 'post_id', t.payload->'post_id', 'link_hash', t.link_hash,
        'params', COALESCE(t.payload->'params', '{{}}'::jsonb),
        'attempt', t.attempt, 'leased_until', {leased_until}, 'lease_id', t.lease_id
    )::text"""


# The API's form of a moment (UTC, ISO 8601, microseconds).
API_TIME = """to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""

# What a pull returns per task: its id, whether it is a lapsed lease handed out again (its
# lock needs re-arming: a queued task's lock already covers the lease, see
# ``settle.queued_lock_until``), whether it was not handed out because its reservation lapsed,
# its JSON, and its claim (for re-arming).
RETURNING = (
    "t.id, picked.relet, FALSE AS lapsed, "
    + task_json_sql("%(until_text)s")
    + ", t.telegram_account_id, t.action, t.link_hash, (t.payload->>'post_id')::bigint, "
    "t.payload->'account'->>'tier'"
)
LAPSED = (
    "SELECT id, FALSE, TRUE, NULL::text, NULL::bigint, NULL::varchar, NULL::varchar, "
    "NULL::bigint, NULL::text FROM picked WHERE lapsed"
)

# The same statement returning the plain columns (the benchmark's baseline: the lease alone).
BARE_RETURNING = (
    "t.id, t.order_id, t.action, t.link_hash, t.telegram_account_id, t.attempt, "
    "t.leased_until, t.lease_id, t.per_call, t.payload->>'link' AS link, "
    "(t.payload->>'post_id')::bigint AS post_id, "
    "t.payload->'account'->>'provider_account_id' AS provider_account_id, "
    "t.payload->'account'->>'phone' AS phone, t.payload->'account'->>'tier' AS tier"
)


@cache
def lease_sql(
    *, by_accounts: bool = False, mode: str = ExecutionMode.PULL, bare: bool = False
) -> str:
    """One statement leases a batch of one provider's tasks (``%(provider)s``): pick with SKIP
    LOCKED (concurrent pulls skip each other's rows), lease, return everything the response
    needs (the payload snapshot: no per-task query). Leases that ran out (with hand-outs left,
    not abandoned) first, then queued tasks due, oldest first — two ordered index range scans
    that stop at the LIMIT (the partial indexes of ``leased`` and of the provider's ``queued``
    tasks; with ``by_accounts``, the one by account), never a sort of the backlog. Nothing
    while the provider is disabled (one look at its row, once per statement). Only tasks that
    may run now: order active and not paused, account active and not held; only tasks of
    ``mode`` (a pull never hands out a push task, nor the dispatcher a pull task). A push task
    whose last dispatch never reached the provider is the same hand-out again: its lease_id is
    kept and no attempt is counted.

    A queued task whose reservation lapsed is never handed out: it is picked (and locked) in
    its place in the queue but left as it is, and returned as ``lapsed`` for the caller to
    expire. (Filtering it out in the queue's WHERE would let the planner, misled by
    statistics of a table that is mostly history, read and sort the whole queue instead.)"""
    accounts = "AND t.provider_account_id = ANY(%(accounts)s)" if by_accounts else ""
    accounts += f" AND t.execution_mode = {sql.literal(mode)} AND t.provider_id = %(provider)s"
    # Uncorrelated: evaluated once for the statement (a one-time filter), not per task.
    enabled = f"(SELECT p.enabled FROM {PROVIDERS} AS p WHERE p.id = %(provider)s)"  # noqa: S608
    accounts += f" AND {enabled}"
    runnable = settle.runnable_sql("t")
    returning = BARE_RETURNING if bare else RETURNING
    lapsed = "" if bare else f"UNION ALL {LAPSED}"
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
        SELECT t.id, t.reserved_until <= %(now)s AS lapsed FROM {sql.TASKS} AS t
        WHERE t.status = {sql.QUEUED} AND t.available_at <= %(now)s {accounts} AND {runnable}
        ORDER BY t.available_at, t.id
        LIMIT %(limit)s
        FOR UPDATE OF t SKIP LOCKED
    ), picked AS (
        -- Read lazily: the queue gives (and locks) only the rows the lapsed leases left room
        -- for. (Its own LIMIT is a constant, so the planner prices the scan that stops early.)
        (SELECT id, TRUE AS relet, FALSE AS lapsed FROM expired
         UNION ALL SELECT id, FALSE, lapsed FROM queued)
        LIMIT %(limit)s
    ), leased AS (
        UPDATE {sql.TASKS} AS t
        SET status = {sql.LEASED},
            attempt = CASE WHEN t.redeliver THEN t.attempt
                           WHEN t.lease_id IS NULL THEN 0 ELSE t.attempt + 1 END,
            lease_id = CASE WHEN t.redeliver THEN t.lease_id ELSE %(lease_id)s END,
            redeliver = FALSE, leased_at = %(now)s, leased_until = %(until)s,
            updated_at = %(now)s, {handouts.leased()}
        FROM picked WHERE t.id = picked.id AND NOT picked.lapsed
        RETURNING {returning}
    )
    SELECT * FROM leased {lapsed}
    """  # noqa: S608


def lease_params(
    *, limit: int, now: datetime, accounts: Sequence[str] | None, lease_id: str, provider_id: int
) -> dict[str, Any]:
    """The parameters of ``lease_sql`` (shared with the pull benchmark's baseline)."""
    until = now + timedelta(seconds=app_settings.LEASE_SECONDS)
    return {
        "provider": provider_id,
        "now": now,
        "until": until,
        "until_text": api_time(until),
        "limit": limit,
        "lease_id": lease_id,
        "handout": handouts.entry_param(lease_id=lease_id, now=now),
        "max_attempts": app_settings.MAX_ATTEMPTS,
        # A lease over for longer than the grace is abandoned: housekeeping ends it.
        "abandoned": now - settle.grace(),
        "accounts": None if accounts is None else list(accounts),
    }


def api_time(moment: datetime) -> str:
    """A moment as the API prints it (what ``API_TIME`` prints in SQL)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def replay_fingerprint(limit: int, accounts: Sequence[str] | None) -> str:
    """What a request_id is bound to: the same id with other parameters is another request."""
    body = json.dumps([limit, None if accounts is None else sorted(accounts)])
    return hashlib.sha256(body.encode()).hexdigest()[:32]


def tasks_pull(
    *,
    limit: int,
    now: datetime,
    provider: ProviderRef | None = None,
    accounts: Sequence[str] | None = None,
    request_id: str | None = None,
    wait_seconds: float = 0,
    wait: Wait | None = None,
) -> PullResult:
    """Lease up to ``limit`` of the provider's tasks (on its own accounts): queued ones that are
    due and still reserved, and leases that ran out (with hand-outs left), oldest first. Two
    pulls never get the same task; a disabled provider gets none.

    ``wait_seconds``: with nothing to hand out, wait up to that long for tasks (long-poll;
    ``wait`` waits: the HTTP layer's ``telegram_tasks.api.waiting.lease_waiting``), holding no
    database connection, and lease them as soon as they come; only the provider's own new tasks
    wake it. Such a pull takes one of the process's places for long-polls, counted per
    provider: with none left it raises TooManyWaiting at once, having leased nothing.
    ``request_id`` replays are the provider's own (another provider's id is another request).
    ``provider`` None: the default provider (tools and tests; the API always names the
    caller)."""
    if provider is None:
        provider = ProviderRef(default_provider_id(), "")
    if request_id:
        fingerprint = replay_fingerprint(limit, accounts)
        replay = claims.pull_replay_begin(
            provider.id, request_id, fingerprint, ttl=app_settings.PULL_REPLAY_SECONDS
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
            return PullResult(_replayed(replay, now=now, provider_id=provider.id), replayed=True)
    lease_id = new_ulid()

    def lease(at: datetime) -> list[Leased]:
        return lease_tasks(
            limit=limit,
            now=at,
            accounts=accounts,
            mode=ExecutionMode.PULL,
            lease_id=lease_id,
            provider_id=provider.id,
        )

    try:
        if wait_seconds > 0:
            if wait is None:
                raise ValueError("wait_seconds needs a wait (the API's long-poll listener)")
            tasks = wait(
                lease,
                now,
                limit=limit,
                accounts=accounts,
                seconds=wait_seconds,
                provider_id=provider.id,
            )
        else:
            tasks = lease(now)
    except BaseException:
        if request_id:
            claims.pull_replay_forget(provider.id, request_id)
        raise
    if request_id:
        try:
            claims.pull_replay_store(
                provider.id,
                request_id,
                {"fp": fingerprint, "lease_id": lease_id, "ids": [t.id for t in tasks]},
                ttl=app_settings.PULL_REPLAY_SECONDS,
            )
        except RedisError:
            # The tasks are leased: hand them out; only a replay of this pull is lost.
            with contextlib.suppress(RedisError):
                claims.pull_replay_forget(provider.id, request_id)
    return PullResult([t.json for t in tasks])


class Leased(NamedTuple):
    id: str
    json: str  # the task as the provider receives it


class Wait(Protocol):
    """How a long-poll waits: lease with ``lease``; with nothing, wait up to ``seconds`` for the
    provider's tasks to be announced and lease again. The HTTP layer's (it owns the listener
    and the places for waiting pulls); the services only lease."""

    def __call__(
        self,
        lease: Callable[[datetime], list[Leased]],
        now: datetime,
        *,
        limit: int,
        accounts: Sequence[str] | None,
        seconds: float,
        provider_id: int,
    ) -> list[Leased]: ...


def lease_tasks(
    *,
    limit: int,
    now: datetime,
    accounts: Sequence[str] | None = None,
    mode: str,
    lease_id: str | None = None,
    provider_id: int | None = None,
) -> list[Leased]:
    """Lease up to ``limit`` of one provider's tasks of ``mode`` in one statement, in id order;
    pull's answer and push's bodies. One round trip to Redis in the same transaction: the claim
    state must be present (a Redis that lost it answers 503 until rebuilt), and the locks of
    lapsed leases handed out again are re-armed (a queued task's lock already covers its
    lease). ``provider_id`` None: the default provider's."""
    params = lease_params(
        limit=limit,
        now=now,
        accounts=accounts,
        lease_id=lease_id or new_ulid(),
        provider_id=default_provider_id() if provider_id is None else provider_id,
    )
    with transaction.atomic():
        rows = sql.rows(lease_sql(by_accounts=accounts is not None, mode=mode), params)
        lapsed = [r[0] for r in rows if r[2]]
        if lapsed:
            settle.end_tasks(
                where="id = ANY(%(ids)s)", params={"ids": lapsed}, reason=Reason.EXPIRED, now=now
            )
        rows = [r for r in rows if not r[2]]
        relet = [
            {"id": r[0], "telegram_account_id": r[4], "action": r[5], "link_hash": r[6],
             "post_id": r[7], "tier": r[8]}
            for r in rows if r[1]
        ]  # fmt: skip
        lost: set[str] = set()
        if relet:
            until = params["until"] + settle.grace()
            kept = settle.rearm(relet, until=until, now=now, require_state=True)
            lost = {r["id"] for r in relet} - {r["id"] for r in kept}
        else:
            claims.ensure_state()
    return sorted(Leased(r[0], r[3]) for r in rows if r[0] not in lost)


def _replayed(replay: dict[str, Any], *, now: datetime, provider_id: int) -> list[str]:
    """What the first pull with this request_id leased, as far as it is still that pull's: the
    same hand-out (lease_id), still leased, its lease not run out. A lease that ran out may be
    another puller's by now; it is never returned."""
    if not replay.get("ids"):
        return []
    rows = sql.rows(
        f"SELECT {task_json_sql(API_TIME.format('t.leased_until'))} "  # noqa: S608
        f"FROM {sql.TASKS} AS t "
        f"WHERE t.id = ANY(%s) AND t.lease_id = %s AND t.status = {sql.LEASED} "
        "AND t.leased_until > %s AND t.provider_id = %s ORDER BY t.id",
        [replay["ids"], replay["lease_id"], now, provider_id],
    )
    return [r[0] for r in rows]
