"""What each Telegram error code of a failed report does (telegram_tasks/failures.py)."""

import random
from datetime import UTC, datetime, timedelta

import pytest
from django.test import TestCase

from orders.models import Order
from telegram_tasks import claims, failures
from telegram_tasks.claims import Claim, Refusal, Target, keys
from telegram_tasks.models import TelegramAccount, TelegramTask
from telegram_tasks.services import ReportIn, tasks_generate, tasks_pull, tasks_report
from tests.factories import make_accounts, make_order

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def fail(task, code, retry_after=None, now=T0):
    with TestCase.captureOnCommitCallbacks(execute=True):
        [out] = tasks_report(
            reports=[ReportIn(task["task_id"], "failed", error_code=code, error_message=code,
                              retry_after=retry_after)],
            now=now,
        )  # fmt: skip
    return out


def one_task(action="view", accounts=1, **order):
    created = make_accounts(accounts)
    o = make_order(action=action, **{"quantity": 3, **order})
    tasks_generate(limit=1, now=T0)
    [task] = tasks_pull(limit=1, now=T0).tasks
    account = next(
        a for a in created if a.provider_account_id == task["account"]["provider_account_id"]
    )
    return o, task, account


def test_parse_and_plan_table():
    rng = random.Random(1)
    assert failures.parse("FLOOD_WAIT_30") == ("FLOOD_WAIT", 30)
    assert failures.parse("CHANNEL_PRIVATE") == ("CHANNEL_PRIVATE", None)
    plan = failures.plan_failure("FLOOD_WAIT_30", None, rng)
    assert plan.scope is failures.Scope.ACCOUNT_HOLD and 30 <= plan.hold_seconds <= 36
    assert plan.retry_after >= plan.hold_seconds
    assert failures.plan_failure("SLOWMODE_WAIT_12", None).retry_after == 12
    assert failures.plan_failure("SLOWMODE_WAIT_12", None).hold_seconds == 0
    assert failures.plan_failure("PEER_FLOOD", None).hold_seconds >= 24 * 3600
    assert failures.plan_failure("WHATEVER", None).scope is failures.Scope.TASK
    assert failures.plan_failure("WHATEVER", None).retry_after is None


def test_flood_wait_holds_the_account_and_retries_the_task(redis_client):
    _, task, account = one_task()
    out = fail(task, "FLOOD_WAIT_30")
    assert out.status == "queued"
    queued = TelegramTask.objects.get()
    assert queued.available_at >= T0 + timedelta(seconds=30)
    hold = int(redis_client.get(keys.hold(account.id)))
    assert hold >= int((T0 + timedelta(seconds=30)).timestamp() * 1000)
    other = Claim(account.id, "reaction", Target("r" * 64, 1), "x")
    assert claims.reserve(other, now=T0 + timedelta(seconds=29)) == Refusal.HOLD


def test_slowmode_retries_the_task_without_holding_the_account(redis_client):
    _, task, account = one_task()
    assert fail(task, "SLOWMODE_WAIT_12").status == "queued"
    assert TelegramTask.objects.get().available_at == T0 + timedelta(seconds=12)
    assert not redis_client.exists(keys.hold(account.id))


def test_peer_flood_holds_the_account_long_and_frees_the_order(redis_client):
    order, task, account = one_task(accounts=2)
    out = fail(task, "PEER_FLOOD")
    assert out.status == "failed"
    assert TelegramTask.objects.get(pk=task["task_id"]).failure_reason == "peer_flood"
    assert int(redis_client.get(keys.hold(account.id))) >= int(
        (T0 + timedelta(hours=23)).timestamp() * 1000
    )
    tasks_generate(limit=1, now=T0 + timedelta(seconds=1))
    new = TelegramTask.objects.get(order=order, status="queued")
    assert new.telegram_account_id != account.id


