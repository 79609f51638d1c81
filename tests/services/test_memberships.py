"""Memberships: the ledger of who is in which channel, and the automatic unsubscribe of those
whose order bought a limited time. Time is moved through the ORM and ``now``."""

from datetime import UTC, datetime, timedelta

import pytest
from django.test import TestCase

from orders.models import Order
from telegram_tasks import claims
from telegram_tasks.claims import keys
from telegram_tasks.models import Membership, TelegramTask
from telegram_tasks.services import (
    ReportIn,
    claims_rebuild,
    tasks_generate,
    tasks_pull,
    tasks_report,
)
from tests.factories import make_accounts, make_order

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def run(now, *reports):
    with TestCase.captureOnCommitCallbacks(execute=True):
        return tasks_report(reports=list(reports), now=now)


def subscribe_all(now=T0, **order_fields):
    order = make_order(action="subscribe", link="t.me/durovchan", quantity=2, **order_fields)
    tasks_generate(limit=10, now=now)
    leased = tasks_pull(limit=10, now=now).tasks
    run(now, *[ReportIn(t["task_id"], "done") for t in leased])
    return order


def test_a_done_subscribe_opens_a_membership_and_an_unsubscribe_closes_it():
    make_accounts(2)
    order = subscribe_all(duration_days=30)
    memberships = Membership.objects.filter(order=order)
    assert memberships.count() == 2 and {m.state for m in memberships} == {"open"}
    assert {m.due_at for m in memberships} == {T0 + timedelta(days=30)}
    # A customer's explicit unsubscribe order closes them too.
    later = T0 + timedelta(minutes=5)
    make_order(action="unsubscribe", link="t.me/durovchan", quantity=2)
    tasks_generate(limit=10, now=later)
    run(later, *[ReportIn(t["task_id"], "done") for t in tasks_pull(limit=10, now=later).tasks])
    assert {m.state for m in Membership.objects.all()} == {"closed"}
    assert {m.unsubscribed_at for m in Membership.objects.all()} == {later}


def test_a_due_membership_gets_exactly_one_unsubscribe_for_the_same_account():
    accounts = make_accounts(3)
    order = subscribe_all(duration_days=30)
    [m1, m2] = Membership.objects.filter(order=order).order_by("id")
    # Time passes: one membership's 30 days are up.
    Membership.objects.filter(pk=m1.pk).update(
        subscribed_at=T0 - timedelta(days=31), due_at=T0 - timedelta(days=1)
    )
    later = T0 + timedelta(minutes=5)
    summary = tasks_generate(limit=10, now=later)
    assert summary.unsubscribes == 1
    [task] = TelegramTask.objects.filter(action="unsubscribe")
    assert (task.telegram_account_id, task.link_hash, task.membership_id, task.order_id) == (
        m1.account_id, m1.link_hash, m1.pk, order.pk
    )  # fmt: skip
    assert tasks_generate(limit=10, now=later + timedelta(seconds=1)).unsubscribes == 0
    order.refresh_from_db()
    remains = order.remains
    [leased] = [t for t in tasks_pull(limit=10, now=later).tasks if t["action"] == "unsubscribe"]
    run(later, ReportIn(leased["task_id"], "done"))
    m1.refresh_from_db()
    assert (m1.state, m1.unsubscribed_at, m1.unsubscribe_task_id) == (
        "closed", later, leased["task_id"]
    )  # fmt: skip
    order.refresh_from_db()
    assert order.remains == remains  # an automatic unsubscribe delivers none of the order's units
    assert Membership.objects.get(pk=m2.pk).state == "open"
    assert len(accounts) == 3


def test_a_failed_unsubscribe_is_retried_after_a_backoff():
    make_accounts(1)
    order = subscribe_all(duration_days=1)
    Membership.objects.filter(order=order).update(due_at=T0)
    t1 = T0 + timedelta(minutes=2)
    assert tasks_generate(limit=10, now=t1).unsubscribes == 1
    [leased] = tasks_pull(limit=10, now=t1).tasks
    run(t1, ReportIn(leased["task_id"], "failed", error_code="SOMETHING_ELSE"))
    assert Membership.objects.get().state == "open"
    assert tasks_generate(limit=10, now=t1 + timedelta(seconds=30)).unsubscribes == 0
    assert tasks_generate(limit=10, now=t1 + timedelta(seconds=61)).unsubscribes == 1
    assert Membership.objects.get().attempts == 2


