"""What each action needs beyond its link, through the services: the params each task carries
(pulled, pushed, replayed), a mix of emoji taken in turn over every pass, a bot start keyed by
the bot, and Telegram's refusals of a parameter (REACTION_INVALID, MESSAGE_ID_INVALID)."""

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from django.test import TestCase

from orders.models import Order
from telegram_tasks.models import OrderTurn, TelegramTask
from telegram_tasks.services import (
    ReportIn,
    tasks_generate,
    tasks_pull,
    tasks_push,
    tasks_report,
)
from telegram_tasks.services.dispatch import Accepted
from tests.factories import make_accounts, make_order, push_target

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
MIX = ["👍", "❤️", "🔥"]

ORDERS = {
    "reaction": ({"link": "t.me/durov/7", "params": {"reactions": ["🎉"]}}, {"reaction": "🎉"}),
    "poll_vote": ({"link": "t.me/durov/8", "params": {"option": 2}}, {"option": 2}),
    "bot_start": ({"link": "t.me/ShopBot?start=ref123"}, {"start_param": "ref123"}),
    "bot_start_plain": ({"link": "t.me/shopbot"}, {}),
    "view": ({"link": "t.me/durov/9"}, {}),
    "subscribe": ({"link": "t.me/durov"}, {}),
}


def report(*reports, at=T0):
    with TestCase.captureOnCommitCallbacks(execute=True):
        return tasks_report(reports=list(reports), now=at)


@pytest.mark.parametrize("kind", ORDERS)
def test_pulled_and_replayed_tasks_carry_their_params(kind):
    make_accounts(2)
    fields, expected = ORDERS[kind]
    action = kind.removesuffix("_plain")
    make_order(action=action, quantity=2, **fields)
    tasks_generate(limit=10, now=T0)
    pulled = tasks_pull(limit=10, now=T0, request_id="r1").tasks
    assert [t["params"] for t in pulled] == [expected, expected]
    assert [t["action"] for t in pulled] == [action, action]
    replayed = tasks_pull(limit=10, now=T0, request_id="r1")
    assert replayed.replayed and [t["params"] for t in replayed.tasks] == [expected] * 2


@pytest.mark.parametrize("kind", ORDERS)
def test_pushed_tasks_carry_their_params(kind):
    make_accounts(1)
    fields, expected = ORDERS[kind]
    make_order(action=kind.removesuffix("_plain"), quantity=1, execution_mode="push", **fields)
    tasks_generate(limit=10, now=T0)
    sent = []

    def deliver(target, tasks):
        sent.extend(tasks)
        return [Accepted() for _ in tasks]

    assert tasks_push(now=T0, deliver=deliver, targets=[push_target()]).leased == 1
    assert [t["params"] for t in sent] == [expected]


def test_a_task_made_before_params_is_handed_out_with_empty_params():
    make_accounts(1)
    make_order(action="view", link="t.me/durov/9", quantity=1)
    tasks_generate(limit=10, now=T0)
    task = TelegramTask.objects.get()
    task.payload.pop("params")
    task.save(update_fields=["payload"])
    [pulled] = tasks_pull(limit=10, now=T0).tasks
    assert pulled["params"] == {}


# --- a mix, in turn -------------------------------------------------------------------------


def emoji_of(order):
    tasks = TelegramTask.objects.filter(order=order).order_by("id")
    return [t.payload["params"]["reaction"] for t in tasks]


def test_a_mix_is_spread_evenly_over_the_orders_tasks_across_passes():
    make_accounts(300)
    order = make_order(action="reaction", link="t.me/durov/5", quantity=300,
                       params={"reactions": MIX})  # fmt: skip
    at = T0
    for _ in range(8):  # 50 tasks an order per pass: several passes
        tasks_generate(limit=1000, now=at)
        at += timedelta(seconds=1)
    made = emoji_of(order)
    assert len(made) == 300
    assert Counter(made) == {"👍": 100, "❤️": 100, "🔥": 100}
    assert made[:6] == MIX * 2  # in turn, not in runs
    assert OrderTurn.objects.get(order=order).made == 300


