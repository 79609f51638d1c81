"""What is stuck and why, from any screen, in one click: the walk of the operator's view in a real
browser. A dashboard number clicked lands on the list of those very rows; a lease that ran out is
marked; an account says why it is held; a task lists its hand-outs; an order's page has its
buttons; an order that can never finish is refused with the number of eligible accounts; a
viewer sees no action; the panel's pages; nothing scrolls sideways at 1366 px."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
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
from tests.panel_world import make_customer, make_service
from tests_browser.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


def report(*reports, now):
    with TestCase.captureOnCommitCallbacks(execute=True):
        return tasks_report(reports=list(reports), now=now)


def listed(screen) -> int:
    """The number of rows the list says it holds ("3 telegram tasks", "3 results")."""
    text = screen.page.inner_text("#changelist-form .paginator")
    return int(text.split()[0])


@pytest.fixture
def farm_at_work():
    """A farm a few minutes into work: views done and failed (a flood wait retried, a private
    channel), leases that ran out, a pending task, queued work, a held account, and orders short
    of accounts."""
    now = timezone.now()
    before = now - timedelta(minutes=6)
    accounts = make_accounts(10)
    views = make_order(action="view", link="t.me/news_channel_main/42", quantity=12)
    tasks_generate(limit=50, now=before)
    leased = tasks_pull(limit=50, now=before).tasks
    earlier = now - timedelta(minutes=5)
    report(*[ReportIn(t["task_id"], "done") for t in leased[:4]], now=earlier)
    report(ReportIn(leased[4]["task_id"], "failed", error_code="FLOOD_WAIT_30"), now=earlier)
    report(ReportIn(leased[5]["task_id"], "failed", error_code="SOMETHING_BROKE"), now=earlier)
    report(ReportIn(leased[6]["task_id"], "pending"), now=earlier)
    # leased[7:]: their leases ran out five minutes ago.
    flood = leased[4]
    [again] = [
        t for t in tasks_pull(limit=50, now=earlier + timedelta(seconds=40)).tasks
        if t["task_id"] == flood["task_id"]
    ]  # fmt: skip
    report(ReportIn(again["task_id"], "done"), now=earlier + timedelta(seconds=50))
    private = make_order(action="subscribe", link="t.me/closed_club", quantity=3)
    tasks_generate(limit=50, now=earlier)
    joined = tasks_pull(limit=50, now=earlier).tasks
    report(ReportIn(joined[0]["task_id"], "failed", error_code="CHANNEL_PRIVATE"), now=earlier)
    # Orders short of accounts now: more subscribes than free accounts.
    hungry = make_order(action="subscribe", link="t.me/hungry_channel", quantity=30, priority=1)
    make_order(action="view", link="t.me/news_channel_main/43", quantity=25)
    tasks_generate(limit=100, now=now - timedelta(seconds=2))
    held = accounts[-1]
    TelegramAccount.objects.filter(pk=held.pk).update(
        held_until=now + timedelta(hours=23, minutes=56), hold_reason="peer_flood",
        held_since=now - timedelta(minutes=4),
    )  # fmt: skip
    rollup.rollup(now=now)
    farm.refresh_account_counts(now=now)
    return {"views": views, "private": private, "hungry": hungry, "flood": flood,
            "late": leased[7], "held": held}  # fmt: skip


def login_as(screen, role: str | None) -> None:
    """A staff user in the role's group (create_operator_groups), or a superuser."""
    if role is None:
        User.objects.create_superuser("boss", "boss@example.com", PASSWORD)
        screen.login("boss")
        return
    call_command("create_operator_groups", verbosity=0)
    user = User.objects.create_user(role, password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    screen.login(role)


def test_a_dashboard_number_clicked_lands_on_the_list_of_those_rows(screen, farm_at_work):
    login_as(screen, "viewer")
    page = screen.page
    screen.go("/admin/dashboard/")
    page.wait_for_function("() => window.tgCharts && Chart.getChart('chart-done')")
    assert page.get_attribute("#ranges a.selected", "data-range") == "1h"  # the recent work
    assert page.is_visible("#passes")  # the passes' liveness, at the top
    assert "not counted" in page.inner_text("#lag") or "finished until" in page.inner_text("#lag")
    screen.shot("02-dashboard")
    assert screen.fits_the_width(), screen.too_wide()

    # Leases that ran out: the number, clicked, is the list's count.
    expired = int(page.inner_text("#leases-run-out"))
    assert (
        expired
        == TelegramTask.objects.filter(status="leased", leased_until__lte=timezone.now()).count()
        > 0
    )
    page.click("#leases-run-out")
    page.wait_for_url("**/telegramtask/?state=overdue")
    assert listed(screen) == expired
    assert page.locator("#result_list .tg-overdue").count() == expired
    screen.shot("13-tasks-overdue")
    assert screen.fits_the_width(), screen.too_wide()

    # A failure reason of the range.
    screen.go("/admin/dashboard/")
    row = page.locator("#failures tr", has_text="the channel is private or gone")
    count = int(row.locator("a.tg-count").inner_text())
    row.locator("a.tg-count").click()
    page.wait_for_url("**reason=target_unavailable**")
    assert listed(screen) == count > 0

    # The done of the range.
    screen.go("/admin/dashboard/")
    done = int(page.inner_text("#range-done"))
    page.click("#range-done")
    page.wait_for_url("**status__exact=done**")
    assert listed(screen) == done > 0

    # A refusal of a starved order opens what holds the accounts back.
    screen.go("/admin/dashboard/")
    chip = page.locator("#starved-orders a.tg-chip", has_text="locked").first
    assert "live task" in chip.get_attribute("title")
    chip.click()
    page.wait_for_url("**state=live**")
    assert listed(screen) > 0

    # Another range, kept; the page refreshes itself and says when.
    screen.go("/admin/dashboard/")
    page.click("#ranges a[data-range='6h']")
    page.wait_for_function("() => window.tgCharts && Chart.getChart('chart-done')")
    screen.go("/admin/dashboard/")
    assert page.get_attribute("#ranges a.selected", "data-range") == "6h"
    TelegramTask.objects.filter(status="pending").update(
        status="leased", leased_until=timezone.now() - timedelta(seconds=5)
    )  # (a lease more ran out)
    page.evaluate("window.tgRefresh()")
    # (A function, not an expression: Playwright evaluates an expression with eval, which the
    # admin's Content-Security-Policy refuses.)
    page.wait_for_function(
        f"() => document.querySelector('#leases-run-out').textContent.trim() !== '{expired}'"
    )
    assert int(page.inner_text("#leases-run-out")) > expired
    page.click("#refresh-toggle")
    assert "paused" in page.inner_text("#refresh-status")


def test_a_task_shows_its_hand_outs_and_an_overdue_lease(screen, farm_at_work):
    login_as(screen, "operator")
    page = screen.page
    screen.go(f"/admin/telegram_tasks/telegramtask/{farm_at_work['flood']['task_id']}/change/")
    history = page.inner_text(".field-handouts_table")
    assert "failed, queued to run again" in history and "FLOOD_WAIT_30" in history
    assert history.index("FLOOD_WAIT_30") < history.index("done")
    screen.shot("14-task-handouts")
    assert screen.fits_the_width(), screen.too_wide()
    screen.go(f"/admin/telegram_tasks/telegramtask/{farm_at_work['late']['task_id']}/change/")
    assert "Overdue: the lease ran out" in page.inner_text(".field-now")
    assert page.is_visible("button:has-text('Requeue')")
    screen.shot("09-task-page")
    assert screen.fits_the_width(), screen.too_wide()
    screen.go("/admin/telegram_tasks/telegramtask/?reason=group%3Aaccount")
    assert page.is_visible("#changelist-filter a:has-text('Telegram asked the account to wait')")
    screen.go("/admin/telegram_tasks/telegramtask/")
    screen.shot("05-tasks-list")
    assert screen.fits_the_width(), screen.too_wide()


def test_an_account_says_why_it_is_held_and_its_buttons_act(screen, farm_at_work):
    login_as(screen, "operator")
    page = screen.page
    held = farm_at_work["held"]
    screen.go("/admin/telegram_tasks/telegramaccount/")
    state = page.locator(f"#result_list tr:has(a:text-is('{held.pk}')) .field-state")
    screen.shot("10-accounts")
    assert "held (peer flood)" in state.inner_text()
    assert state.locator("span").evaluate("e => e.getClientRects().length") == 1  # one line
    assert screen.fits_the_width(), screen.too_wide()
    screen.go(f"/admin/telegram_tasks/telegramaccount/{held.pk}/change/")
    hold = page.inner_text(".field-hold")
    assert "peer_flood" in hold and "since" in hold and "left" in hold
    screen.shot("15-account-held")
    assert screen.fits_the_width(), screen.too_wide()
    page.click("button:has-text('Clear hold')")
    page.wait_for_selector("ul.messagelist li")
    held.refresh_from_db()
    assert held.held_until is None
    busy = TelegramTask.objects.filter(status="leased").first().telegram_account_id
    screen.go(f"/admin/telegram_tasks/telegramaccount/{busy}/change/")
    page.click(".field-limits_now a[href*='/telegramtask/']")  # the task holding its lock
    page.wait_for_url("**/telegramtask/*/change/")
    screen.go(f"/admin/telegram_tasks/telegramaccount/{busy}/change/")
    screen.shot("11-account-page")
    assert screen.fits_the_width(), screen.too_wide()
    page.click("button:has-text('Deactivate')")
    page.wait_for_selector("ul.messagelist li")
    assert not TelegramAccount.objects.get(pk=busy).is_active
    page.click("button:has-text('Reactivate')")
    page.wait_for_selector("ul.messagelist li")
    assert TelegramAccount.objects.get(pk=busy).is_active


def test_an_orders_page_and_list_say_what_happened(screen, farm_at_work):
    login_as(screen, "operator")
    page = screen.page
    views = farm_at_work["views"]
    screen.go(f"/admin/orders/order/{views.pk}/change/")
    assert f"#{views.pk} view t.me/news_channel_main/42 · In progress" in page.inner_text("h2")
    assert "task failed" in page.inner_text(".field-progress")
    assert page.locator(".field-subscriptions").count() == 0
    screen.shot("04-order-page")
    assert screen.fits_the_width(), screen.too_wide()
    page.click("button:has-text('Pause')")
    page.wait_for_selector("ul.messagelist li")
    assert Order.objects.get(pk=views.pk).paused_at is not None
    page.click("button:has-text('Resume')")
    page.wait_for_selector("ul.messagelist li")
    assert Order.objects.get(pk=views.pk).paused_at is None
    page.click("button:has-text('Cancel')")
    page.wait_for_selector("ul.messagelist li")
    assert Order.objects.get(pk=views.pk).status == Order.Status.CANCELED
    assert page.locator("button:has-text('Pause')").count() == 0

    screen.go("/admin/orders/order/")
    private = page.locator(f"#result_list tr:has(a:text-is('{farm_at_work['private'].pk}'))")
    assert "Canceled:\nthe channel is private or gone" in private.inner_text()
    assert "starved" not in private.inner_text()  # the last pass: live orders only
    hungry = page.locator(f"#result_list tr:has(a:text-is('{farm_at_work['hungry'].pk}'))")
    assert "starved" in hungry.inner_text()
    screen.shot("06-orders")
    assert screen.fits_the_width(), screen.too_wide()


def test_an_order_that_can_never_finish_is_refused_with_the_eligible_accounts(screen):
    make_accounts(22)
    login_as(screen, "operator")
    page = screen.page
    screen.go("/admin/orders/order/add/")
    page.select_option("#id_action", "view")
    page.fill("#id_link", "t.me/news_channel_main/42")
    page.fill("#id_quantity", "100")
    page.click("input[name=_save]")
    warning = page.inner_text(".errornote, ul.errorlist.nonfield")
    text = page.inner_text("#content")
    assert "needs 100 distinct accounts (an account can view a post only once)" in text
    assert "only 22 active accounts have not done it on this target yet" in text
    assert warning
    screen.shot("12-order-cannot-finish")
    assert screen.fits_the_width(), screen.too_wide()
    page.check("#id_make_anyway")
    page.click("input[name=_save]")
    page.wait_for_selector("ul.messagelist li.success")
    assert Order.objects.get().quantity == 100


def test_a_viewer_sees_everything_and_no_action(screen, farm_at_work):
    login_as(screen, "viewer")
    page = screen.page
    for path in ("/admin/orders/order/", "/admin/telegram_tasks/telegramtask/",
                 "/admin/telegram_tasks/telegramaccount/"):  # fmt: skip
        screen.go(path)
        assert page.locator("select[name=action]").count() == 0, path
        assert page.locator("a.addlink").count() == 0, path
    screen.go(f"/admin/orders/order/{farm_at_work['views'].pk}/change/")
    assert page.locator(".object-tools button, input[name=_save], a.deletelink").count() == 0
    screen.shot("16-viewer-order")
    assert screen.fits_the_width(), screen.too_wide()
    screen.go(f"/admin/telegram_tasks/telegramtask/{farm_at_work['late']['task_id']}/change/")
    assert page.locator(".object-tools button").count() == 0
    screen.go(f"/admin/telegram_tasks/telegramaccount/{farm_at_work['held'].pk}/change/")
    assert page.locator(".object-tools button").count() == 0


def test_the_panel_pages_follow_the_same_rules(screen):
    customer, _ = make_customer("acme_reseller", "250")
    service = make_service(name="Telegram members, 30 days, refill", refill_days=30)
    make_service(name="Telegram post views", action="view")
    from orders.services import api_key_create, balance_adjust

    api_key_create(customer=customer, name="their panel", now=timezone.now())
    balance_adjust(customer_id=customer.pk, amount="-12.5", note="chargeback of order 17",
                   actor="admin:boss", user_id=None, now=timezone.now())  # fmt: skip
    del service
    login_as(screen, None)
    page = screen.page
    for name, path in (
        ("17-customers", "/admin/orders/customer/"),
        ("18-customer-page", f"/admin/orders/customer/{customer.pk}/change/"),
        ("19-balance-ledger", "/admin/orders/balanceentry/"),
        ("20-api-keys", "/admin/orders/apikey/"),
        ("21-services", "/admin/orders/service/"),
    ):
        screen.go(path)
        assert page.locator("select[name=action] option[value=delete_selected]").count() == 0
        assert page.locator("a.deletelink").count() == 0
        screen.shot(name)
        assert screen.fits_the_width(), (path, screen.too_wide())