def test_an_automatic_unsubscribe_runs_after_its_order_completed_or_was_canceled():
    from telegram_tasks.services import orders_cancel

    make_accounts(1)
    order = make_order(action="subscribe", link="t.me/durovchan", quantity=1, duration_days=1)
    tasks_generate(limit=10, now=T0)
    run(T0, *[ReportIn(t["task_id"], "done") for t in tasks_pull(limit=10, now=T0).tasks])
    order.refresh_from_db()
    assert order.status == Order.Status.COMPLETED
    Membership.objects.update(due_at=T0)
    t1 = T0 + timedelta(minutes=2)
    tasks_generate(limit=10, now=t1)
    with TestCase.captureOnCommitCallbacks(execute=True):
        orders_cancel(order_ids=[order.pk], now=t1)  # completed: nothing to cancel
    [leased] = tasks_pull(limit=10, now=t1).tasks
    assert leased["action"] == "unsubscribe"


def test_migration_turns_done_subscribes_into_open_memberships(redis_client):
    import importlib

    from django.apps import apps
    from django.db import connection

    migration = importlib.import_module("telegram_tasks.migrations.0007_tiers_memberships")
    make_accounts(2)
    subscribe_all()
    Membership.objects.all().delete()  # as before memberships existed
    with connection.schema_editor() as editor:
        migration.open_memberships_of_done_subscribes(apps, editor)
    assert Membership.objects.filter(state="open", due_at=None).count() == 2


def test_rebuild_restores_channel_counts_and_link_states(redis_client, redis_prefix):
    accounts = make_accounts(2)
    subscribe_all()
    expected = {a.pk: redis_client.get(keys.channels(a.pk)) for a in accounts}
    assert set(expected.values()) == {b"1"}
    for key in redis_client.scan_iter(match=f"{redis_prefix}*"):
        redis_client.delete(key)
    claims_rebuild(now=T0 + timedelta(minutes=1))
    assert {a.pk: redis_client.get(keys.channels(a.pk)) for a in accounts} == expected
    # Subscribed again? No: the state came back from the memberships.
    order = Order.objects.get()
    refusal = claims.reserve(
        claims.Claim(accounts[0].pk, "subscribe", claims.Target(order.link_hash), "again"),
        now=T0 + timedelta(minutes=2),
    )
    assert refusal is claims.Refusal.GATE


@pytest.mark.django_db(transaction=True)
def test_accounts_at_their_channel_limit_are_never_handed_another_subscribe(settings):
    """Invariant 9, through the whole path and with concurrent reporters."""
    from tests.concurrency import run_concurrently

    settings.TELEGRAM_TASKS = {
        **settings.TELEGRAM_TASKS,
        "ACTIONS": {"subscribe": {"cooldown": 0, "daily_cap": None}},
        "TIERS": {"default": {"max_channels": 3}},
    }
    accounts = make_accounts(4)
    for i in range(8):
        make_order(action="subscribe", link=f"t.me/limitchan{i}", quantity=4)
    now = T0
    for _ in range(10):
        tasks_generate(limit=100, now=now)
        leased = tasks_pull(limit=100, now=now).tasks
        run_concurrently(
            lambda i, leased=leased, now=now: tasks_report(
                reports=[ReportIn(t["task_id"], "done") for t in leased[i::4]], now=now
            ),
            threads=4,
        )
        now += timedelta(seconds=1)
    for a in accounts:
        assert Membership.objects.filter(account=a, state="open").count() <= 3
    assert Membership.objects.filter(state="open").count() == 12  # every account full


@pytest.mark.parametrize("code", ["USER_NOT_PARTICIPANT", "CHANNEL_PRIVATE"])
def test_an_unsubscribe_from_a_channel_the_account_left_ends_the_membership(code, redis_client):
    [account] = make_accounts(1)
    order = subscribe_all(duration_days=1)
    assert int(redis_client.get(keys.channels(account.pk))) == 1
    Membership.objects.update(due_at=T0)
    t1 = T0 + timedelta(minutes=2)
    tasks_generate(limit=10, now=t1)
    [leased] = tasks_pull(limit=10, now=t1).tasks
    run(t1, ReportIn(leased["task_id"], "failed", error_code=code))
    membership = Membership.objects.get()
    assert (membership.state, membership.unsubscribed_at) == ("closed", t1)
    assert int(redis_client.get(keys.channels(account.pk))) == 0
    assert redis_client.get(keys.state(account.pk, order.link_hash)).startswith(b"unsubscribed@")
    order.refresh_from_db()
    assert order.status == Order.Status.IN_PROGRESS  # a gone channel does not stop the order


