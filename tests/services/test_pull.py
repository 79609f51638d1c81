"""Pull, called directly with ``now``: what is handed out, in which order, and replays."""

from datetime import UTC, datetime, timedelta

import pytest

from telegram_tasks.exceptions import TaskConflict
from telegram_tasks.models import TelegramTask
from telegram_tasks.services import tasks_generate, tasks_pull
from tests.factories import make_accounts, make_order

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def queued():
    accounts = make_accounts(4)
    make_order(action="view", link="t.me/durov/7", quantity=4)
    tasks_generate(limit=10, now=T0)
    return accounts


def test_pull_leases_oldest_first_up_to_the_limit(queued):
    first = tasks_pull(limit=3, now=T0).tasks
    assert len(first) == 3 and [t["attempt"] for t in first] == [0, 0, 0]
    assert len({t["lease_id"] for t in first}) == 1
    rest = tasks_pull(limit=3, now=T0).tasks
    assert len(rest) == 1 and rest[0]["task_id"] not in {t["task_id"] for t in first}


def test_a_lease_that_ran_out_is_handed_out_again(queued):
    [task] = tasks_pull(limit=1, now=T0).tasks
    assert task["task_id"] not in {
        t["task_id"] for t in tasks_pull(limit=10, now=T0 + timedelta(seconds=59)).tasks
    }
    [again] = [
        t
        for t in tasks_pull(limit=10, now=T0 + timedelta(seconds=61)).tasks
        if t["task_id"] == task["task_id"]
    ]
    assert again["attempt"] == 1 and again["lease_id"] != task["lease_id"]


def test_pull_filtered_by_accounts(queued):
    wanted = queued[1].provider_account_id
    tasks = tasks_pull(limit=10, now=T0, accounts=[wanted]).tasks
    assert [t["account"]["provider_account_id"] for t in tasks] == [wanted]
    assert tasks_pull(limit=10, now=T0, accounts=[]).tasks == []


def test_request_id_replays_the_same_tasks(queued):
    first = tasks_pull(limit=2, now=T0, request_id="r-1")
    again = tasks_pull(limit=2, now=T0, request_id="r-1")
    assert again.replayed and [t["task_id"] for t in again.tasks] == [
        t["task_id"] for t in first.tasks
    ]
    assert TelegramTask.objects.filter(status="leased").count() == 2


def test_request_id_in_progress_is_a_conflict(queued, redis_client, redis_prefix):
    from telegram_tasks.claims import keys
    from telegram_tasks.models import default_provider_id
    from telegram_tasks.services.pull import replay_fingerprint

    busy = keys.pull_replay(default_provider_id(), "busy")
    redis_client.set(busy, f"in-progress:{replay_fingerprint(2, None)}")
    with pytest.raises(TaskConflict):
        tasks_pull(limit=2, now=T0, request_id="busy")


# --- replays bound to their request (hardening) ----------------------------------------------


def test_a_request_id_reused_with_other_parameters_is_refused(queued):
    tasks_pull(limit=2, now=T0, request_id="r-2")
    with pytest.raises(TaskConflict) as refused:
        tasks_pull(limit=3, now=T0, request_id="r-2")
    assert refused.value.code == "request_id_reused"
    with pytest.raises(TaskConflict):
        tasks_pull(limit=2, now=T0, request_id="r-2", accounts=[queued[0].provider_account_id])


def test_a_replay_never_returns_a_lease_that_ran_out(queued):
    first = tasks_pull(limit=2, now=T0, request_id="r-3").tasks
    later = T0 + timedelta(seconds=61)
    # The leases ran out: any puller may take them now, so the replay no longer returns them.
    assert tasks_pull(limit=2, now=later, request_id="r-3").tasks == []
    # Another puller takes them.
    other = tasks_pull(limit=10, now=later).tasks
    assert {t["task_id"] for t in first} <= {t["task_id"] for t in other}
    replay = tasks_pull(limit=2, now=later, request_id="r-3")
    assert replay.replayed and replay.tasks == []
