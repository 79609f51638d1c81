"""Long-poll: pulls that wait for tasks, woken when tasks become available.

Whatever makes pull tasks available (generation, a retry or a release putting a task back, an
operator's requeue) says so with ``services.available.announce`` in its transaction: a
PostgreSQL NOTIFY, which every listening process receives when (and only if) that transaction
commits. The services lease; the waiting is the HTTP layer's (``lease_waiting``, handed to
``services.tasks_pull`` by the pull view). Each web process
has one listener thread holding one connection that LISTENs; a waiting pull holds no database
connection (it gave its own back before waiting) and sleeps on an event, costing no CPU. The
listener wakes as many waiting pulls as the announced tasks need, of the tasks' provider only
(each for up to its ``limit``; a pull for some accounts only if the tasks are of its accounts,
or their accounts were too many to name). Tasks announced for later (a drip-feed slot, a
retry_after) wake them at that time: each announcement lists how many tasks become available at
each second.

What no transaction announces — a lease running out, a hold ending, an order resumed — is found
by the next pull: a waiting pull always answers by its ``wait_seconds``, and the provider pulls
again. If the listener cannot reach PostgreSQL, waiting pulls look again every few seconds.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connection
from django.utils import timezone

from telegram_tasks.conf import app_settings
from telegram_tasks.exceptions import TooManyWaiting
from telegram_tasks.services.available import CHANNEL
from telegram_tasks.services.pull import Leased

logger = logging.getLogger(__name__)

# How often waiting pulls look by themselves while the listener cannot listen.
FALLBACK_SECONDS = 2.0
# The listener's longest sleep between checks of its connection.
IDLE_SECONDS = 30.0


@dataclass(eq=False)
class Waiter:
    limit: int
    accounts: frozenset[str] | None
    provider: int | None = None  # whose tasks wake it (None: anyone's)
    event: threading.Event = field(default_factory=threading.Event)

    def wait(self, seconds: float) -> bool:
        """Sleep until woken (True) or ``seconds`` pass (False)."""
        return self.event.wait(max(0.0, seconds))


@dataclass(order=True)
class _Due:
    at: float
    seq: int
    count: int = field(compare=False)
    accounts: frozenset[str] | None = field(compare=False)
    provider: int | None = field(compare=False, default=None)


class Listener:
    """One per process: the LISTEN connection, its thread, and the pulls waiting in it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: list[Waiter] = []
        self._due: list[_Due] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stopping = False
        self.listening = threading.Event()
        self.sleeping = 0  # pulls asleep right now
        self._places: Counter[int | str] = Counter()  # long-polls under way, by provider

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @contextlib.contextmanager
    def place(self, caller: int | str) -> Iterator[None]:
        """A place among the long-polls under way in this process, held for as long as one
        runs: at most MAX_WAITING_PULLS in all and MAX_WAITING_PULLS_PER_PROVIDER of one
        caller, so long-polls never take every connection a worker serves. Beyond either,
        TooManyWaiting, at once."""
        with self._lock:
            total = sum(self._places.values())
            if total >= app_settings.MAX_WAITING_PULLS:
                raise TooManyWaiting(
                    f"{total} pulls are waiting already on this server; pull again later",
                    {"most": app_settings.MAX_WAITING_PULLS},
                )
            if self._places[caller] >= app_settings.MAX_WAITING_PULLS_PER_PROVIDER:
                raise TooManyWaiting(
                    f"{self._places[caller]} of your pulls are waiting already on this server; "
                    "wait with fewer pulls (each may take up to `limit` tasks)",
                    {"most": app_settings.MAX_WAITING_PULLS_PER_PROVIDER},
                )
            self._places[caller] += 1
        try:
            yield
        finally:
            with self._lock:
                self._places[caller] -= 1
                if not self._places[caller]:
                    del self._places[caller]

    @contextlib.contextmanager
    def registered(
        self, *, limit: int, accounts: Iterable[str] | None, provider: int | None = None
    ) -> Iterator[Waiter]:
        """A waiter for ``provider``'s tasks, registered before the caller looks for tasks (so
        tasks announced between the look and the sleep wake it), unregistered on the way out."""
        self._ensure_running()
        waiter = Waiter(limit, None if accounts is None else frozenset(accounts), provider)
        with self._lock:
            self._waiters.append(waiter)
        try:
            yield waiter
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def sleep(self, waiter: Waiter, seconds: float) -> bool:
        """Wait to be woken; while not listening, look again every FALLBACK_SECONDS."""
        if not self.listening.is_set():
            seconds = min(seconds, FALLBACK_SECONDS)
        with self._lock:
            self.sleeping += 1
        try:
            return waiter.wait(seconds)
        finally:
            with self._lock:
                self.sleeping -= 1

    def wake(self, count: int, accounts: frozenset[str] | None, provider: int | None = None) -> int:
        """Wake the pulls these tasks are for, of their provider only (``None``: an announcement
        naming none, from before providers: any): every waiting pull of those accounts, and
        pulls for any account, oldest first, until their limits cover ``count``. Returns how
        many."""
        woken = []
        with self._lock:
            wanted = count
            for waiter in self._waiters:
                if provider is not None and waiter.provider not in (None, provider):
                    continue
                if waiter.accounts is not None:
                    if accounts is None or waiter.accounts & accounts:
                        woken.append(waiter)
                elif wanted > 0:
                    woken.append(waiter)
                    wanted -= waiter.limit
            for waiter in woken:
                self._waiters.remove(waiter)
        for waiter in woken:
            waiter.event.set()
        return len(woken)

    def wake_all(self) -> None:
        with self._lock:
            woken, self._waiters = self._waiters, []
        for waiter in woken:
            waiter.event.set()

    def handle(self, payload: str, now: float) -> None:
        """One announcement: wake now for what is available now, and at its time for each group
        of tasks available later."""
        try:
            data = json.loads(payload)
            if "g" in data:
                # (A group of an earlier version names no provider: it wakes anyone's pulls.)
                groups = [
                    (float(g[0]), int(g[1]), g[2], int(g[3]) if len(g) > 3 else None)
                    for g in data["g"]
                ]
            else:  # (the one-group form of an earlier version, during a rolling upgrade)
                groups = [(float(data["at"]), int(data["n"]), data.get("accounts"), None)]
        except (ValueError, KeyError, TypeError, IndexError):
            logger.warning("long-poll: unreadable announcement %r", payload[:200])
            return
        for at, count, named, provider in groups:
            accounts = None if named is None else frozenset(named)
            if at <= now:
                self.wake(count, accounts, provider)
            else:
                with self._lock:
                    heapq.heappush(self._due, _Due(at, next(self._seq), count, accounts, provider))

    def run_due(self, now: float) -> float | None:
        """Wake for the announcements whose time has come; the next one's time, if any."""
        while True:
            with self._lock:
                if not self._due or self._due[0].at > now:
                    return self._due[0].at if self._due else None
                due = heapq.heappop(self._due)
            self.wake(due.count, due.accounts, due.provider)

    # --- the thread ----------------------------------------------------------------------------

    def _ensure_running(self) -> None:
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
                return
            self._pid = os.getpid()  # (a forked child starts its own)
            self._thread = threading.Thread(target=self._run, name="long-poll", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening (its connection closed) and wake every waiting pull; for a process
        that goes on without long-polls (the test suite before dropping its database)."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return
        self._stopping = True
        try:
            with connection.cursor() as cursor:  # the listener's own channel wakes it
                cursor.execute("SELECT pg_notify(%s, %s)", [CHANNEL, "stop"])
            thread.join(timeout)
        finally:
            self._stopping = False
            self._thread = None
            self.wake_all()

    def _run(self) -> None:
        backoff = 1.0
        while not self._stopping:
            try:
                with _connect() as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.listening.set()
                    backoff = 1.0
                    # Announcements may have been missed while not listening: everyone looks.
                    self.wake_all()
                    self._listen(conn)
                    return
            except Exception as exc:  # whatever it was: listen again later
                if self.listening.is_set():
                    logger.warning("long-poll listener lost PostgreSQL: %s", exc)
                self.listening.clear()
                time.sleep(backoff)
                backoff = min(backoff * 2, IDLE_SECONDS)

    def _listen(self, conn: Any) -> None:
        while True:
            next_due = self.run_due(time.time())
            timeout = IDLE_SECONDS if next_due is None else next_due - time.time()
            heard = False
            # One at a time: an announcement for later may move the next wake-up earlier.
            for notify in conn.notifies(timeout=min(max(timeout, 0.0), IDLE_SECONDS), stop_after=1):
                if self._stopping:
                    self.listening.clear()
                    return
                heard = True
                self.handle(notify.payload, time.time())
            if not heard and next_due is None:
                conn.execute("SELECT 1")  # idle: a dead connection shows here, not in silence


def _connect() -> Any:
    """A connection of its own (not Django's, not the pool's), in autocommit for LISTEN."""
    import psycopg

    params = connection.get_connection_params()
    for key in ("cursor_factory", "context", "pool", "prepare_threshold"):
        params.pop(key, None)
    return psycopg.connect(**params, autocommit=True)


LISTENER = Listener()


def release_database_connection() -> None:
    """Give this thread's database connection back (to the pool, or closed) before sleeping:
    a waiting pull holds none. (Not inside a transaction: there is none in a request; a
    test's own transaction keeps its connection.)"""
    if not connection.in_atomic_block:
        connection.close()


def lease_waiting(
    lease: Callable[[datetime], list[Leased]],
    now: datetime,
    *,
    limit: int,
    accounts: Sequence[str] | None,
    seconds: float,
    provider_id: int,
) -> list[Leased]:
    """A long-poll (``services.pull.Wait``): in one of the provider's places for waiting pulls
    (none left: TooManyWaiting at once), lease; with nothing, sleep until woken (or the time is
    up) and lease again. Registered as waiting before each look, so tasks announced between the
    look and the sleep wake it."""
    deadline = time.monotonic() + seconds
    at = now
    with LISTENER.place(provider_id):
        while True:
            with LISTENER.registered(
                limit=limit, accounts=accounts, provider=provider_id
            ) as waiter:
                tasks = lease(at)
                remaining = deadline - time.monotonic()
                if tasks or remaining <= 0:
                    return tasks
                release_database_connection()
                LISTENER.sleep(waiter, remaining)
            at = timezone.now()