@pytest.mark.parametrize(
    "code", ["AUTH_KEY_UNREGISTERED", "SESSION_REVOKED", "USER_DEACTIVATED_BAN"]
)
def test_dead_account_is_deactivated_and_its_queued_tasks_released(code, redis_client):
    accounts = make_accounts(2)
    first = make_order(action="view", link="t.me/aaaaa/1", quantity=1)
    tasks_generate(limit=10, now=T0)
    [task] = tasks_pull(limit=10, now=T0).tasks
    make_order(action="reaction", link="t.me/bbbbb/1", quantity=1)
    tasks_generate(limit=10, now=T0)
    queued = TelegramTask.objects.get(telegram_account=accounts[0], action="reaction")
    assert task["account"]["provider_account_id"] == accounts[0].provider_account_id
    fail(task, code)
    accounts[0].refresh_from_db()
    assert accounts[0].is_active is False
    queued.refresh_from_db()
    assert (queued.status, queued.failure_reason) == ("failed", "account_inactive")
    assert not redis_client.exists(keys.lock(accounts[0].id, "reaction"))
    tasks_generate(limit=10, now=T0 + timedelta(seconds=1))
    assert (
        TelegramTask.objects.get(order=first, status="queued").telegram_account_id == accounts[1].id
    )


def test_channels_too_much_stops_subscribe_until_an_unsubscribe(redis_client):
    _, task, account = one_task(action="subscribe")
    fail(task, "CHANNELS_TOO_MUCH")
    later = T0 + timedelta(hours=1)
    other_channel = Target("c" * 64)
    assert (
        claims.reserve(Claim(account.id, "subscribe", other_channel, "s"), now=later)
        == Refusal.FULL
    )
    assert claims.reserve(Claim(account.id, "view", Target("v" * 64, 1), "v"), now=later) is None
    # It unsubscribes somewhere: subscribe is open again.
    somewhere = Target("d" * 64)
    claims.reserve(Claim(account.id, "subscribe", somewhere, "s0"), now=T0 - timedelta(days=2))
    redis_client.delete(keys.full(account.id))
    claims.commit(Claim(account.id, "subscribe", somewhere, "s0"), now=T0 - timedelta(days=2))
    claims.mark_full([account.id], ttl_seconds=3600)
    claims.reserve(Claim(account.id, "unsubscribe", somewhere, "u"), now=later)
    claims.commit(Claim(account.id, "unsubscribe", somewhere, "u"), now=later)
    assert claims.reserve(Claim(account.id, "subscribe", other_channel, "s2"), now=later) is None


@pytest.mark.parametrize(
    ("delivered", "status"), [(0, Order.Status.CANCELED), (1, Order.Status.PARTIAL)]
)
@pytest.mark.parametrize(
    "code", ["CHANNEL_PRIVATE", "USERNAME_NOT_OCCUPIED", "INVITE_HASH_EXPIRED"]
)
def test_dead_target_stops_the_order(code, delivered, status, redis_client, redis_prefix):
    make_accounts(3)
    order = make_order(action="view", quantity=5)
    tasks_generate(limit=10, now=T0)
    tasks = tasks_pull(limit=10, now=T0).tasks
    assert len(tasks) == 3
    if delivered:
        with TestCase.captureOnCommitCallbacks(execute=True):
            tasks_report(reports=[ReportIn(tasks[2]["task_id"], "done")], now=T0)
    fail(tasks[0], code)
    order.refresh_from_db()
    assert order.status == status
    left = TelegramTask.objects.filter(order=order).exclude(status="done")
    assert {t.status for t in left} == {"failed"}
    assert set(left.values_list("failure_reason", flat=True)) == {"target_unavailable"}
    assert not list(redis_client.scan_iter(match=f"{redis_prefix}:*:lock:*"))
    assert tasks_generate(limit=10, now=T0 + timedelta(seconds=1)).created == 0


def test_unknown_code_fails_the_task_only(redis_client):
    order, task, account = one_task()
    out = fail(task, "SOMETHING_NEW")
    assert out.status == "failed"
    assert TelegramTask.objects.get().failure_reason == "provider_failed"
    assert TelegramAccount.objects.get(pk=account.id).is_active
    assert not redis_client.exists(keys.hold(account.id))
    order.refresh_from_db()
    assert order.status == Order.Status.IN_PROGRESS


def test_flood_wait_without_hand_outs_left_fails(settings):
    settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, "MAX_ATTEMPTS": 1}
    _, task, _ = one_task()
    assert fail(task, "FLOOD_WAIT_5").status == "failed"
    assert TelegramTask.objects.get().failure_reason == "attempts_exhausted"