def test_the_turn_goes_on_after_failed_tasks_and_across_pulls():
    """A failed task is replaced by a new task with the next turn: a mix stays even over the
    tasks made, whatever fails."""
    make_accounts(6)
    order = make_order(action="reaction", link="t.me/durov/5", quantity=6,
                       params={"reactions": MIX})  # fmt: skip
    tasks_generate(limit=2, now=T0)
    first = tasks_pull(limit=10, now=T0).tasks
    report(*(ReportIn(t["task_id"], "failed", error_code="INTERNAL") for t in first))
    tasks_generate(limit=10, now=T0 + timedelta(seconds=1))
    assert emoji_of(order) == MIX * 2 + MIX[:2]


def test_single_emoji_and_other_actions_keep_no_turn():
    make_accounts(2)
    make_order(action="reaction", link="t.me/durov/5", quantity=2)
    make_order(action="poll_vote", link="t.me/durov/6", quantity=2, params={"option": 3})
    tasks_generate(limit=10, now=T0)
    assert TelegramTask.objects.count() == 4
    assert not OrderTurn.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_passes_never_share_a_turn():
    from tests.concurrency import run_concurrently

    make_accounts(60)
    orders = [
        make_order(action="reaction", link=f"t.me/durov/{i + 1}", quantity=30,
                   params={"reactions": MIX[: 2 + i % 2]})
        for i in range(4)
    ]  # fmt: skip
    for step in range(3):
        run_concurrently(
            lambda i, step=step: tasks_generate(limit=20, now=T0 + timedelta(seconds=step)), 2
        )
    for order in orders:
        made = emoji_of(order)
        mix = order.params["reactions"]
        assert made == [mix[k % len(mix)] for k in range(len(made))]
        assert OrderTurn.objects.get(order=order).made == len(made)


def test_an_order_with_invalid_params_written_around_the_model_gets_no_task():
    make_accounts(2)
    bad = make_order(action="reaction", link="t.me/durov/5", quantity=2)
    Order.objects.filter(pk=bad.pk).update(params={})  # a bulk write skips save()
    good = make_order(action="view", link="t.me/durov/6", quantity=1)
    summary = tasks_generate(limit=10, now=T0)
    assert summary.created == 1 and summary.refusals["invalid_params"] == 1
    assert list(TelegramTask.objects.values_list("order_id", flat=True)) == [good.pk]
    bad.refresh_from_db()
    assert bad.pass_stats.refusals == {"invalid_params": 1} and bad.pass_stats.troubled
    assert bad.next_run_at > T0  # behind the orders waiting longer, as a starved order


# --- bot starts: one per account and bot ---------------------------------------------------


def test_two_start_links_of_one_bot_are_one_target_for_the_dedupe():
    [account] = make_accounts(1)
    one = make_order(action="bot_start", link="t.me/ShopBot?start=a", quantity=1)
    two = make_order(action="bot_start", link="https://t.me/shopbot?start=b", quantity=1)
    assert one.link_hash == two.link_hash
    tasks_generate(limit=10, now=T0)
    [task] = tasks_pull(limit=10, now=T0).tasks  # one lock per account and action
    report(ReportIn(task["task_id"], "done"))
    later = T0 + timedelta(hours=1)
    summary = tasks_generate(limit=10, now=later)
    assert summary.created == 0 and summary.refusals == {"dedupe": 1}
    assert TelegramTask.objects.filter(telegram_account=account).count() == 1


# --- Telegram refuses a parameter ------------------------------------------------------------


def mix_order(reactions, quantity=6, accounts=6):
    make_accounts(accounts)
    order = make_order(action="reaction", link="t.me/durov/5", quantity=quantity,
                       params={"reactions": reactions})  # fmt: skip
    tasks_generate(limit=100, now=T0)
    return order


