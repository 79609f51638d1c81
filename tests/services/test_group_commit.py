"""Group commit: single reports that arrive while a batch is applied go in together as the next
batch, from real threads on their own database connections. Each keeps every guarantee of a
report applied alone: counted once, stale leases refused, one bad item failing only itself,
nothing applied with Redis down, and a process killed mid-batch settled from the COMMIT
markers."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection, connections
from django.test import TestCase
from redis.exceptions import RedisError

from telegram_tasks import claims
from telegram_tasks.claims import keys
from telegram_tasks.exceptions import TaskConflict
from telegram_tasks.models import TelegramTask
from telegram_tasks.services import (
    ReportIn,
    gathering,
    report,
    tasks_generate,
    tasks_housekeep,
    tasks_pull,
    tasks_report,
)
from tests.factories import make_accounts, make_order

pytestmark = pytest.mark.django_db(transaction=True)
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
KEY = ("report", None)


@pytest.fixture(autouse=True)
def _fresh_gatherers() -> Iterator[None]:
    gathering._GATHERERS.clear()
    yield
    gathering._GATHERERS.clear()


@pytest.fixture
def leased():
    make_accounts(12)
    order = make_order(action="view", link="t.me/durov/7", quantity=12)
    tasks_generate(limit=100, now=T0)
    tasks = tasks_pull(limit=100, now=T0).tasks
    assert len(tasks) == 12
    return order, tasks


def held_leader(monkeypatch, waiting: int) -> threading.Event:
    """The first report applied waits until ``waiting`` others queue behind it: they are then
    the next batch, together (the batch a busy server forms on its own). The event is set when
    the first one is being applied."""
    real, first = report._report, threading.Event()

    def gate(*args: Any) -> Any:
        if not first.is_set():
            first.set()
            for _ in range(2000):
                group = gathering._GATHERERS.get(KEY)
                if group is not None and group.queued() >= waiting:
                    break
                threading.Event().wait(0.005)
            else:
                raise AssertionError("the others never queued")
        return real(*args)

    monkeypatch.setattr(report, "_report", gate)
    return first


def in_threads(calls: list[Callable[[], Any]], *, led: threading.Event | None = None) -> list[Any]:
    """Run each call on its own thread (and database connection), all at once (with ``led``:
    the first one, then the others once it is being applied); each one's result, or the
    exception it raised."""
    results: list[Any] = [None] * len(calls)
    start = threading.Barrier(len(calls) if led is None else len(calls) - 1)

    def run(i: int) -> None:
        if led is not None and i == 0:
            pass
        elif led is not None:
            led.wait(30)
            start.wait()
        else:
            start.wait()
        try:
            with TestCase.captureOnCommitCallbacks(execute=True):
                results[i] = calls[i]()
        except Exception as exc:  # the test looks at it
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def single(task_id: str, state: str = "done", **fields: Any) -> Callable[[], Any]:
    def call() -> Any:
        [out] = tasks_report(reports=[ReportIn(task_id, state, **fields)], now=T0)
        return out

    return call


def caps(redis_client, account_ids) -> list[int]:
    day = claims.operations.local_day(T0)
    return [int(redis_client.get(keys.cap(a, "view", day)) or 0) for a in account_ids]


def test_a_lone_report_is_applied_at_once_by_itself(leased):
    _, tasks = leased
    [out] = in_threads([single(tasks[0]["task_id"])])
    assert (out.status, out.duplicate) == ("done", False)
    stats = gathering.all_stats()[KEY]
    assert (stats.batches, stats.largest) == (1, 1)


def test_concurrent_reports_with_duplicates_are_batched_and_counted_once(
    leased, monkeypatch, redis_client
):
    """36 requests for 12 tasks, each task reported three times: the 35 behind the first go in
    one batch, its repeats in later rounds. Every request is answered done; each task is
    counted once in the ledger (the order's units) and in Redis (the account's cap)."""
    order, tasks = leased
    calls = [single(t["task_id"]) for t in tasks for _ in range(3)]
    led = held_leader(monkeypatch, waiting=len(calls) - 1)
    outs = in_threads(calls, led=led)
    assert all(not isinstance(o, Exception) for o in outs), outs
    assert {o.status for o in outs} == {"done"}
    assert sorted(o.task_id for o in outs if not o.duplicate) == sorted(t["task_id"] for t in tasks)
    stats = gathering.all_stats()[KEY]
    assert (stats.batches, stats.largest, stats.alone) == (2, 35, 0)
    order.refresh_from_db()
    assert order.remains == 0
    done = TelegramTask.objects.filter(status="done")
    assert done.count() == 12
    assert caps(redis_client, done.values_list("telegram_account_id", flat=True)) == [1] * 12


def test_a_stale_lease_is_refused_inside_a_batch_and_the_others_apply(leased, monkeypatch):
    _, tasks = leased
    ids = [t["task_id"] for t in tasks[:4]]
    calls = [
        single(ids[0]),
        single(ids[1], "failed", error_code="SOMETHING", lease_id="0" * 26),
        single(ids[2]),
        single(ids[3], "failed", error_code="SOMETHING", lease_id=tasks[3]["lease_id"]),
    ]
    led = held_leader(monkeypatch, waiting=3)
    outs = dict(zip(ids, in_threads(calls, led=led), strict=True))
    refused = outs[ids[1]].error
    assert isinstance(refused, TaskConflict) and refused.code == "stale_lease"
    assert (outs[ids[0]].status, outs[ids[2]].status, outs[ids[3]].status) == (
        "done",
        "done",
        "failed",
    )
    assert TelegramTask.objects.get(pk=ids[1]).status == "leased"
    assert gathering.all_stats()[KEY].largest == 3


def test_one_failing_item_fails_only_itself(leased, monkeypatch, redis_client):
    """An item PostgreSQL refuses (a NUL in its text: no API lets one through, a caller of the
    service could) fails the batch's transaction; each item is then applied alone, the others
    counted once — the COMMITs the failed batch made are found and kept, not made again."""
    order, tasks = leased
    ids = [t["task_id"] for t in tasks[:5]]
    calls = [single(i) for i in ids[:4]] + [single(ids[4], "failed", error_message="bad\x00")]
    led = held_leader(monkeypatch, waiting=4)
    outs = in_threads(calls, led=led)
    assert [o.status for o in outs[:4]] == ["done"] * 4
    assert isinstance(outs[4], Exception)
    stats = gathering.all_stats()[KEY]
    assert (stats.largest, stats.alone) == (4, 4)
    assert TelegramTask.objects.get(pk=ids[4]).status == "leased"
    order.refresh_from_db()
    assert order.remains == 12 - 4
    done = TelegramTask.objects.filter(status="done")
    assert caps(redis_client, done.values_list("telegram_account_id", flat=True)) == [1] * 4


def test_with_redis_down_mid_batch_every_request_fails_and_nothing_is_applied(
    leased, monkeypatch, cut_redis
):
    order, tasks = leased
    ids = [t["task_id"] for t in tasks[:6]]
    real, cut = report._many_then_report, threading.Event()

    def cut_then_report(*args: Any) -> Any:
        if not cut.is_set():  # the batch, after the lone first one
            cut.set()
            cut_redis()
        return real(*args)

    monkeypatch.setattr(report, "_many_then_report", cut_then_report)
    led = held_leader(monkeypatch, waiting=5)
    outs = in_threads([single(i) for i in ids], led=led)
    assert cut.is_set()
    assert outs[0].status == "done"  # alone, before Redis went
    assert all(isinstance(o, RedisError) for o in outs[1:]), outs  # (the API's 503)
    order.refresh_from_db()
    assert order.remains == 12 - 1
    assert TelegramTask.objects.filter(status="leased").count() == 12 - 1


def _die_mid_batch(ids: list[str]) -> None:
    """In a child process: a batch of reports whose process is killed after its COMMITs, before
    the ledger step — what an OOM kill or a SIGKILL of the web worker does."""
    connections.close_all()
    gathering._GATHERERS.clear()
    real_report, real_commit = report._report, claims.commit_many_at

    def commit_then_die(*args: Any, **kwargs: Any) -> Any:
        done = real_commit(*args, **kwargs)
        if len(args[0]) > 1:  # the batch's COMMITs made, its transaction not committed
            os.kill(os.getpid(), signal.SIGKILL)
        return done

    claims.commit_many_at = commit_then_die
    first = threading.Event()

    def gate(*args: Any) -> Any:
        if not first.is_set():
            first.set()
            while (g := gathering._GATHERERS.get(KEY)) is None or g.queued() < len(ids) - 1:
                threading.Event().wait(0.005)
        return real_report(*args)

    report._report = gate
    in_threads([single(i) for i in ids], led=first)
    os._exit(0)  # not reached: the batch kills the process


def test_a_process_killed_mid_batch_is_settled_from_the_commit_markers(leased, redis_client):
    order, tasks = leased
    ids = [t["task_id"] for t in tasks[:5]]
    connections.close_all()
    child = multiprocessing.get_context("fork").Process(target=_die_mid_batch, args=(ids,))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    # The lone first report committed; the batch of four COMMITted in Redis, then died.
    assert TelegramTask.objects.filter(status="done").count() == 1
    assert TelegramTask.objects.filter(pk__in=ids, status="leased").count() == 4
    with TestCase.captureOnCommitCallbacks(execute=True):
        tasks_housekeep(now=T0 + timedelta(seconds=10))
    assert TelegramTask.objects.filter(pk__in=ids, status="done").count() == 5
    order.refresh_from_db()
    assert order.remains == 12 - 5
    accounts = TelegramTask.objects.filter(pk__in=ids).values_list("telegram_account_id", flat=True)
    assert caps(redis_client, accounts) == [1] * 5
    # The provider's retry of a report the dead process never answered: a duplicate.
    [again] = in_threads([single(ids[-1])])
    assert (again.status, again.duplicate) == ("done", True)
    order.refresh_from_db()
    assert order.remains == 12 - 5


def test_a_group_of_one_turns_gathering_off(leased, settings):
    settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, "REPORT_GROUP_MAX": 1}
    _, tasks = leased
    outs = in_threads([single(t["task_id"]) for t in tasks[:4]])
    assert [o.status for o in outs] == ["done"] * 4
    assert KEY not in gathering.all_stats()


def test_inside_a_callers_transaction_a_report_is_not_gathered(leased):
    from django.db import transaction

    _, tasks = leased
    with transaction.atomic():
        [out] = tasks_report(reports=[ReportIn(tasks[0]["task_id"], "done")], now=T0)
    assert out.status == "done"
    assert KEY not in gathering.all_stats()


def test_a_lone_request_never_waits_for_company():
    """However long the gather wait, a request with nobody before it is applied at once."""
    group = gathering.Gatherer(lambda x: x * 2, lambda xs: [x * 2 for x in xs], most=10, wait=30)
    done = threading.Event()
    answers = []
    thread = threading.Thread(target=lambda: (answers.append(group.submit(21)), done.set()))
    thread.start()
    assert done.wait(10), "a lone request waited for company"
    assert answers == [42] and group.stats.largest == 1


def test_under_load_a_batch_waits_for_as_many_as_the_one_before():
    """After a batch of three, the next leader waits (up to ``wait``) until three are queued:
    they go in one batch instead of one alone and two after it."""
    batches: list[list[int]] = []
    group = gathering.Gatherer(
        lambda x: batches.append([x]) or x,
        lambda xs: batches.append(list(xs)) or list(xs),
        most=10,
        wait=30,
    )
    group._last = 3  # (the batch before had three)
    threads = [threading.Thread(target=group.submit, args=(1,))]
    threads[0].start()
    for _ in range(1000):
        if group._busy:
            break
        threading.Event().wait(0.005)
    for n in (2, 3):
        threads.append(threading.Thread(target=group.submit, args=(n,)))
        threads[-1].start()
    for t in threads:
        t.join(30)
    assert batches == [[1, 2, 3]]
