"""Coordination between processes, kept in Redis: pull replays (a pull repeated with the same
request_id), the locks periodic passes hold, the push dispatchers' circuit breaker, the
snapshots a pass leaves for every process to read, and the farm's marks (accounts cooling and
capped)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from telegram_tasks.claims import keys
from telegram_tasks.claims.operations import ms
from telegram_tasks.claims.scripts import connection, run_many
from telegram_tasks.conf import app_settings

# --- pull replay: a pull repeated with the same request_id returns the same tasks -------------

REPLAY_IN_PROGRESS = object()
_IN_PROGRESS = "in-progress"


def pull_replay_begin(
    provider_id: int, request_id: str, fingerprint: str, *, ttl: int
) -> dict | object | None:
    """Claim the provider's ``request_id`` for a new pull (None), or return what an earlier
    pull with it leased ({"fp", "lease_id", "ids"}), or REPLAY_IN_PROGRESS while that pull is
    still running with the same parameters (``fingerprint``). Each provider's ids are its
    own."""
    conn = connection()
    key = keys.pull_replay(provider_id, request_id)
    marker = f"{_IN_PROGRESS}:{fingerprint}"
    if conn.set(key, marker, nx=True, ex=ttl):
        return None
    stored = conn.get(key)
    if stored is None:
        return REPLAY_IN_PROGRESS
    text = stored.decode()
    if text.startswith(f"{_IN_PROGRESS}:"):
        if text == marker:
            return REPLAY_IN_PROGRESS
        return {"fp": text.split(":", 1)[1]}  # in progress, with other parameters
    return json.loads(text)


def pull_replay_store(provider_id: int, request_id: str, leased: dict, *, ttl: int) -> None:
    connection().set(keys.pull_replay(provider_id, request_id), json.dumps(leased), ex=ttl)


def pull_replay_forget(provider_id: int, request_id: str) -> None:
    connection().delete(keys.pull_replay(provider_id, request_id))


def pass_lock(name: str, *, timeout: int, wait: float | None = None) -> Any:
    """A Redis lock with a TTL for a pass: held while it runs, so a run never overlaps the
    previous one (like Laravel's withoutOverlapping); a dead holder's lock lapses. With
    ``wait``, ``acquire()`` waits that many seconds for a holder to finish."""
    return connection().lock(
        keys.pass_lock(name),
        timeout=timeout,
        blocking=wait is not None,
        blocking_timeout=wait,
    )


# --- the push dispatcher's circuit breaker ---------------------------------------------------

MAX_BREAKER_TRIPS = 5  # the open time doubles per trip: at most 16 times the first


@dataclass(frozen=True)
class Breaker:
    state: str  # "closed", "open" or "half" (one probe out)
    until: datetime | None  # open (or probing) until then
    granted: bool  # allow: the caller may send

    @property
    def label(self) -> str:
        return {"closed": "closed", "open": "open", "half": "half-open"}[self.state]


def breaker(name: str, op: str, *, now: datetime) -> Breaker:
    """Ask (``allow``), tell (``success``, ``failure``) or look at (``peek``) a circuit breaker
    that every dispatcher process shares (an atomic script; time is the caller's ``now``)."""
    state, until, granted = run_many(
        [
            (
                "breaker",
                [keys.breaker(name)],
                [
                    op,
                    ms(now),
                    app_settings.PUSH_BREAKER_FAILURES,
                    app_settings.PUSH_BREAKER_SECONDS * 1000,
                    MAX_BREAKER_TRIPS,
                ],
            )
        ]
    )[0]
    until_ms = int(until)
    return Breaker(
        state=state.decode() if isinstance(state, bytes) else str(state),
        until=datetime.fromtimestamp(until_ms / 1000, tz=now.tzinfo) if until_ms else None,
        granted=bool(int(granted)),
    )


# --- snapshots: computed by one pass, read by every process (web workers, the metrics) --------


def snapshot_store(name: str, value: dict[str, Any], *, ttl: int) -> None:
    connection().set(keys.snapshot(name), json.dumps(value), ex=ttl)


def snapshot_load(name: str) -> dict[str, Any] | None:
    stored = connection().get(keys.snapshot(name))
    return json.loads(stored) if stored else None


# --- the farm's marks: accounts cooling down, accounts capped today (services.farm) -----------

FARM_DAYS_SECONDS = 2 * 86400  # a day's capped set and mark outlive it by a day


def farm_marks_since(*, day: datetime) -> datetime | None:
    """Up to when that local day's successes were read into the marks (None: never)."""
    value = connection().get(keys.farm_mark(day))
    return None if value is None else datetime.fromtimestamp(int(value) / 1000, tz=day.tzinfo)


def farm_marks_update(
    *,
    cooling: dict[int, dict[int, datetime]],
    capped: dict[int, set[int]],
    providers: Iterable[int],
    day: datetime,
    now: datetime,
) -> dict[int, tuple[int, int]]:
    """Add each provider's accounts cooling (until when: a later deadline kept) and capped
    today, drop the cooldowns over, and note how far the day was read; returns (cooling,
    capped) counts per provider of ``providers``. One pipeline (the keys may live on several
    nodes of a cluster: each command is atomic, the batch need not be)."""
    providers = list(providers)
    pipe = connection().pipeline(transaction=False)
    for provider, accounts in cooling.items():
        if accounts:
            pipe.zadd(
                keys.farm_cooling(provider),
                {str(a): ms(until) for a, until in accounts.items()},
                gt=True,
            )
    for provider, accounts in capped.items():
        if accounts:
            pipe.sadd(keys.farm_capped(provider, day), *sorted(accounts))
            pipe.expire(keys.farm_capped(provider, day), FARM_DAYS_SECONDS)
    pipe.set(keys.farm_mark(day), ms(now), ex=FARM_DAYS_SECONDS)
    for provider in providers:
        pipe.zremrangebyscore(keys.farm_cooling(provider), "-inf", ms(now))
        pipe.zcard(keys.farm_cooling(provider))
        pipe.scard(keys.farm_capped(provider, day))
    answers = pipe.execute()[-3 * len(providers) :] if providers else []
    return {
        provider: (int(answers[3 * i + 1]), int(answers[3 * i + 2]))
        for i, provider in enumerate(providers)
    }


def farm_marks_read(
    *, providers: Iterable[int], day: datetime, now: datetime
) -> tuple[set[int], set[int]]:
    """(the accounts cooling now, those capped that day), every provider's."""
    providers = list(providers)
    pipe = connection().pipeline(transaction=False)
    for provider in providers:
        pipe.zrangebyscore(keys.farm_cooling(provider), f"({ms(now)}", "+inf")
        pipe.smembers(keys.farm_capped(provider, day))
    answers = pipe.execute()
    cooling = {int(a) for members in answers[0::2] for a in members}
    capped = {int(a) for members in answers[1::2] for a in members}
    return cooling, capped


def farm_marks_forget(
    account_ids: Iterable[int], *, providers: Iterable[int], day: datetime
) -> None:
    """These accounts are neither cooling nor capped any more (switched off)."""
    ids = [str(a) for a in account_ids]
    if not ids:
        return
    pipe = connection().pipeline(transaction=False)
    for provider in providers:
        pipe.zrem(keys.farm_cooling(provider), *ids)
        pipe.srem(keys.farm_capped(provider, day), *ids)
    pipe.execute()
