"""The operator's pages in a real browser: login, the dashboard's charts drawn, an order created
through its form and its tasks seen after a pass, every admin action clicked, each screen
photographed at 1366x768 (``screenshots/``)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.test import TestCase
from django.utils import timezone

from orders.models import Order
from telegram_tasks.models import TelegramAccount, TelegramTask
from telegram_tasks.services import (
    ReportIn,
    farm,
    rollup,
    tasks_generate,
    tasks_pull,
    tasks_report,
)
from tests.factories import make_accounts, make_order

pytestmark = pytest.mark.django_db(transaction=True)
CHARTS = ("chart-done", "chart-failed", "chart-passes")


def report(*reports, now):
    with TestCase.captureOnCommitCallbacks(execute=True):
        return tasks_report(reports=list(reports), now=now)


def run_action(screen, label: str, *row_ids: object) -> str:
    """Tick the rows, choose the action from the list, press Go; the message it leaves."""
    page = screen.page
    for row_id in row_ids:
        page.check(f"input.action-select[value='{row_id}']")
    page.select_option("select[name=action]", label=label)
    page.click("button[name=index]")
    page.wait_for_selector("ul.messagelist li")
    return page.inner_text("ul.messagelist")


def test_login_and_the_admin_index(screen, operator):
    screen.go("/admin/login/")
    screen.shot("00-login")
    screen.login("operator")
    assert screen.page.is_visible("a[href='/admin/dashboard/']")
    screen.shot("01-admin-index")
    assert screen.fits_the_width()


def test_the_dashboard_draws_its_charts(screen, operator):
    now = timezone.now()
    make_accounts(6)
    make_order(action="view", link="t.me/durov/5", quantity=4)
    make_order(action="subscribe", link="t.me/browserchan", quantity=20)  # starved: 6 accounts
    tasks_generate(limit=50, now=now)
    leased = tasks_pull(limit=50, now=now).tasks
    codes = ["USER_DEACTIVATED", "CHANNEL_PRIVATE", None]
    earlier = now - timedelta(minutes=5)  # finished before the rollup's lag: counted
    for n, task in enumerate(leased[:6]):
        if n % 2 == 0:
            report(ReportIn(task["task_id"], "done"), now=earlier)
        else:
            report(ReportIn(task["task_id"], "failed", error_code=codes[n // 2 % 3]), now=earlier)
    rollup.rollup(now=now)
    farm.refresh_account_counts(now=now)

    screen.login("operator")
    screen.go("/admin/dashboard/")
    drawn = " && ".join(f"Chart.getChart(document.getElementById('{c}'))" for c in CHARTS)
    screen.page.wait_for_function(f"() => window.Chart && {drawn}")
    for canvas in CHARTS:
        points = screen.page.evaluate(
            f"Chart.getChart(document.getElementById('{canvas}'))"
            ".data.datasets.flatMap(d => d.data).reduce((a, b) => a + b, 0)"
        )
        assert points > 0, canvas
    body = screen.page.inner_text("body")
    assert "t.me/browserchan" in body  # the starved order, with its refusal reasons
    screen.shot("02a-dashboard-charts")
    assert screen.fits_the_width()


def test_an_order_from_its_form_to_its_tasks(screen, operator):
    make_accounts(3)
    screen.login("operator")
    screen.go("/admin/orders/order/add/")
    page = screen.page
    # A view needs a post: refused with every error at once, nothing saved.
    page.select_option("#id_action", "view")
    page.fill("#id_link", "t.me/durov")
    page.fill("#id_quantity", "0")
    page.click("input[name=_save]")
    errors = page.inner_text("#content")
    assert "post" in errors.lower() and "quantity" in errors.lower()
    assert Order.objects.count() == 0
    screen.shot("03-order-form-errors")

    page.select_option("#id_action", "subscribe")
    page.fill("#id_link", "t.me/browserchan")
    page.fill("#id_post_id", "")
    page.fill("#id_quantity", "3")
    page.click("input[name=_save]")
    page.wait_for_selector("ul.messagelist li.success")
    order = Order.objects.get()

    call_command("generate_telegram_tasks", limit=10)
    assert TelegramTask.objects.filter(order=order).count() == 3
    screen.go(f"/admin/orders/order/{order.pk}/change/")
    assert page.inner_text(".field-latest_tasks").count("queued") == 3
    assert page.is_visible(".field-progress")
    screen.shot("04a-order-new")
    assert screen.fits_the_width()

    screen.go(f"/admin/telegram_tasks/telegramtask/?order__id__exact={order.pk}")
    assert page.locator("#result_list tbody tr").count() == 3
    screen.shot("05a-tasks-of-an-order")
    assert screen.fits_the_width()


def test_an_order_form_shows_the_params_its_action_takes(screen, operator):
    make_accounts(2)
    screen.login("operator")
    screen.go("/admin/orders/order/add/")
    page = screen.page
    page.select_option("#id_action", "view")
    assert not page.is_visible(".field-reactions") and not page.is_visible(".field-option")
    page.select_option("#id_action", "poll_vote")
    assert page.is_visible(".field-option") and not page.is_visible(".field-reactions")
    page.select_option("#id_action", "reaction")
    assert page.is_visible(".field-reactions") and not page.is_visible(".field-option")
    picker = page.locator(".tg-reaction-picker")
    for emoji in ("👍", "🔥", "❤", "🔥"):  # the second 🔥 takes it out again
        picker.get_by_role("button", name=emoji, exact=True).click()
    assert page.input_value("#id_reactions") == "👍 ❤"
    screen.shot("03b-order-form-reactions")
    page.fill("#id_link", "t.me/durov/7")
    page.fill("#id_quantity", "2")
    page.click("input[name=_save]")
    page.wait_for_selector("ul.messagelist li.success")
    assert Order.objects.get().params == {"reactions": ["👍", "❤"]}
    assert "👍 ❤" in page.inner_text("#result_list")
    assert screen.fits_the_width()


def test_the_order_actions(screen, operator):
    make_accounts(2)
    order = make_order(action="subscribe", link="t.me/browserchan", quantity=5)
    screen.login("operator")
    screen.go("/admin/orders/order/")
    assert "1 order(s) paused" in run_action(
        screen, "Pause (no new tasks; queued ones released)", order.pk
    )
    assert "(paused)" in screen.page.inner_text("#result_list")
    screen.shot("06-orders-paused")
    assert screen.fits_the_width()
    assert "1 order(s) resumed" in run_action(screen, "Resume", order.pk)
    order.refresh_from_db()
    assert order.paused_at is None
    label = "Cancel (fail and roll back their unfinished tasks)"
    assert "1 order(s) canceled" in run_action(screen, label, order.pk)
    order.refresh_from_db()
    assert order.status == Order.Status.CANCELED
    screen.shot("07-orders-canceled")


def test_the_task_actions_and_its_page(screen, operator):
    now = timezone.now()
    make_accounts(4)
    order = make_order(action="view", link="t.me/durov/9", quantity=4)
    tasks_generate(limit=10, now=now)
    first, second, third, fourth = TelegramTask.objects.filter(order=order).order_by("id")
    screen.login("operator")
    page = screen.page

    screen.go("/admin/telegram_tasks/telegramtask/")
    label = "Requeue (back to the queue now, same account, fresh reservation)"
    assert "1 task(s) requeued" in run_action(screen, label, first.pk)
    label = "Fail (and roll back their reservations)"
    assert "1 task(s) failed" in run_action(screen, label, second.pk)
    second.refresh_from_db()
    assert (second.status, second.failure_reason) == ("failed", "admin_failed")
    screen.shot("08-tasks-actions")
    assert screen.fits_the_width()

    # The task's own page: read-only (no Save), with Requeue and Fail buttons.
    screen.go(f"/admin/telegram_tasks/telegramtask/{third.pk}/change/")
    assert page.locator("input[name=_save]").count() == 0
    screen.shot("09a-task-queued")
    assert screen.fits_the_width()
    page.click("button:has-text('Requeue')")
    page.wait_for_selector("ul.messagelist li")
    assert "requeued" in page.inner_text("ul.messagelist")
    screen.go(f"/admin/telegram_tasks/telegramtask/{fourth.pk}/change/")
    page.click("button:has-text('Fail')")
    page.wait_for_selector("ul.messagelist li")
    fourth.refresh_from_db()
    assert fourth.status == "failed"
    # A finished task offers neither.
    screen.go(f"/admin/telegram_tasks/telegramtask/{fourth.pk}/change/")
    assert page.locator("button:has-text('Requeue'), button:has-text('Fail')").count() == 0


def test_the_account_actions_and_its_page(screen, operator):
    now = timezone.now()
    busy, held, spare = make_accounts(3)
    TelegramAccount.objects.filter(pk=held.pk).update(held_until=now + timedelta(hours=1))
    make_order(action="view", link="t.me/durov/11", quantity=1)
    tasks_generate(limit=10, now=now)
    [task] = tasks_pull(limit=10, now=now).tasks
    report(ReportIn(task["task_id"], "done"), now=now)  # the account cools down now
    worked = TelegramAccount.objects.get(provider_account_id=task["account"]["provider_account_id"])
    # The same account subscribes and reacts too: several actions today, one a line.
    others = TelegramAccount.objects.exclude(pk=worked.pk).filter(is_active=True)
    others_ids = list(others.values_list("pk", flat=True))
    others.update(is_active=False)
    make_order(action="subscribe", link="t.me/browserchan", quantity=1)
    make_order(action="reaction", link="t.me/durov/11", quantity=1, params={"reactions": ["👍"]})
    tasks_generate(limit=10, now=now)
    for extra in tasks_pull(limit=10, now=now).tasks:
        report(ReportIn(extra["task_id"], "done"), now=now)
    TelegramAccount.objects.filter(pk__in=others_ids).update(is_active=True)
    screen.login("operator")
    page = screen.page

    screen.go("/admin/telegram_tasks/telegramaccount/")
    screen.shot("10a-accounts")
    assert screen.fits_the_width()
    today = page.locator(f"#result_list tr:has-text('{worked.provider_account_id}') td.field-today")
    assert today.inner_text().count("\n") >= 2, today.inner_text()  # three actions, three lines
    screen.go("/admin/telegram_tasks/telegramaccount/?limited=cooling")
    assert page.locator("#result_list tbody tr").count() == 1
    assert worked.provider_account_id in page.inner_text("#result_list")

    screen.go("/admin/telegram_tasks/telegramaccount/")
    assert "1" in run_action(screen, "Clear hold (flood wait lifted now)", held.pk)
    held.refresh_from_db()
    assert held.held_until is None
    label = "Deactivate (never picked again; their queued tasks go to other accounts)"
    run_action(screen, label, spare.pk)
    spare.refresh_from_db()
    assert not spare.is_active
    run_action(screen, "Reactivate (picked again from the next pass)", spare.pk)
    spare.refresh_from_db()
    assert spare.is_active

    screen.go(f"/admin/telegram_tasks/telegramaccount/{worked.pk}/change/")
    assert "view" in page.inner_text("#content")  # its cooldown and today's count per action
    screen.shot("11a-account-cooling")
    assert screen.fits_the_width()
    del busy
