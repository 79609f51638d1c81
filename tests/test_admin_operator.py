"""The admin as an operator runs the farm with it: accounts as Redis sees them, their actions,
an order's progress and latest tasks, forms that say everything wrong at once, the task page's
buttons."""

import re
from datetime import timedelta

import pytest
from django.test import TestCase
from django.utils import timezone

from orders.models import Order
from telegram_tasks.models import TelegramAccount, TelegramTask
from telegram_tasks.services import ReportIn, tasks_generate, tasks_pull, tasks_report
from tests.factories import make_accounts, make_order
from tests.test_admin_permissions import act, staff

pytestmark = pytest.mark.django_db
ACCOUNTS = "/admin/telegram_tasks/telegramaccount/"
TASKS = "/admin/telegram_tasks/telegramtask/"
ORDERS = "/admin/orders/order/"


def done(task, now):
    with TestCase.captureOnCommitCallbacks(execute=True):
        tasks_report(reports=[ReportIn(task["task_id"], "done")], now=now)


@pytest.fixture
def farm(settings):
    """Three accounts: one just did a view (cooling, capped at 1 a day), one holds a live view
    task, one is held by a flood wait; and one inactive."""
    settings.TELEGRAM_TASKS = {
        **settings.TELEGRAM_TASKS,
        "ACTIONS": {**settings.TELEGRAM_TASKS.get("ACTIONS", {}),
                    "view": {"cooldown": 600, "daily_cap": 1, "one_shot": True}},
    }  # fmt: skip
    _busy, _working, held = make_accounts(3)
    make_accounts(1, is_active=False)
    now = timezone.now()
    make_order(action="view", link="t.me/durov/5", quantity=2)
    tasks_generate(limit=10, now=now)
    first, _second = tasks_pull(limit=10, now=now).tasks
    done(first, now)
    TelegramAccount.objects.filter(pk=held.pk).update(held_until=now + timedelta(hours=1))
    return TelegramAccount.objects.get(provider_account_id=first["account"]["provider_account_id"])


def test_accounts_list_shows_what_redis_says_in_one_round_trip(admin_client, farm, monkeypatch):
    from redis.client import Pipeline

    calls = []
    real = Pipeline.execute
    monkeypatch.setattr(
        Pipeline, "execute", lambda self, *a, **k: calls.append(1) or real(self, *a, **k)
    )
    page = admin_client.get(ACCOUNTS).content.decode()
    assert len(calls) == 1  # the whole page's accounts at once
    assert "inactive" in page and re.search(r"held (\d+h \d\dm|\d+m \d\ds)", page)
    assert "view 1 / 1" in page  # today / cap
    assert re.search(r"view (9|10)m \d\ds", page)  # cooldown left
    assert "tg-capped" in page


def test_accounts_filters_by_limits(admin_client, farm):
    capped = admin_client.get(ACCOUNTS, {"limited": "capped"}).context["cl"].result_list
    assert [a.pk for a in capped] == [farm.pk]
    cooling = admin_client.get(ACCOUNTS, {"limited": "cooling"}).context["cl"].result_list
    assert [a.pk for a in cooling] == [farm.pk]
    held = admin_client.get(ACCOUNTS, {"held": "yes"}).context["cl"].result_list
    assert len(held) == 1


def test_account_actions_need_the_manage_permission(farm, redis_client):
    from telegram_tasks.claims import keys

    viewer = staff("telegram_tasks.view_telegramaccount")
    assert b"deactivate_accounts" not in viewer.get(ACCOUNTS).content
    act(viewer, ACCOUNTS, "deactivate_accounts", [farm.pk])
    assert TelegramAccount.objects.get(pk=farm.pk).is_active
    manager = staff("telegram_tasks.view_telegramaccount", "telegram_tasks.manage_telegramaccount")
    act(manager, ACCOUNTS, "deactivate_accounts", [farm.pk])
    assert not TelegramAccount.objects.get(pk=farm.pk).is_active
    act(manager, ACCOUNTS, "reactivate_accounts", [farm.pk])
    assert TelegramAccount.objects.get(pk=farm.pk).is_active
    held = TelegramAccount.objects.get(held_until__isnull=False)
    redis_client.set(keys.hold(held.pk), "9999999999999")
    with TestCase.captureOnCommitCallbacks(execute=True):
        act(manager, ACCOUNTS, "clear_holds", [held.pk])
    assert TelegramAccount.objects.get(pk=held.pk).held_until is None
    assert not redis_client.exists(keys.hold(held.pk))


def test_account_page_shows_its_recent_tasks_and_limits(admin_client, farm):
    page = admin_client.get(f"{ACCOUNTS}{farm.pk}/change/").content.decode()
    task = TelegramTask.objects.get(telegram_account=farm)
    assert "limits now" in page.lower() and "recent tasks" in page.lower(), page[-3000:]
    assert task.pk in page
    assert 'name="is_active"' not in page  # changed through the actions only


def test_an_account_that_did_several_actions_today_lists_one_a_line(admin_client, farm):
    """The today / cap column breaks lines between actions (markup, not a literal "<br>")."""
    now = timezone.now()
    make_order(action="subscribe", link="t.me/durov", quantity=1)
    tasks_generate(limit=10, now=now)
    [task] = [t for t in tasks_pull(limit=10, now=now).tasks if t["action"] == "subscribe"]
    done(task, now)
    page = admin_client.get(ACCOUNTS).content.decode()
    assert "&lt;br&gt;" not in page
    assert re.search(r"(view|subscribe) [^<]*</span></span><br><span", page)


