"""Long-poll: a pull with ``wait_seconds`` waits for tasks holding no database connection and is
woken by what makes tasks available (generation, a requeue), within a moment, not at its
deadline. Real threads, real PostgreSQL NOTIFY, real Redis."""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.db import connection, connections
from django.utils import timezone

from telegram_tasks.api import waiting
from telegram_tasks.services import ReportIn, available, tasks_generate, tasks_pull, tasks_report
from tests.factories import make_accounts, make_order

pytestmark = pytest.mark.django_db(transaction=True)


class Waiting(threading.Thread):
    """A pull that waits, in a thread of its own (with its own database connection)."""

    def __init__(self, **pull):
        super().__init__(daemon=True)
        self.pull = {"limit": 10, "wait_seconds": 5, "wait": waiting.lease_waiting, **pull}
        self.tasks = None
        self.error = None
        self.seconds = None

    def run(self):
        started = time.monotonic()
        try:
            self.tasks = tasks_pull(now=timezone.now(), **self.pull).tasks
        except BaseException as exc:
            self.error = exc
        finally:
            self.seconds = time.monotonic() - started
            connections.close_all()

    def result(self):
        self.join(30)
        assert not self.is_alive()
        if self.error:
            raise self.error
        return self.tasks


def settle_in(*threads, waiters=None):
    """Until the threads are asleep in the listener (they looked, found nothing, and wait)."""
    deadline = time.monotonic() + 10
    want = len(threads) if waiters is None else waiters
    while waiting.LISTENER.sleeping < want or not waiting.LISTENER.listening.is_set():
        assert time.monotonic() < deadline, "the pulls never started waiting"
        time.sleep(0.02)
    time.sleep(0.05)


def backends() -> int:
    """Connections open to this test database, the asking one included."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]


def test_generation_wakes_waiting_pulls_which_hold_no_connection():
    make_accounts(20)
    before = backends()
    pulls = [Waiting(limit=1, wait_seconds=20) for _ in range(20)]
    for p in pulls:
        p.start()
    settle_in(*pulls)
    # Twenty pulls asleep: the asking connection and the process's one listener, no more
    # (the pulls' own connections closed; the server's backends end a moment later).
    deadline = time.monotonic() + 5
    while backends() > before + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert backends() <= before + 1
    for n in range(2):  # (ten tasks in flight per order at most)
        make_order(action="view", link=f"t.me/durov/5{n}", quantity=10)
    assert tasks_generate(limit=100, now=timezone.now()).created == 20
    got = [p.result() for p in pulls]
    assert sorted(len(t) for t in got) == [1] * 20
    assert len({t[0]["task_id"] for t in got}) == 20
    # Woken by the pass, not by their deadline.
    assert max(p.seconds for p in pulls) < 10


def test_with_nothing_coming_a_waiting_pull_answers_empty_at_its_deadline():
    make_accounts(1)
    pull = Waiting(wait_seconds=1)
    pull.start()
    assert pull.result() == []
    assert 0.9 <= pull.seconds < 5


def test_a_pull_for_some_accounts_is_woken_only_by_their_tasks():
    mine, theirs = make_accounts(2)
    waiting_mine = Waiting(accounts=[mine.provider_account_id], wait_seconds=2)
    waiting_theirs = Waiting(accounts=[theirs.provider_account_id], wait_seconds=20)
    waiting_mine.start()
    waiting_theirs.start()
    settle_in(waiting_mine, waiting_theirs)
    theirs.refresh_from_db()
    # One task, on the only account that can take it: theirs.
    from telegram_tasks.models import TelegramAccount

    TelegramAccount.objects.filter(pk=mine.pk).update(is_active=False)
    make_order(action="view", link="t.me/durov/6", quantity=1)
    tasks_generate(limit=10, now=timezone.now())
    [task] = waiting_theirs.result()
    assert task["account"]["provider_account_id"] == theirs.provider_account_id
    assert waiting_theirs.seconds < 10
    assert waiting_mine.result() == []


def test_a_retry_wakes_a_waiting_pull_when_it_is_due():
    make_accounts(1)
    make_order(action="view", link="t.me/durov/7", quantity=1)
    tasks_generate(limit=10, now=timezone.now())
    [task] = tasks_pull(limit=10, now=timezone.now()).tasks
    pull = Waiting(wait_seconds=20)
    pull.start()
    settle_in(pull)
    tasks_report(
        reports=[ReportIn(task["task_id"], "failed", error_code="TIMEOUT", retry_after=1)],
        now=timezone.now(),
    )
    [again] = pull.result()
    assert again["task_id"] == task["task_id"] and again["attempt"] == 1
    assert 0.9 <= pull.seconds < 10  # at its time (a second later), not at the deadline


def test_each_later_drip_feed_slot_wakes_pulls_at_its_own_time():
    """One pass schedules a drip-feed order's slots now and two seconds later: a pull that
    starts waiting after the first was taken is woken when the second comes due."""
    waiting.LISTENER._ensure_running()
    deadline = time.monotonic() + 10
    while not waiting.LISTENER.listening.is_set():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    make_accounts(2)
    make_order(action="view", link="t.me/durov/8", quantity=2, interval_seconds=2)
    assert tasks_generate(limit=10, now=timezone.now()).created == 2
    [first] = tasks_pull(limit=1, now=timezone.now()).tasks
    pull = Waiting(limit=1, wait_seconds=20)
    pull.start()
    [second] = pull.result()
    assert second["task_id"] != first["task_id"]
    assert pull.seconds < 10  # at the slot's time, not at the pull's deadline


def test_an_announcement_in_a_transaction_that_rolls_back_wakes_nobody():
    from django.db import transaction

    from telegram_tasks.models import default_provider_id

    make_accounts(1)
    pull = Waiting(wait_seconds=1)
    pull.start()
    settle_in(pull)
    with transaction.atomic():
        available.announce([(timezone.now(), default_provider_id(), "ext_x", "pull")])
        transaction.set_rollback(True)
    assert pull.result() == []
    assert pull.seconds >= 0.9


def test_the_listener_wakes_only_as_many_as_the_tasks_need():
    listener = waiting.Listener()
    listener._ensure_running = lambda: None  # (no thread: driven by hand)
    now = time.time()
    with (
        listener.registered(limit=5, accounts=None) as a,
        listener.registered(limit=5, accounts=None) as b,
        listener.registered(limit=5, accounts=None) as c,
        listener.registered(limit=1, accounts=["acc-1"]) as mine,
    ):
        listener.handle(json.dumps({"n": 7, "at": now, "accounts": ["acc-2"]}), now)
        assert (a.event.is_set(), b.event.is_set(), c.event.is_set()) == (True, True, False)
        assert not mine.event.is_set()
        listener.handle(json.dumps({"n": 1, "at": now + 5, "accounts": None}), now)
        assert not c.event.is_set() and not mine.event.is_set()  # not yet
        assert listener.run_due(now + 1) == pytest.approx(now + 5)
        listener.run_due(now + 5)
        assert c.event.is_set() and mine.event.is_set()  # unnamed accounts: every filtered pull


def test_wait_seconds_is_validated(client, settings):
    settings.PROVIDER_TOKEN = "t"
    for bad in (21, -1, "5", 2.5, True):
        response = client.post(
            "/api/provider/telegram/tasks/pull",
            {"limit": 1, "wait_seconds": bad},
            content_type="application/json",
            HTTP_X_PROVIDER_TOKEN="t",
        )
        assert response.status_code == 400, bad
        assert "wait_seconds" in response.json()["error"]["message"]
