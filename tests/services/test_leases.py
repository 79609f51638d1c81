"""Extend and release, called directly with ``now``."""

from datetime import UTC, datetime, timedelta

import pytest

from telegram_tasks.exceptions import TaskConflict, TaskNotFound
from telegram_tasks.models import TelegramTask
from telegram_tasks.services import (
    LeaseRef,
    tasks_extend,
    tasks_generate,
    tasks_pull,
    tasks_release,
)
from tests.factories import make_accounts, make_order

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def task():
    make_accounts(1)
    make_order(action="view", link="t.me/durov/7", quantity=1)
    tasks_generate(limit=10, now=T0)
    [task] = tasks_pull(limit=10, now=T0).tasks
    return task


def test_extend_defaults_to_the_lease_length_and_is_capped(task, settings):
    settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, "MAX_LEASE_SECONDS": 100}
    [out] = tasks_extend(
        leases=[LeaseRef(task["task_id"], task["lease_id"])], now=T0 + timedelta(seconds=30)
    )
    assert out.ok and out.leased_until == T0 + timedelta(seconds=90)
    [capped] = tasks_extend(
        leases=[LeaseRef(task["task_id"], task["lease_id"], 3600)], now=T0 + timedelta(seconds=40)
    )
    assert capped.leased_until == T0 + timedelta(seconds=100)


def test_extend_refuses_unknown_stale_and_ended_leases(task):
    outs = tasks_extend(
        leases=[LeaseRef("0" * 26, "x"), LeaseRef(task["task_id"], "not-mine")], now=T0
    )
    assert isinstance(outs[0].error, TaskNotFound)
    assert isinstance(outs[1].error, TaskConflict) and outs[1].error.code == "stale_lease"
    [late] = tasks_extend(
        leases=[LeaseRef(task["task_id"], task["lease_id"])], now=T0 + timedelta(seconds=61)
    )
    assert late.error.code == "task_not_leased"


def test_release_queues_again_without_counting_an_attempt(task):
    [out] = tasks_release(leases=[LeaseRef(task["task_id"], task["lease_id"])], now=T0)
    assert out.ok
    row = TelegramTask.objects.get()
    assert (row.status, row.attempt) == ("queued", 0)
    [again] = tasks_pull(limit=10, now=T0).tasks
    assert again["attempt"] == 0
