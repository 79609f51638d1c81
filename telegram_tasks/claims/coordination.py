"""Coordination between processes, kept in Redis: pull replays (a pull repeated with the same
request_id), the locks periodic passes hold, the push dispatchers' circuit breaker, and the
snapshots a pass leaves for every process to read."""

from __future__ import annotations

import json
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
