"""Group commit: requests that arrive while a batch of their kind is being applied wait for it to
finish, then go in together as the next batch — one transaction, one Redis round trip and one
PostgreSQL commit for all of them — instead of each paying its own.

Nobody waits for company that is not coming: the first request to find no batch under way
applies itself at once (a lone request costs what it cost before, plus a lock). Batches form
from requests that would otherwise be queuing for the database; under load (the batch before
had company) a new batch's leader also waits up to ``wait`` seconds for as many requests as
that batch had — the requests its answers set free — like PostgreSQL's ``commit_delay`` with
``commit_siblings``. Each waiting request is answered only after the batch that carried it
committed, with its own outcome.

Per process (one web worker), on ``threading`` primitives: under the gevent worker they are
gevent's (patched before the first gatherer is made, which is why none is made at import), so
a waiting request yields to the others; under threads they are threads'.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

I = TypeVar("I")  # noqa: E741 - an item
R = TypeVar("R")  # its result


@dataclass(eq=False)
class _Waiter(Generic[I, R]):
    item: I
    woken: threading.Event
    lead: bool = False
    alone: bool = False
    result: R | None = None
    error: BaseException | None = None


@dataclass
class Stats:
    """What a gatherer did, for tests (operators see the sizes through ``on_batch``)."""

    batches: int = 0
    largest: int = 0
    alone: int = 0  # items of failed batches, applied again one by one


class Gatherer(Generic[I, R]):
    """``submit(item)`` applies the item — alone with ``apply_one`` when nothing is under way,
    else in the next batch with ``apply_many`` (its results in the items' order) — and returns
    its result or raises its error. A batch that raises (or whose leader is killed) has each of
    its items applied on its own, by its own request: one bad item never fails the others."""

    def __init__(
        self,
        apply_one: Callable[[I], R],
        apply_many: Callable[[Sequence[I]], Sequence[R]],
        *,
        most: int,
        wait: float = 0.0,
        on_batch: Callable[[int], None] | None = None,
        before_wait: Callable[[], None] | None = None,
    ) -> None:
        self._apply_one = apply_one
        self._on_batch = on_batch
        self._before_wait = before_wait
        self._apply_many = apply_many
        self._most = max(1, most)
        self._wait = wait
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._queue: list[_Waiter[I, R]] = []
        self._busy = False
        self._last = 1  # the size of the batch before
        self.stats = Stats()

    def queued(self) -> int:
        """Requests waiting for the batch under way to finish (for tests and metrics)."""
        with self._lock:
            return len(self._queue)

    def submit(self, item: I) -> R:
        me: _Waiter[I, R] = _Waiter(item, threading.Event())
        with self._lock:
            self._queue.append(me)
            lead, self._busy = not self._busy, True
            self._arrived.notify()
        if not lead:
            if self._before_wait is not None:
                self._before_wait()
            me.woken.wait()
        if lead or me.lead:
            self._lead()
        if me.alone:  # (only after a failed batch)
            return self._apply_one(me.item)
        if me.error is not None:
            raise me.error
        return me.result  # type: ignore[return-value]

    def _lead(self) -> None:
        """Apply the queue's head (this request first) as one batch, then hand the lead to the
        first request that arrived meanwhile (or stand down)."""
        with self._lock:
            if self._wait > 0 and self._last > 1:
                # Under load (the batch before had company), the requests its answers set
                # free are on their way: wait a moment for as many, not for nobody.
                want = min(self._last, self._most)
                self._arrived.wait_for(lambda: len(self._queue) >= want, timeout=self._wait)
            batch, self._queue[: self._most] = self._queue[: self._most], []
            self._last = len(batch)
        try:
            self._apply(batch)
        finally:
            with self._lock:
                if self._queue:
                    self._queue[0].lead = True
                    self._queue[0].woken.set()
                else:
                    self._busy = False

    def _apply(self, batch: list[_Waiter[I, R]]) -> None:
        head, rest = batch[0], batch[1:]
        if not rest:
            try:
                head.result = self._apply_one(head.item)
            except Exception as exc:  # raised again by submit
                head.error = exc
            self._count(batch)
            return
        try:
            results = self._apply_many([w.item for w in batch])
            for w, result in zip(batch, results, strict=True):
                w.result = result
            self._count(batch)
        except Exception:
            # One item may be what failed the batch: on its own, each gets the answer it
            # would have had without company (and the same error, if the failure was not its).
            for w in batch:
                w.alone = True
            self._count(batch, alone=True)
        except BaseException:
            # The leader's own request is being killed (a timeout, the worker stopping): the
            # others were not, and apply themselves.
            for w in rest:
                w.alone = True
            raise
        finally:
            for w in rest:
                w.woken.set()

    def _count(self, batch: Sequence[_Waiter[I, R]], *, alone: bool = False) -> None:
        s, n = self.stats, len(batch)
        s.batches += 1
        s.largest = max(s.largest, n)
        if alone:
            s.alone += n
        if self._on_batch is not None:
            self._on_batch(n)


_GATHERERS: dict[Hashable, Gatherer[Any, Any]] = {}


def gatherer(key: Hashable, make: Callable[[], Gatherer[I, R]]) -> Gatherer[I, R]:
    """The process's gatherer for ``key``, made by ``make`` on first use (after any
    monkey-patching: none is made at import)."""
    found = _GATHERERS.get(key)
    if found is None:
        found = _GATHERERS.setdefault(key, make())
    return found


def all_stats() -> dict[Hashable, Stats]:
    return {key: g.stats for key, g in list(_GATHERERS.items())}
