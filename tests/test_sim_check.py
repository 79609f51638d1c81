"""The simulation's checker catches each kind of violation (a checker that cannot fail proves
nothing)."""

from datetime import UTC, datetime, timedelta

import pytest

from sim import check
from telegram_tasks.models import TelegramTask
from tests.factories import make_account, make_order, make_task

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def done(order, account, at, **kw):
    return make_task(order, account, status="done", finished_at=at, lease_id="L", **kw)


def test_clean_history_passes():
    a = make_account()
    order = make_order(action="view", link="t.me/durov/1", quantity=2)
    done(order, a, T0)
    order.remains = 1
    order.save()
    history = check.done_tasks()
    assert check.check_caps(history) == check.check_cooldowns(history) == []
    assert check.check_one_shot(history) == check.check_remains(history) == []


def test_each_violation_is_reported(settings):
    a = make_account()
    view = make_order(action="view", link="t.me/durov/1", quantity=9)
    done(view, a, T0)
    done(view, a, T0 + timedelta(seconds=1))  # 1 s apart: view cooldown is 5 s; and one-shot
    sub = make_order(action="subscribe", link="t.me/durov", quantity=9)
    done(sub, a, T0)
    done(sub, a, T0 + timedelta(minutes=5))  # subscribed twice
    history = check.done_tasks()
    assert check.check_cooldowns(history)
    assert check.check_one_shot(history)
    assert check.check_subscriptions(history)
    assert check.check_remains(history)  # remains was never decreased
    settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, "ACTIONS": {"view": {"daily_cap": 1}}}
    assert check.check_caps(check.done_tasks())


def test_overlapping_hand_outs_and_lost_tasks_are_reported():
    until = T0 + timedelta(seconds=60)
    events = [
        {"ev": "lease", "task": "A", "lease": "1", "until": until.isoformat(), "t": 0},
        {
            "ev": "lease",
            "task": "A",
            "lease": "2",
            "until": (until + timedelta(seconds=30)).isoformat(),
            "t": 1,
        },
    ]
    assert check.check_leases(events)
    make_task(make_order(action="view", quantity=1))
    assert check.check_no_lost_tasks()
    assert TelegramTask.objects.count() == 1


def test_a_subscribe_handed_out_while_another_lives_is_reported():
    a = make_account()
    sub = make_order(action="subscribe", link="t.me/durov", quantity=9)
    first = done(sub, a, T0 + timedelta(seconds=30))
    second = make_task(
        sub, a, status="failed", finished_at=T0 + timedelta(seconds=40), lease_id="M"
    )
    events = [
        {
            "ev": "lease",
            "task": first.pk,
            "lease": "L",
            "until": (T0 + timedelta(seconds=60)).isoformat(),
            "t": 0,
        },
        {
            "ev": "lease",
            "task": second.pk,
            "lease": "M",
            "until": (T0 + timedelta(seconds=70)).isoformat(),
            "t": 0,
        },
    ]
    found = check.check_subscriptions(check.done_tasks(), events)
    assert any("in flight" in line for line in found)


def test_tier_limits_and_memberships_violations_are_reported(settings):
    from telegram_tasks.models import Membership

    settings.TELEGRAM_TASKS = {
        **settings.TELEGRAM_TASKS,
        "TIERS": {"tight": {"max_channels": 1, "account_cooldown": 60, "account_daily_cap": 2}},
    }
    a = make_account(tier="tight")
    snap = {"account": {"tier": "tight"}, "post_id": None}
    view = make_order(action="view", link="t.me/durov/1", quantity=9)
    react = make_order(action="reaction", link="t.me/durov/2", quantity=9)
    done(view, a, T0, payload={**snap, "post_id": 1})
    done(react, a, T0 + timedelta(seconds=10), payload={**snap, "post_id": 2})  # < 60 s apart
    done(view, a, T0 + timedelta(minutes=5), payload={**snap, "post_id": 3})  # a third today
    history = check.done_tasks()
    found = check.check_account_limits(history)
    assert any("account cooldown" in f for f in found) and any("account cap" in f for f in found)
    for link in ("aa", "bb"):  # two channels at once, one allowed
        Membership.objects.create(account=a, link_hash=link * 32, link=link, subscribed_at=T0)
    assert check.check_channels()
    due = Membership.objects.create(
        account=a, link_hash="c" * 64, link="c", subscribed_at=T0, due_at=T0, state="closed",
        unsubscribed_at=T0,
    )  # fmt: skip
    for when in (T0, T0 + timedelta(seconds=1)):  # unsubscribed twice
        done(view, a, when, membership=due, action="unsubscribe", link_hash="c" * 64, payload=snap)
    assert any("2 times" in f for f in check.check_auto_unsubscribes(check.done_tasks()))


