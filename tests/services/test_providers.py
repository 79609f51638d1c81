"""Provider fleets in the services: a disabled provider's work moves to others, routing limits
an order to some providers, each provider is pushed to its own URL with its own key and its
own circuit, and long-polls wake for their own provider's tasks only."""

from __future__ import annotations

import hashlib
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connections
from django.test import TestCase
from django.utils import timezone

from telegram_tasks import claims
from telegram_tasks.api import push_transport, waiting
from telegram_tasks.models import Membership, Provider, TelegramAccount, TelegramTask
from telegram_tasks.services import (
    ReportIn,
    tasks_generate,
    tasks_housekeep,
    tasks_pull,
    tasks_push,
    tasks_release,
    tasks_report,
)
from telegram_tasks.services.dispatch import (
    Accepted,
    PushTarget,
    Unreachable,
    push_breaker,
    push_targets,
    signing_secret,
)
from telegram_tasks.services.leases import LeaseRef
from telegram_tasks.services.providers import (
    provider_token_add,
    provider_token_revoke,
    providers_create,
    providers_disable,
    providers_enable,
)
from tests.concurrency import run_concurrently
from tests.factories import make_accounts, make_order, make_task

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def new_provider(name: str, **kwargs) -> tuple[Provider, str]:
    return providers_create(name=name, now=T0, **kwargs)


def ref(provider: Provider):
    from telegram_tasks.providers import ProviderRef

    return ProviderRef(provider.pk, provider.name)


def on_commit(call):
    with TestCase.captureOnCommitCallbacks(execute=True):
        return call()


# --- a disabled provider -----------------------------------------------------------------------


def test_a_disabled_providers_queued_work_moves_to_another_provider(redis_client):
    """Its queued tasks fail (provider_disabled) and give their locks back; the next pass puts
    the order's units on the other provider's accounts; its own accounts are never picked."""
    alpha, _ = new_provider("alpha")
    beta, _ = new_provider("beta")
    theirs = make_accounts(2, provider=alpha)
    order = make_order(action="view", link="t.me/durov/7", quantity=2)
    tasks_generate(limit=10, now=T0)
    assert set(TelegramTask.objects.values_list("provider_id", flat=True)) == {alpha.pk}
    make_accounts(2, provider=beta)
    on_commit(lambda: providers_disable(provider_ids=[alpha.pk], now=T0))
    moved = TelegramTask.objects.filter(provider=alpha)
    assert {(t.status, t.failure_reason) for t in moved} == {("failed", "provider_disabled")}
    assert claims.lock_holders([(a.pk, "view") for a in theirs if a.provider_id]) == [None, None]
    later = T0 + timedelta(minutes=1)
    tasks_generate(limit=10, now=later)
    live = TelegramTask.objects.filter(status="queued")
    assert live.count() == 2 and {t.provider_id for t in live} == {beta.pk}
    assert {t.telegram_account.provider_id for t in live} == {beta.pk}
    order.refresh_from_db()
    assert order.remains == 2  # nothing lost, nothing counted
    # Enabled again: its accounts are picked again.
    providers_enable(provider_ids=[alpha.pk], now=later)
    make_order(action="view", link="t.me/durov/8", quantity=4)
    tasks_generate(limit=10, now=later + timedelta(minutes=1))
    assert TelegramTask.objects.filter(provider=alpha, status="queued").count() == 2


def test_a_disabled_providers_lapsed_lease_and_late_queued_task_end_at_housekeeping():
    """A lease that ran out is not handed out again (provider_disabled at housekeeping, not
    after the grace), a release ends the task rather than queue it, and a task queued for it
    after the disable (a pass racing it) ends at the next housekeeping."""
    alpha, _ = new_provider("alpha")
    make_accounts(3, provider=alpha)
    make_order(action="view", link="t.me/durov/7", quantity=3)
    tasks_generate(limit=10, now=T0)
    [lapsing, released, _] = tasks_pull(limit=3, now=T0, provider=ref(alpha)).tasks
    Provider.objects.filter(pk=alpha.pk).update(enabled=False)  # (the race: step 1 only)
    on_commit(
        lambda: tasks_release(
            leases=[LeaseRef(released["task_id"], released["lease_id"])],
            now=T0,
            provider_id=alpha.pk,
        )
    )
    assert TelegramTask.objects.get(pk=released["task_id"]).failure_reason == "provider_disabled"
    # A pass that picked its account as it was being disabled: a task queued for it after.
    account = TelegramAccount.objects.filter(provider=alpha).last()
    late = make_task(
        make_order(action="view", link="t.me/durov/9", quantity=1), account,
        available_at=T0, reserved_until=T0 + timedelta(minutes=5),
    )  # fmt: skip
    summary = on_commit(lambda: tasks_housekeep(now=T0 + timedelta(seconds=61)))
    assert summary.ended["provider_disabled"] == 3  # two lapsed leases, the late task
    assert TelegramTask.objects.get(pk=lapsing["task_id"]).failure_reason == "provider_disabled"
    assert TelegramTask.objects.get(pk=late.pk).failure_reason == "provider_disabled"