def test_the_account_page_offers_the_configured_tiers_only(admin_client, farm):
    url = f"{ACCOUNTS}{farm.pk}/change/"
    page = admin_client.get(url).content.decode()
    assert '<select name="tier"' in page and '<option value="premium"' in page
    form = {"phone": farm.phone, "tier": "gold", "meta": "{}"}
    response = admin_client.post(url, form)
    assert response.status_code == 200 and "gold is not one of the available choices" in (
        response.content.decode()
    )
    farm.refresh_from_db()
    assert farm.tier == "default"
    assert admin_client.post(url, {**form, "tier": "premium"}).status_code == 302
    farm.refresh_from_db()
    assert farm.tier == "premium"


def test_an_account_id_cannot_add_a_filter_to_the_tasks_link(admin_client, farm):
    """A provider_account_id is the provider's text: the link to its tasks encodes it."""
    TelegramAccount.objects.filter(pk=farm.pk).update(provider_account_id="a&status__exact=done")
    page = admin_client.get(f"{ACCOUNTS}{farm.pk}/change/").content.decode()
    assert "?q=a%26status__exact%3Ddone" in page
    assert "?q=a&" not in page and "?q=a&amp;" not in page


def test_order_page_progress_and_latest_tasks(admin_client, farm):
    order = Order.objects.get()
    page = admin_client.get(f"{ORDERS}{order.pk}/change/").content.decode()
    assert "1 delivered · 1 in flight · 0 not yet in a task" in page
    for task in TelegramTask.objects.all():
        assert task.pk in page
    Order.objects.update(paused_at=timezone.now())
    assert "(paused)" in admin_client.get(ORDERS).content.decode()


def test_order_form_offers_the_configured_actions_and_says_everything_at_once(admin_client):
    page = admin_client.get(f"{ORDERS}add/").content.decode()
    assert '<select name="action"' in page
    assert '<option value="subscribe">subscribe: join a channel or group</option>' in page
    assert "How many one account delivers at a time" in page  # help text on the fields
    assert "TELEGRAM_TASKS" not in page  # in the operator's words
    response = admin_client.post(
        f"{ORDERS}add/", {"action": "view", "link": "https://example.com/x", "quantity": "",
                          "per_call": 1, "interval_seconds": 0, "priority": 0,
                          "execution_mode": "pull", "execution_meta": "{}"},
    )  # fmt: skip
    errors = response.context["adminform"].form.errors
    assert {"link", "quantity"} <= set(errors)  # both at once
    response = admin_client.post(
        f"{ORDERS}add/", {"action": "view", "link": "t.me/durov", "quantity": 5, "per_call": 1,
                          "interval_seconds": 0, "priority": 0, "execution_mode": "pull",
                          "execution_meta": "{}"},
    )  # fmt: skip
    assert "acts on a post" in str(response.context["adminform"].form.errors["post_id"])
    assert not Order.objects.exists()


def test_task_page_has_requeue_and_fail_buttons_for_who_may(farm):
    task = TelegramTask.objects.get(status="leased")
    viewer = staff("telegram_tasks.view_telegramtask")
    page = viewer.get(f"{TASKS}{task.pk}/change/").content.decode()
    assert "Requeue</button>" not in page and 'name="_save"' not in page
    assert viewer.post(f"{TASKS}{task.pk}/fail/").status_code == 403
    operator = staff("telegram_tasks.view_telegramtask", "telegram_tasks.requeue_telegramtask",
                     "telegram_tasks.fail_telegramtask")  # fmt: skip
    page = operator.get(f"{TASKS}{task.pk}/change/").content.decode()
    assert "Requeue</button>" in page and "Fail</button>" in page
    # Only the buttons' POST acts: a GET (a followed link, a prefetch) changes nothing.
    assert operator.get(f"{TASKS}{task.pk}/fail/").status_code == 405
    assert TelegramTask.objects.get(pk=task.pk).status == "leased"
    with TestCase.captureOnCommitCallbacks(execute=True):
        operator.post(f"{TASKS}{task.pk}/requeue/")
    assert TelegramTask.objects.get(pk=task.pk).status == "queued"
    with TestCase.captureOnCommitCallbacks(execute=True):
        operator.post(f"{TASKS}{task.pk}/fail/")
    failed = TelegramTask.objects.get(pk=task.pk)
    assert (failed.status, failed.failure_reason) == ("failed", "admin_failed")


def test_times_show_seconds(admin_client, farm):
    task = TelegramTask.objects.get(status="done")
    page = admin_client.get(f"{TASKS}{task.pk}/change/").content.decode()
    assert timezone.localtime(task.finished_at).strftime("%Y-%m-%d %H:%M:%S") in page


def test_a_list_counts_a_table_its_statistics_do_not_know_yet(admin_client):
    """A new, never-analyzed table has no row estimate: the list counts it instead of saying
    "0 accounts" over three rows."""
    make_accounts(3)
    page = admin_client.get("/admin/telegram_tasks/telegramaccount/").content.decode()
    assert "3 telegram accounts" in page