def test_tasks_without_what_their_action_needs_are_reported():
    from telegram_tasks.models import OrderTurn

    a = make_account()
    mix = make_order(action="reaction", link="t.me/durov/3", quantity=9,
                     params={"reactions": ["👍", "🔥"]})  # fmt: skip
    poll = make_order(action="poll_vote", link="t.me/durov/4", quantity=9, params={"option": 2})
    bot = make_order(action="bot_start", link="t.me/shopbot?start=r1", quantity=9)
    view = make_order(action="view", link="t.me/durov/5", quantity=9)
    for emoji in ("👍", "🔥", "👍"):
        make_task(mix, a, payload={"params": {"reaction": emoji}})
    make_task(poll, a, payload={"params": {"option": 2}})
    make_task(bot, a, payload={"params": {"start_param": "r1"}})
    make_task(view, a, payload={"params": {}})
    OrderTurn.objects.create(order=mix, made=3)
    assert check.check_params([]) == []
    make_task(mix, a, payload={"params": {"reaction": "👍"}})  # out of turn: 🔥's
    make_task(poll, a, payload={"params": {"option": 3}})
    make_task(bot, a, payload={"params": {}})
    make_task(view, a, payload={"params": {"reaction": "👍"}})
    found = check.check_params([{"ev": "bad_params", "task": "X", "problem": "no emoji"}])
    assert len(found) == 6, found
    assert any("in turn" in f for f in found) and any("its turn says 3" in f for f in found)
    assert any("no emoji" in f for f in found)


def test_a_task_made_with_an_emoji_after_its_refusal_is_reported():
    from telegram_tasks.ulid import ulid_floor

    a = make_account()
    order = make_order(action="reaction", link="t.me/durov/3", quantity=9,
                       params={"reactions": ["👍"]})  # fmt: skip
    make_task(order, a, payload={"params": {"reaction": "🤡"}}, status="failed",
              failure_reason="reaction_invalid", finished_at=T0,
              id=ulid_floor(T0 - timedelta(seconds=5)))  # fmt: skip
    assert check.check_params([]) == []
    make_task(order, a, payload={"params": {"reaction": "🤡"}})  # made now, long after
    found = check.check_params([])
    assert len(found) == 1 and "after its refusal" in found[0]


def test_money_check_catches_an_unsettled_end_and_a_tampered_balance():
    from decimal import Decimal

    from django.test import Client

    from orders.customers import Customer
    from orders.models import Order
    from orders.services import orders_settle_due
    from tests.panel_world import make_customer, make_service

    customer, key = make_customer("sim-check", "10")
    service = make_service(rate=Decimal("2"))
    pk = Client().post("/api/v2", {"key": key, "action": "add", "service": service.pk,
                                   "link": "t.me/chk_chan/1", "quantity": 5}).json()["order"]  # fmt: skip
    assert check.check_money() == []
    Order.objects.filter(pk=pk).update(status="canceled")  # ended, never settled
    assert [v for v in check.check_money() if f"order {pk}" in v]
    orders_settle_due(now=T0)
    assert check.check_money() == []
    Customer.objects.filter(pk=customer.pk).update(balance=Decimal("11"))
    assert len(check.check_money()) == 2  # the ledger's sum and the orders' net both differ


def test_a_task_handed_to_another_provider_or_off_its_route_is_reported():
    from django.utils import timezone

    from telegram_tasks.services.providers import providers_create

    alpha, _ = providers_create(name="alpha", now=timezone.now())
    beta, _ = providers_create(name="beta", now=timezone.now())
    mine = make_account(provider=alpha)
    order = make_order(action="view", link="t.me/durov/1", quantity=3)
    task = make_task(order, mine)
    own = {"ev": "lease", "task": task.pk, "fleet": "alpha", "t": 0}
    assert check.check_isolation([own]) == []
    assert check.check_isolation([{**own, "fleet": "beta"}])
    order.providers.set([beta])  # routed elsewhere: its task is off its route
    assert check.check_isolation([own])
    order.providers.set([alpha])
    TelegramTask.objects.filter(pk=task.pk).update(provider=beta)  # not its account's
    assert check.check_isolation([])
    assert check.fleet_of(check.Path("provider-east-3.jsonl")) == "east"
    assert check.fleet_of(check.Path("push-east.jsonl")) == "east"
    assert check.fleet_of(check.Path("provider-3.jsonl")) is None


def test_a_disabled_provider_handed_or_given_work_is_reported():
    from django.utils import timezone

    from telegram_tasks.services.providers import providers_create, providers_disable

    west, _ = providers_create(name="west", now=timezone.now())
    at = timezone.now().timestamp()
    providers_disable(provider_ids=[west.pk], now=timezone.now())
    before = {"ev": "lease", "task": "T", "fleet": "west", "t": at - 5}
    assert check.check_disabled([before], {"west": at}) == []
    assert check.check_disabled([{**before, "t": at + 5}], {"west": at})
    order = make_order(action="view", link="t.me/durov/1", quantity=3)
    make_task(order, make_account(provider=west))  # made now, after "disabled at" - 3 s
    assert check.check_disabled([], {"west": at - 3})