def test_a_subscription_keeps_its_state_for_as_long_as_it_lasts(redis_client):
    [account] = make_accounts(1)
    order = subscribe_all()
    assert redis_client.pttl(keys.state(account.pk, order.link_hash)) == -1  # no expiry


def test_a_membership_whose_order_was_deleted_still_unsubscribes_and_stops_no_pass():
    """A subscribe order deleted after its tasks were purged leaves its memberships without an
    order (the contract allows it): their automatic unsubscribes run with no order, and the
    pass serves every other order as usual."""
    make_accounts(2)
    gone = subscribe_all(duration_days=1)
    TelegramTask.objects.filter(order=gone).delete()  # (retention purged them)
    gone.delete()
    Membership.objects.update(due_at=T0)
    other = make_order(action="view", link="t.me/news/7", quantity=1)
    t1 = T0 + timedelta(minutes=2)
    summary = tasks_generate(limit=10, now=t1)
    assert (summary.unsubscribes, summary.created, summary.failed) == (2, 3, 0)
    unsubscribes = TelegramTask.objects.filter(action="unsubscribe")
    assert {t.order_id for t in unsubscribes} == {None}
    assert TelegramTask.objects.filter(order=other).count() == 1
    leased = [t for t in tasks_pull(limit=10, now=t1).tasks if t["action"] == "unsubscribe"]
    assert len(leased) == 2 and {t["order_id"] for t in leased} == {None}
    run(t1, *[ReportIn(t["task_id"], "done") for t in leased])
    assert {m.state for m in Membership.objects.all()} == {"closed"}


def poison_inserts(cursor_sql: str) -> None:
    """A trigger that refuses some inserted tasks: a row the pass cannot store, whatever the
    cause (the pass must skip it and serve the others)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION tg_test_poison() RETURNS trigger AS $$ BEGIN "
            f"IF {cursor_sql} THEN RAISE EXCEPTION 'poison' USING ERRCODE = '23514'; END IF; "
            "RETURN NEW; END $$ LANGUAGE plpgsql"
        )
        cursor.execute(
            "CREATE TRIGGER tg_test_poison BEFORE INSERT ON telegram_tasks "
            "FOR EACH ROW EXECUTE FUNCTION tg_test_poison()"
        )


def test_one_poison_membership_is_skipped_and_backed_off_the_others_unsubscribe(caplog):
    accounts = make_accounts(3)
    order = subscribe_all(duration_days=1)
    make_order(action="subscribe", link="t.me/durovchan", quantity=1, duration_days=1)
    Membership.objects.update(due_at=T0)
    [bad, *good] = Membership.objects.order_by("id")
    poison_inserts(f"NEW.membership_id = {bad.pk}")
    t1 = T0 + timedelta(minutes=2)
    summary = tasks_generate(limit=10, now=t1)
    assert (summary.unsubscribes, summary.failed) == (len(good), 1)
    assert "automatic unsubscribe of membership" in caplog.text
    made = set(
        TelegramTask.objects.filter(action="unsubscribe").values_list("membership_id", flat=True)
    )
    assert made == {m.pk for m in good}
    bad.refresh_from_db()
    assert bad.next_attempt_at > t1 and bad.attempts == 1
    # The bad one's reservation was given back: its account's unsubscribe lock is free.
    assert claims.lock_holders([(bad.account_id, "unsubscribe")]) == [None]
    assert order.pk and len(accounts) == 3


def test_one_poison_order_is_skipped_and_every_other_order_is_served(caplog):
    accounts = make_accounts(10)
    orders = [make_order(action="view", link=f"t.me/news/{i}", quantity=1) for i in range(1, 8)]
    bad = orders[3]
    poison_inserts(f"NEW.order_id = {bad.pk}")
    summary = tasks_generate(limit=100, now=T0)
    assert summary.failed == 1
    assert f"order {bad.pk} skipped" in caplog.text
    served = set(TelegramTask.objects.values_list("order_id", flat=True))
    assert served == {o.pk for o in orders} - {bad.pk}
    # No reservation outlives the bad order's attempts: every view lock belongs to a task.
    holders = claims.lock_holders([(a.pk, "view") for a in accounts])
    live = set(TelegramTask.objects.values_list("id", flat=True))
    assert {h for h in holders if h} <= live
    # The next pass tries it again (still bad) and serves the rest as usual.
    assert tasks_generate(limit=100, now=T0 + timedelta(seconds=61)).failed == 1