def test_reaction_invalid_on_one_emoji_of_a_mix_drops_only_that_emoji():
    order = mix_order(MIX)
    pulled = tasks_pull(limit=2, now=T0).tasks  # 👍 and ❤️ handed out; the rest queued
    heart = next(t for t in pulled if t["params"]["reaction"] == "❤️")
    [out] = report(ReportIn(heart["task_id"], "failed", error_code="REACTION_INVALID"))
    assert out.status == "failed"
    order.refresh_from_db()
    assert order.status == Order.Status.IN_PROGRESS
    assert order.params == {"reactions": ["👍", "🔥"]}
    by_emoji = Counter(
        (t.payload["params"]["reaction"], t.status, t.failure_reason)
        for t in TelegramTask.objects.filter(order=order)
    )
    # The refused task and the other queued ❤️ fail; every other task goes on.
    assert by_emoji == {
        ("👍", "leased", ""): 1,
        ("👍", "queued", ""): 1,
        ("🔥", "queued", ""): 2,
        ("❤️", "failed", "reaction_invalid"): 2,
    }
    tasks_generate(limit=100, now=T0 + timedelta(seconds=1))
    new = TelegramTask.objects.filter(order=order, status="queued")
    assert "❤️" not in {t.payload["params"]["reaction"] for t in new}
    assert TelegramTask.objects.filter(order=order, status__in=["queued", "leased"]).count() == 6


def test_reaction_invalid_on_the_only_emoji_ends_the_order_as_the_broker_stops_it():
    order = mix_order(["👍"], quantity=3, accounts=3)
    a, b, _ = tasks_pull(limit=10, now=T0).tasks
    report(ReportIn(a["task_id"], "done"))
    report(ReportIn(b["task_id"], "failed", error_code="REACTION_INVALID"))
    order.refresh_from_db()
    assert order.status == Order.Status.PARTIAL  # one delivered
    assert order.params == {"reactions": ["👍"]}  # what it was bought with
    reasons = Counter(TelegramTask.objects.filter(order=order).values_list("failure_reason"))
    assert reasons == {("",): 1, ("reaction_invalid",): 2}


def test_the_last_emoji_of_a_mix_refused_ends_the_order():
    order = mix_order(["👍", "🔥"], quantity=2, accounts=2)
    a, b = tasks_pull(limit=10, now=T0).tasks
    report(ReportIn(a["task_id"], "failed", error_code="REACTION_INVALID"))
    order.refresh_from_db()
    assert order.status == Order.Status.IN_PROGRESS and len(order.params["reactions"]) == 1
    report(ReportIn(b["task_id"], "failed", error_code="REACTION_INVALID"))
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELED  # nothing was delivered


def test_a_late_second_refusal_of_a_dropped_emoji_changes_nothing():
    order = mix_order(MIX, quantity=6, accounts=6)
    pulled = tasks_pull(limit=10, now=T0).tasks
    fires = [t for t in pulled if t["params"]["reaction"] == "🔥"]
    report(ReportIn(fires[0]["task_id"], "failed", error_code="REACTION_INVALID"))
    report(ReportIn(fires[1]["task_id"], "failed", error_code="REACTION_INVALID"))
    order.refresh_from_db()
    assert order.status == Order.Status.IN_PROGRESS
    assert order.params == {"reactions": ["👍", "❤️"]}


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("MESSAGE_ID_INVALID", "post_unavailable"),
        ("MSG_ID_INVALID", "post_unavailable"),
        ("MESSAGE_POLL_CLOSED", "poll_closed"),
        ("OPTION_INVALID", "option_invalid"),
    ],
)
def test_a_post_gone_or_a_poll_refusal_ends_the_order(code, reason):
    make_accounts(3)
    order = make_order(action="poll_vote", link="t.me/durov/5", quantity=3, params={"option": 4})
    tasks_generate(limit=100, now=T0)
    a, *_ = tasks_pull(limit=10, now=T0).tasks
    report(ReportIn(a["task_id"], "failed", error_code=code))
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELED
    assert set(TelegramTask.objects.values_list("status", "failure_reason")) == {("failed", reason)}


def test_a_refused_start_parameter_ends_the_bot_start_order():
    make_accounts(2)
    order = make_order(action="bot_start", link="t.me/shopbot?start=bad", quantity=2)
    tasks_generate(limit=100, now=T0)
    a, _ = tasks_pull(limit=10, now=T0).tasks
    report(ReportIn(a["task_id"], "failed", error_code="START_PARAM_INVALID"))
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELED
    assert set(TelegramTask.objects.values_list("failure_reason", flat=True)) == {
        "start_param_invalid"
    }