def test_a_disabled_providers_memberships_wait_for_it_to_come_back():
    alpha, _ = new_provider("alpha")
    [account] = make_accounts(1, provider=alpha)
    order = make_order(action="subscribe", link="t.me/durovchan", quantity=1, duration_days=1)
    tasks_generate(limit=10, now=T0)
    [task] = tasks_pull(limit=1, now=T0, provider=ref(alpha)).tasks
    on_commit(lambda: tasks_report(reports=[ReportIn(task["task_id"], "done")], now=T0))
    Membership.objects.filter(order=order).update(due_at=T0)
    providers_disable(provider_ids=[alpha.pk], now=T0)
    later = T0 + timedelta(hours=1)
    assert tasks_generate(limit=10, now=later).unsubscribes == 0
    providers_enable(provider_ids=[alpha.pk], now=later)
    assert tasks_generate(limit=10, now=later + timedelta(minutes=1)).unsubscribes == 1
    unsubscribe = TelegramTask.objects.get(membership__isnull=False)
    assert (unsubscribe.provider_id, unsubscribe.telegram_account_id) == (alpha.pk, account.pk)


# --- routing -----------------------------------------------------------------------------------


def test_an_order_limited_to_some_providers_gets_only_their_accounts():
    alpha, _ = new_provider("alpha")
    beta, _ = new_provider("beta")
    make_accounts(3, provider=alpha)
    order = make_order(action="view", link="t.me/durov/7", quantity=2)
    order.providers.set([beta])
    summary = tasks_generate(limit=10, now=T0)
    assert summary.created == 0 and summary.refusals["no_provider"] == 2
    assert order.pass_stats.refusals == {"no_provider": 2}
    make_accounts(2, provider=beta)
    tasks_generate(limit=10, now=T0 + timedelta(minutes=1))
    assert {t.provider_id for t in TelegramTask.objects.all()} == {beta.pk}
    assert TelegramTask.objects.count() == 2
    # An unrouted order of the same action takes any provider's accounts.
    unrouted = make_order(action="view", link="t.me/durov/8", quantity=3)
    tasks_generate(limit=10, now=T0 + timedelta(minutes=2))
    assert TelegramTask.objects.filter(order=unrouted).count() == 3


def test_a_push_order_goes_to_the_providers_that_take_pushes():
    alpha, _ = new_provider("alpha")  # no push URL
    beta, _ = new_provider("beta", push_url="https://beta.example/push")
    make_accounts(2, provider=alpha)
    make_accounts(2, provider=beta)
    make_order(action="view", link="t.me/durov/7", quantity=2, execution_mode="push")
    make_order(action="view", link="t.me/durov/8", quantity=2)  # pull: anywhere
    tasks_generate(limit=10, now=T0)
    pushed = TelegramTask.objects.filter(execution_mode="push")
    assert {t.provider_id for t in pushed} == {beta.pk} and pushed.count() == 2


def test_a_panel_order_takes_its_services_providers():
    from decimal import Decimal

    from orders.models import Service
    from orders.services import customer_create
    from orders.services.placing import AddRequest, order_add

    beta, _ = new_provider("beta")
    service = Service.objects.create(name="Views (beta)", action="view", rate=Decimal("1"),
                                     min_quantity=1, max_quantity=100)  # fmt: skip
    service.providers.set([beta])
    _, key = customer_create(name="c", balance=Decimal("10"), actor="t", now=T0)
    from orders.customers import ApiKey

    made = order_add(
        key=ApiKey.objects.get(customer__name="c"),
        request=AddRequest(service=str(service.pk), link="t.me/durov/3", quantity="2"),
        now=T0,
    )
    from orders.models import Order

    assert list(Order.objects.get(pk=made).providers.all()) == [beta]
    assert key.key


# --- push, per provider ------------------------------------------------------------------------


