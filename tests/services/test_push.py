"""Push mode end to end: the dispatcher against a real HTTP provider process on loopback, whose
webhooks come back through the real report endpoint (Django's live server)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from orders.models import Order
from telegram_tasks import claims
from telegram_tasks.api import push_transport
from telegram_tasks.models import TelegramAccount, TelegramTask
from telegram_tasks.services import push_breaker, tasks_generate, tasks_pull, tasks_push
from tests.factories import make_accounts, make_order

pytestmark = pytest.mark.django_db(transaction=True)
TOKEN = "push-test-token"
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def provider(live_server, settings, tmp_path):
    port = free_port()
    log = tmp_path / "provider.jsonl"
    log.touch()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "push_provider.py"), str(port), live_server.url,
         TOKEN, str(log)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stdout.readline().strip() == "ready"
    settings.PROVIDER_TOKEN = TOKEN
    settings.TELEGRAM_TASKS = {
        **settings.TELEGRAM_TASKS,
        "PROVIDER_PUSH_URL": f"http://127.0.0.1:{port}/push",
        "PUSH_ALLOW_HTTP": True,
        "PUSH_TIMEOUT_SECONDS": 1,
        "PUSH_BREAKER_FAILURES": 2,
        "PUSH_BREAKER_SECONDS": 30,
    }
    push_transport._transport.cache_clear()
    yield lambda: [json.loads(line) for line in log.read_text().splitlines() if line]
    process.kill()
    process.wait()
    push_transport._transport.cache_clear()


def push_order(kind: str, quantity: int = 1, **fields) -> Order:
    return make_order(
        action="view", link=f"t.me/{kind}chan/1", quantity=quantity, execution_mode="push",
        **fields,
    )  # fmt: skip


def dispatch(now=None, **kwargs):
    return tasks_push(now=now or timezone.now(), deliver=push_transport.deliver, **kwargs)


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_a_pushed_task_done_counts_once_and_is_signed(provider):
    make_accounts(2)
    order = push_order("done", quantity=2)
    tasks_generate(limit=10, now=timezone.now())
    assert tasks_pull(limit=10, now=timezone.now()).tasks == []  # never pulled
    summary = dispatch()
    assert (summary.leased, summary.outcomes["done"]) == (2, 2)
    order.refresh_from_db()
    assert (order.remains, order.status) == (0, Order.Status.COMPLETED)
    events = provider()
    assert all(e["signed"] for e in events)
    for e in events:
        assert e["key"] == f"{e['task']}:{e['lease']}"
    assert TelegramTask.objects.filter(status="done", result__data__via="push").count() == 2


def test_flood_wait_through_push_holds_the_account_and_requeues(provider):
    make_accounts(1)
    push_order("flood")
    tasks_generate(limit=10, now=timezone.now())
    assert dispatch().outcomes["queued"] == 1
    task = TelegramTask.objects.get()
    assert task.status == "queued" and task.available_at > timezone.now() + timedelta(seconds=25)
    assert TelegramAccount.objects.get().held_until > timezone.now() + timedelta(seconds=25)


@pytest.mark.parametrize("kind", ["pending", "accept"])
def test_a_later_answer_comes_through_the_report_endpoint(provider, kind):
    make_accounts(1)
    order = push_order(kind)
    tasks_generate(limit=10, now=timezone.now())
    summary = dispatch()
    assert summary.outcomes["pending" if kind == "pending" else "accepted"] == 1
    wait_for(lambda: TelegramTask.objects.filter(status="done").exists())
    order.refresh_from_db()
    assert order.remains == 0
    assert [e["ev"] for e in provider()] == ["push", "webhook"]


def test_a_provider_down_costs_no_attempt_and_the_circuit_opens_then_closes(provider):
    make_accounts(1)
    push_order("flaky")
    tasks_generate(limit=10, now=timezone.now())
    now = timezone.now()
    first = dispatch(now=now)
    assert first.outcomes["retry"] == 1 and first.circuit == "closed"
    task = TelegramTask.objects.get()
    assert (task.status, task.attempt, task.redeliver) == ("queued", 0, True)
    # The next dispatch is the same hand-out: same lease, same Idempotency-Key.
    later = now + timedelta(seconds=5)
    second = dispatch(now=later)
    assert second.outcomes["retry"] == 1 and second.circuit == "open"
    # Open: nothing is sent, however due the task.
    assert dispatch(now=later + timedelta(seconds=10)).leased == 0
    keys = {e["key"] for e in provider()}
    assert len(keys) == 1
    # After the open time, one probe: the provider still fails, the circuit opens again.
    probe = dispatch(now=later + timedelta(seconds=31))
    assert probe.leased == 1 and probe.circuit == "open"
    # Then it has recovered (4th send answers done): the probe closes the circuit.
    recovered = dispatch(now=later + timedelta(seconds=31 + 61))
    assert recovered.outcomes["done"] == 1 and recovered.circuit == "closed"
    task.refresh_from_db()
    assert (task.status, task.attempt) == ("done", 0)
    assert push_breaker(now=later).label == "closed"


def test_a_provider_that_hangs_does_not_hold_up_the_others(provider):
    make_accounts(6)
    push_order("hang", quantity=1)
    push_order("done", quantity=5)
    tasks_generate(limit=10, now=timezone.now())
    started = time.monotonic()
    summary = dispatch()
    assert time.monotonic() - started < 2.5  # one timeout, not one per task
    assert summary.outcomes["done"] == 5 and summary.outcomes["retry"] == 1


def test_an_answer_the_ledger_cannot_store_costs_that_task_only(provider):
    """A NUL character in an answer's data would fail the jsonb cast of the whole batch: the
    report endpoint's checks run on push answers too, and such an answer is unreadable (the
    task stays leased for a report through the API); the others are applied."""
    make_accounts(3)
    push_order("nul")
    push_order("done", quantity=2)
    tasks_generate(limit=10, now=timezone.now())
    summary = dispatch()
    assert (summary.outcomes["done"], summary.outcomes["unreadable"]) == (2, 1)
    bad = TelegramTask.objects.get(payload__link__icontains="nulchan")
    assert bad.status == "leased" and bad.result is None
    assert TelegramTask.objects.filter(status="done").count() == 2


def test_a_refusal_fails_the_task_naming_the_status(provider):
    make_accounts(1)
    push_order("gone")
    tasks_generate(limit=10, now=timezone.now())
    assert dispatch().outcomes["rejected"] == 1
    task = TelegramTask.objects.get()
    assert (task.status, task.failure_reason) == ("failed", "push_http_410")
    assert not claims.lock_holders([(task.telegram_account_id, "view")])[0]


def test_push_and_pull_orders_side_by_side_both_complete(provider):
    make_accounts(4)
    pushed = push_order("done", quantity=2)
    pulled = make_order(action="view", link="t.me/pulledchan/1", quantity=2)
    now = timezone.now()
    tasks_generate(limit=10, now=now)
    leased = tasks_pull(limit=10, now=now).tasks
    assert {t["order_id"] for t in leased} == {pulled.pk}
    from telegram_tasks.services import ReportIn, tasks_report

    tasks_report(reports=[ReportIn(t["task_id"], "done") for t in leased], now=now)
    dispatch(now=now)
    for order in (pushed, pulled):
        order.refresh_from_db()
        assert order.status == Order.Status.COMPLETED


def test_the_signature_is_what_the_provider_guide_says():
    body = b'{"task_id":"x"}'
    header = push_transport.sign(body, "secret", 1_700_000_000)
    assert push_transport.verify(body, header, ["other", "secret"], now=1_700_000_100)
    assert not push_transport.verify(body + b" ", header, ["secret"], now=1_700_000_100)
    assert not push_transport.verify(body, header, ["secret"], now=1_700_001_000)  # too old


def test_pushes_are_signed_with_the_signing_secret_apart_from_the_api_token(provider, settings):
    """PUSH_SIGNING_SECRET keys the signature (the provider here checks it against TOKEN);
    unset, the first provider token does."""
    make_accounts(2)
    settings.PROVIDER_TOKEN = "an-api-token-that-signs-nothing-Zq81"
    settings.PUSH_SIGNING_SECRET = TOKEN
    push_order("done")
    tasks_generate(limit=10, now=timezone.now())
    assert dispatch().outcomes["done"] == 1
    settings.PUSH_SIGNING_SECRET = ""
    push_order("done")
    tasks_generate(limit=10, now=timezone.now())
    assert dispatch().outcomes["done"] == 1
    assert [e["signed"] for e in provider()] == [True, False]


def test_an_http_url_is_refused_unless_allowed(settings):
    from django.core import checks

    settings.PROVIDER_TOKEN = TOKEN
    settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, "PROVIDER_PUSH_URL": "http://x/push"}
    assert "telegram_tasks.E030" in {e.id for e in checks.run_checks()}
    settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, "PUSH_ALLOW_HTTP": True}
    assert "telegram_tasks.E030" not in {e.id for e in checks.run_checks()}


def test_transport_failures_of_a_paused_order_end_its_task_and_are_capped(provider, settings):
    from telegram_tasks.services import orders_pause

    make_accounts(2)
    paused = push_order("flaky")
    tasks_generate(limit=10, now=timezone.now())
    # Leased (dispatching) when the operator pauses it: the failed send ends it.
    from telegram_tasks.services.pull import lease_tasks

    [task] = [json.loads(t.json) for t in lease_tasks(limit=10, now=timezone.now(), mode="push")]
    orders_pause(order_ids=[paused.pk], now=timezone.now())
    from telegram_tasks.services.dispatch import PushSummary, Unreachable, apply_outcomes

    apply_outcomes([task], [Unreachable("boom")], now=timezone.now(), summary=PushSummary())
    assert TelegramTask.objects.get(pk=task["task_id"]).failure_reason == "order_paused"
    # A task that never reaches the provider fails after PUSH_MAX_RETRIES sends.
    settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, "PUSH_MAX_RETRIES": 2}
    other = push_order("flaky", quantity=1)
    tasks_generate(limit=10, now=timezone.now())
    now = timezone.now()
    for _ in range(2):
        [leased] = [json.loads(t.json) for t in lease_tasks(limit=10, now=now, mode="push")]
        apply_outcomes([leased], [Unreachable("boom")], now=now, summary=PushSummary())
        now += timedelta(seconds=10)  # past the backoff
    task = TelegramTask.objects.get(order=other)
    assert (task.status, task.failure_reason, task.attempt) == ("failed", "push_unreachable", 0)


def test_a_task_not_sent_for_lack_of_time_counts_against_nothing(provider):
    """A pass that runs out of time before a task's turn says nothing of the provider: no
    dispatch error, no backoff, no failure of the circuit; the task is queued again at once."""
    from telegram_tasks.services.dispatch import PushSummary, Unreachable, apply_outcomes
    from telegram_tasks.services.pull import lease_tasks

    make_accounts(1)
    order = push_order("done")
    tasks_generate(limit=10, now=timezone.now())
    now = timezone.now()
    for _ in range(5):
        [task] = [json.loads(t.json) for t in lease_tasks(limit=10, now=now, mode="push")]
        unsent = Unreachable("push: not sent, the pass ran out of time", retry_after=0, sent=False)
        apply_outcomes([task], [unsent], now=now, summary=PushSummary())
    left = TelegramTask.objects.get(order=order)
    assert (left.status, left.dispatch_errors, left.attempt) == ("queued", 0, 0)
    assert left.available_at <= now
    assert push_breaker(now=now).state == "closed"