def test_each_providers_pushes_are_signed_with_its_oldest_live_token():
    """A provider verifies with sha256(token) of a token it holds; the oldest live token signs,
    so a rotation (add, switch, revoke) never signs with a token it does not have yet."""
    beta, first = new_provider("beta", push_url="https://beta.example/push")
    assert signing_secret(beta.pk, is_default=False) == hashlib.sha256(first.encode()).hexdigest()
    second = provider_token_add(provider_id=beta.pk, now=T0 + timedelta(seconds=1))
    assert signing_secret(beta.pk, is_default=False) == hashlib.sha256(first.encode()).hexdigest()
    provider_token_revoke(provider_id=beta.pk, prefix=first, now=T0)
    key = signing_secret(beta.pk, is_default=False)
    assert key == hashlib.sha256(second.encode()).hexdigest()
    body = b'{"task_id":"x"}'
    header = push_transport.sign(body, key, 1_700_000_000)
    assert push_transport.verify(body, header, [hashlib.sha256(second.encode()).hexdigest()],
                       now=1_700_000_000)  # fmt: skip
    provider_token_revoke(provider_id=beta.pk, prefix=second, now=T0)
    [target] = [t for t in push_targets() if t.provider.id == beta.pk]
    assert target.secret is None  # nothing to sign with: not pushed to


def test_the_default_provider_keeps_signing_with_the_signing_secret(settings):
    settings.PROVIDER_TOKEN = "old-install-token-000000000000000000"
    settings.PUSH_SIGNING_SECRET = "a-signing-secret-11111111111111111111"
    settings.TELEGRAM_TASKS = {
        **settings.TELEGRAM_TASKS, "PROVIDER_PUSH_URL": "https://old.example/push",
    }  # fmt: skip
    [target] = push_targets()
    assert (target.provider.name, target.url) == ("default", "https://old.example/push")
    assert target.secret == settings.PUSH_SIGNING_SECRET
    settings.PUSH_SIGNING_SECRET = ""
    assert push_targets()[0].secret == settings.PROVIDER_TOKEN


@pytest.mark.django_db(transaction=True)
def test_one_providers_failures_open_its_circuit_only(settings):
    """Each provider's tasks go to its own URL with its own key; a fleet that is down opens its
    own circuit while the other's pushes go on, in the same passes."""
    settings.TELEGRAM_TASKS = {
        **settings.TELEGRAM_TASKS, "PUSH_BREAKER_FAILURES": 2, "PUSH_RETRY_SECONDS": 1,
    }  # fmt: skip
    down, _ = new_provider("down", push_url="https://down.example/push")
    up, _ = new_provider("up", push_url="https://up.example/push")
    make_accounts(3, provider=down)
    make_accounts(3, provider=up)
    for n in range(3):
        make_order(action="view", link=f"t.me/durov/{n + 1}", quantity=2, execution_mode="push")
    tasks_generate(limit=100, now=T0)
    sent: list[tuple[str, str, str]] = []
    lock = threading.Lock()

    def deliver(target: PushTarget, tasks):
        with lock:
            sent.extend((target.provider.name, target.url, t["task_id"]) for t in tasks)
        if target.provider.name == "down":
            return [Unreachable("down") for _ in tasks]
        return [Accepted() for _ in tasks]

    now = T0
    for _ in range(3):
        summary = tasks_push(now=now, deliver=deliver)
        now += timedelta(seconds=30)
    owner = dict(TelegramTask.objects.values_list("id", "provider__name"))
    assert all(owner[task] == name for name, _, task in sent)
    assert {url for name, url, _ in sent if name == "up"} == {"https://up.example/push"}
    assert summary.circuits == {"down": "open", "up": "closed"}
    assert push_breaker(now=now, provider_id=down.pk).state == "open"
    assert push_breaker(now=now, provider_id=up.pk).state == "closed"
    assert TelegramTask.objects.filter(provider=up, status="leased").count() == 3


@pytest.mark.django_db(transaction=True)
def test_several_dispatchers_at_once_send_each_task_once(settings):
    """No global pass lock: passes run side by side (threads with their own connections), the
    lease statement's SKIP LOCKED gives each task to one of them."""
    beta, _ = new_provider("beta", push_url="https://beta.example/push")
    make_accounts(30, provider=beta)
    for n in range(30):
        make_order(action="view", link=f"t.me/durov/{n + 1}", quantity=1, execution_mode="push")
    tasks_generate(limit=100, now=T0)
    sent: list[str] = []
    lock = threading.Lock()

    def deliver(target, tasks):
        with lock:
            sent.extend(t["task_id"] for t in tasks)
        return [Accepted() for _ in tasks]

    run_concurrently(lambda i: tasks_push(now=T0, deliver=deliver, limit=4), threads=4)
    run_concurrently(lambda i: tasks_push(now=T0, deliver=deliver, limit=4), threads=4)
    assert len(sent) == len(set(sent)) == 30


# --- long-poll, per provider -------------------------------------------------------------------


def test_a_waiting_pull_is_woken_by_its_own_providers_tasks_only():
    import json
    import time

    listener = waiting.Listener()
    listener._ensure_running = lambda: None  # (no thread: driven by hand)
    now = time.time()
    with (
        listener.registered(limit=5, accounts=None, provider=1) as one,
        listener.registered(limit=5, accounts=["acc-1"], provider=2) as two,
    ):
        listener.handle(json.dumps({"g": [[now, 3, ["acc-1"], 2]]}), now)
        assert not one.event.is_set() and two.event.is_set()
        listener.handle(json.dumps({"g": [[now, 3, None, 1]]}), now)
        assert one.event.is_set()
    with listener.registered(limit=5, accounts=None, provider=2) as old:
        listener.handle(json.dumps({"g": [[now, 1, None]]}), now)  # (an earlier version's)
        assert old.event.is_set()


@pytest.mark.django_db(transaction=True)
def test_a_long_poll_is_not_woken_by_another_providers_new_tasks(monkeypatch):
    """Beta's pull waits; alpha's new task is announced: beta's pull is not woken (it looks
    once, at the start, and answers empty at its deadline), while alpha's own waiting pull
    is woken and gets it."""
    from telegram_tasks.services import pull

    alpha, _ = new_provider("alpha")
    beta, _ = new_provider("beta")
    make_accounts(1, provider=alpha)
    make_accounts(1, provider=beta)
    routed = make_order(action="view", link="t.me/durov/7", quantity=1)
    routed.providers.set([alpha])
    looks: dict[int, int] = {alpha.pk: 0, beta.pk: 0}
    real = pull.lease_tasks

    def counted(**kwargs):
        looks[kwargs["provider_id"]] += 1
        return real(**kwargs)

    monkeypatch.setattr(pull, "lease_tasks", counted)
    answers: dict[str, list] = {}

    def wait(who: Provider, seconds: float) -> None:
        try:
            answers[who.name] = tasks_pull(
                limit=5,
                now=timezone.now(),
                provider=ref(who),
                wait_seconds=seconds,
                wait=waiting.lease_waiting,
            ).tasks
        finally:
            connections.close_all()

    waiting.LISTENER._ensure_running()  # listening before anyone waits (it wakes all on start)
    assert waiting.LISTENER.listening.wait(5)
    waiters = [
        threading.Thread(target=wait, args=(beta, 1.5)),
        threading.Thread(target=wait, args=(alpha, 5)),
    ]
    for w in waiters:
        w.start()
    deadline = time_now() + 5
    while waiting.LISTENER.sleeping < 2 and time_now() < deadline:
        threading.Event().wait(0.02)
    tasks_generate(limit=10, now=timezone.now())  # alpha's task, announced
    for w in waiters:
        w.join()
    # Beta looked when it came and at its deadline, never in between (not woken).
    assert answers["beta"] == [] and looks[beta.pk] == 2
    assert len(answers["alpha"]) == 1 and looks[alpha.pk] == 2  # woken, and served


def time_now() -> float:
    import time

    return time.monotonic()


# --- two providers at once ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_providers_pulling_and_reporting_at_once_never_touch_each_others_tasks(settings):
    """Real threads, each a provider's worker over the HTTP API: every task a worker is handed
    is its provider's, every report it sends is accepted, and every task ends done by its own
    provider."""
    from rest_framework.test import APIClient

    settings.PROVIDER_TOKEN = ""
    fleets = {}
    for name in ("alpha", "beta"):
        provider, token = new_provider(name)
        make_accounts(20, provider=provider)
        fleets[name] = (provider, token)
    for n in range(20):
        make_order(action="view", link=f"t.me/durov/{n + 1}", quantity=2)
    tasks_generate(limit=100, now=timezone.now())
    assert TelegramTask.objects.count() == 40

    def worker(i: int) -> list[tuple[str, int]]:
        provider, token = fleets["alpha" if i % 2 == 0 else "beta"]
        client = APIClient()
        client.credentials(HTTP_X_PROVIDER_TOKEN=token)
        seen = []
        while True:
            got = client.post("/api/provider/telegram/tasks/pull", {"limit": 3},
                              format="json").json()["tasks"]  # fmt: skip
            if not got:
                return seen
            for task in got:
                answer = client.post(
                    "/api/provider/telegram/tasks/report",
                    {"task_id": task["task_id"], "state": "done", "lease_id": task["lease_id"]},
                    format="json",
                )
                assert answer.status_code == 200, answer.content
                seen.append((task["task_id"], provider.pk))

    handed = [h for per in run_concurrently(worker, threads=6) for h in per]
    owner = dict(TelegramTask.objects.values_list("id", "provider_id"))
    assert len(handed) == len({t for t, _ in handed}) == 40
    assert all(owner[task] == provider for task, provider in handed)
    assert set(TelegramTask.objects.values_list("status", flat=True)) == {"done"}
