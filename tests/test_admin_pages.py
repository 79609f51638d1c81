"""The operator's pages, second pass: an order's page and list say why it ended and what failed,
with buttons for its actions; a warning before an order that can never finish; a task's lease
that ran out is marked and its hand-outs listed; an account says why it is held; nobody deletes
ledger rows; the viewer, operator and admin roles."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.core.management import call_command
from django.test import Client, TestCase
from django.utils import timezone

from orders.models import Order
from telegram_tasks.models import Membership, OneShot, TelegramAccount, TelegramTask
from telegram_tasks.services import (
    ReportIn,
    tasks_generate,
    tasks_pull,
    tasks_report,
)
from tests.factories import make_accounts, make_order
from tests.panel_world import make_customer, make_service

pytestmark = pytest.mark.django_db
ORDERS = "/admin/orders/order/"
TASKS = "/admin/telegram_tasks/telegramtask/"
ACCOUNTS = "/admin/telegram_tasks/telegramaccount/"
FORM = {"per_call": 1, "interval_seconds": 0, "priority": 0, "execution_mode": "pull",
        "execution_meta": "{}"}  # fmt: skip


def report(*reports, now):
    with TestCase.captureOnCommitCallbacks(execute=True):
        return tasks_report(reports=list(reports), now=now)


def member_of(*roles: str) -> Client:
    call_command("create_operator_groups", verbosity=0)
    user = User.objects.create_user(f"u{User.objects.count()}", password="x", is_staff=True)
    user.groups.set(Group.objects.filter(name__in=roles))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def worked():
    """A view order of 4: one done, one failed (flood wait: held account), one ran out of its
    lease, one leased; and a subscribe order stopped because its channel is private."""
    now = timezone.now()
    make_accounts(4)
    views = make_order(action="view", link="t.me/durov/5", quantity=4)
    tasks_generate(limit=10, now=now - timedelta(minutes=5))
    done, flood, late, running = tasks_pull(limit=10, now=now - timedelta(minutes=5)).tasks
    report(ReportIn(done["task_id"], "done"), now=now - timedelta(minutes=4))
    report(ReportIn(flood["task_id"], "failed", error_code="SOMETHING_ODD"), now=now)
    TelegramTask.objects.filter(pk=late["task_id"]).update(
        leased_until=now - timedelta(minutes=3)
    )  # its lease ran out three minutes ago
    TelegramTask.objects.filter(pk=running["task_id"]).update(
        leased_until=now + timedelta(minutes=1)
    )
    members = make_order(action="subscribe", link="t.me/closedchan", quantity=3)
    tasks_generate(limit=10, now=now)
    joined = tasks_pull(limit=10, now=now).tasks
    report(ReportIn(joined[0]["task_id"], "failed", error_code="CHANNEL_PRIVATE"), now=now)
    return {"views": views, "members": members, "late": late, "done": done, "flood": flood}


# --- orders ------------------------------------------------------------------------------------


def test_the_order_list_says_why_an_order_ended_and_counts_its_failed_tasks(admin_client, worked):
    members = Order.objects.get(pk=worked["members"].pk)
    assert (members.status, members.end_reason) == ("canceled", "target_unavailable")
    page = admin_client.get(ORDERS).content.decode()
    assert "Canceled:<br><span" in page and "the channel is private or gone" in page
    failed_link = f"{TASKS}?q={members.pk}&amp;status__exact=failed"
    assert failed_link in page
    listed = admin_client.get(f"{TASKS}?q={members.pk}&status__exact=failed")
    assert (
        listed.context["cl"].result_count
        == members.telegram_tasks.filter(status="failed").count()
        == 3
    )
    # The last pass's text only for orders still running.
    row = re.search(rf"<tr>.*?>{members.pk}</a>.*?</tr>", page, re.S).group(0)
    assert "made" not in row and "starved" not in row


def test_an_orders_page_has_buttons_for_who_may_and_a_human_title(worked):
    views = worked["views"]
    url = f"{ORDERS}{views.pk}/change/"
    viewer = member_of("viewer")
    page = viewer.get(url).content.decode()
    assert f"#{views.pk} view t.me/durov/5 · In progress" in page
    assert "Pause</button>" not in page and "Cancel</button>" not in page
    assert viewer.post(f"{ORDERS}{views.pk}/pause/").status_code == 403
    operator = member_of("operator")
    page = operator.get(url).content.decode()
    assert "Pause</button>" in page and "Cancel</button>" in page and "Resume</button>" not in page
    assert operator.get(f"{ORDERS}{views.pk}/pause/").status_code == 405
    operator.post(f"{ORDERS}{views.pk}/pause/")
    page = operator.get(url).content.decode()
    assert "Resume</button>" in page and "Pause</button>" not in page
    operator.post(f"{ORDERS}{views.pk}/resume/")
    with TestCase.captureOnCommitCallbacks(execute=True):
        operator.post(f"{ORDERS}{views.pk}/cancel/")
    views.refresh_from_db()
    assert (views.status, views.end_reason) == ("canceled", "order_canceled")
    page = operator.get(url).content.decode()
    assert not re.search(r"(Pause|Resume|Cancel)</button>", page)


def test_an_orders_page_shows_each_thing_once_and_only_what_applies(admin_client, worked):
    views = admin_client.get(f"{ORDERS}{worked['views'].pk}/change/").content.decode()
    assert "field-subscriptions" not in views  # a view order has no memberships
    assert "field-execution_meta" in views and "field-meta_pretty" not in views
    assert "(formatted)" not in views
    assert "1 task failed" in views  # in the progress bar, linked
    members = admin_client.get(f"{ORDERS}{worked['members'].pk}/change/").content.decode()
    assert "field-subscriptions" in members
    assert "the channel is private or gone (<code>target_unavailable</code>)" in members
    assert "field-passes" not in members  # ended: what the passes found is history


def test_pass_times_read_like_every_other_time(admin_client):
    order = make_order(action="subscribe", link="t.me/starving", quantity=2)
    now = timezone.now()
    tasks_generate(limit=10, now=now)  # no account: starved
    page = admin_client.get(f"{ORDERS}{order.pk}/change/").content.decode()
    assert timezone.localtime(now).strftime("%Y-%m-%d %H:%M:%S") in page
    assert now.isoformat()[:19] not in page


@pytest.mark.parametrize("action", ["view", "subscribe"])
def test_an_order_that_can_never_finish_is_refused_until_the_operator_confirms(
    admin_client, action
):
    accounts = make_accounts(4)
    link = "t.me/news_channel_main/42" if action == "view" else "t.me/news_channel_main"
    target = make_order(action=action, link=link, quantity=1)  # (for its link hash)
    Order.objects.filter(pk=target.pk).update(status="completed")
    if action == "view":  # one account already viewed the post
        OneShot.objects.create(account=accounts[0], action="view", link_hash=target.link_hash,
                               post_id=42, done_at=timezone.now())  # fmt: skip
    else:  # one is already in the channel
        Membership.objects.create(account=accounts[0], link_hash=target.link_hash, link=link,
                                  subscribed_at=timezone.now())  # fmt: skip
    TelegramAccount.objects.filter(pk=accounts[1].pk).update(is_active=False)
    form = {**FORM, "action": action, "link": link, "quantity": 5}
    refused = admin_client.post(f"{ORDERS}add/", form)
    assert refused.status_code == 200
    text = " ".join(refused.context["adminform"].form.non_field_errors())
    assert "needs 5 distinct accounts (" in text and "and only 2 active accounts" in text
    assert 'name="make_anyway"' in refused.content.decode()
    assert Order.objects.count() == 1
    assert admin_client.post(f"{ORDERS}add/", {**form, "quantity": 2}).status_code == 302
    made = admin_client.post(f"{ORDERS}add/", {**form, "make_anyway": "on"})
    assert made.status_code == 302 and Order.objects.count() == 3


def test_the_order_form_speaks_the_operators_words(admin_client):
    page = admin_client.get(f"{ORDERS}add/").content.decode()
    assert "TELEGRAM_TASKS" not in page and "make_anyway" not in page
    assert '<option value="view">view: view a post</option>' in page


# --- tasks -------------------------------------------------------------------------------------


def test_a_lease_that_ran_out_is_marked_in_the_list_and_on_its_page(admin_client, worked):
    late = worked["late"]["task_id"]
    overdue = admin_client.get(TASKS, {"state": "overdue"})
    assert [t.pk for t in overdue.context["cl"].result_list] == [late]
    assert 'class="tg-when tg-overdue"' in overdue.content.decode()
    assert "lease ran out 3 min ago" in overdue.content.decode()
    page = admin_client.get(f"{TASKS}{late}/change/").content.decode()
    assert "Overdue: the lease ran out 3 min ago" in page


def test_a_tasks_page_lists_its_hand_outs(admin_client):
    now = timezone.now()
    make_accounts(1)
    make_order(action="view", link="t.me/durov/7", quantity=1)
    tasks_generate(limit=10, now=now - timedelta(minutes=3))
    [first] = tasks_pull(limit=10, now=now - timedelta(minutes=3)).tasks
    report(ReportIn(first["task_id"], "failed", error_code="FLOOD_WAIT_30"),
           now=now - timedelta(minutes=3))  # fmt: skip
    [again] = tasks_pull(limit=10, now=now - timedelta(minutes=2)).tasks
    report(ReportIn(again["task_id"], "done"), now=now - timedelta(minutes=1))
    page = admin_client.get(f"{TASKS}{first['task_id']}/change/").content.decode()
    table = page[page.index("tg-handouts") :]
    assert table.index(first["lease_id"]) < table.index(again["lease_id"])
    assert "failed, queued to run again" in table and "FLOOD_WAIT_30" in table
    assert "<td>done</td>" in table


def test_the_reason_filter_offers_groups_and_their_reasons(admin_client, worked):
    page = admin_client.get(TASKS, {"reason": "group:target"})
    assert "?reason=poll_closed" in page.content.decode()
    assert page.context["cl"].result_count == 3  # the stopped order's tasks


# --- accounts ----------------------------------------------------------------------------------


def test_an_account_says_why_it_is_held_and_has_its_buttons(worked):
    now = timezone.now()
    account = TelegramAccount.objects.filter(is_active=True).first()
    TelegramAccount.objects.filter(pk=account.pk).update(
        held_until=now + timedelta(hours=23, minutes=56), hold_reason="peer_flood",
        held_since=now - timedelta(minutes=4),
    )  # fmt: skip
    operator = member_of("operator")
    listed = operator.get(ACCOUNTS).content.decode()
    assert re.search(r'<span class="tg-nowrap" title="peer_flood[^"]*">held \(peer flood\)', listed)
    page = operator.get(f"{ACCOUNTS}{account.pk}/change/").content.decode()
    assert "peer_flood (Telegram limits the account (PEER_FLOOD): held a day)" in page
    assert "Clear hold</button>" in page and "Deactivate</button>" in page
    assert "Reactivate</button>" not in page
    with TestCase.captureOnCommitCallbacks(execute=True):
        operator.post(f"{ACCOUNTS}{account.pk}/clear-hold/")
    account.refresh_from_db()
    assert (account.held_until, account.hold_reason) == (None, "")
    # The task holding the account's lock is a link to it.
    locked = TelegramTask.objects.filter(telegram_account=account, status="leased").first()
    if locked is not None:
        assert f'href="{TASKS}{locked.pk}/change/"' in page
    viewer = member_of("viewer")
    assert (
        "Clear hold</button>" not in viewer.get(f"{ACCOUNTS}{account.pk}/change/").content.decode()
    )


# --- everywhere --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", [ORDERS, ACCOUNTS, TASKS, "/admin/telegram_tasks/membership/",
             "/admin/orders/customer/", "/admin/orders/service/", "/admin/orders/balanceentry/",
             "/admin/orders/apikey/"],
)  # fmt: skip
def test_nobody_deletes_ledger_rows_in_the_admin(admin_client, path):
    make_accounts(1)
    make_order(action="subscribe", link="t.me/durov", quantity=1)
    customer, _ = make_customer("acme", "5")
    make_service()
    del customer
    page = admin_client.get(path).content.decode()  # a superuser's
    assert "delete_selected" not in page
    model = path.rstrip("/").rsplit("/", 1)[1]
    app = "orders" if "/orders/" in path else "telegram_tasks"
    from django.apps import apps

    obj = apps.get_model(app, model).objects.first()
    if obj is not None:
        change = admin_client.get(f"{path}{obj.pk}/change/").content.decode()
        assert 'class="deletelink"' not in change
        assert admin_client.post(f"{path}{obj.pk}/delete/", {"post": "yes"}).status_code == 403


def test_the_roles_see_and_do_what_their_group_allows():
    customer, _ = make_customer("acme", "5")
    make_accounts(1)
    order = make_order(action="subscribe", link="t.me/durov", quantity=1)
    viewer, operator, admin = member_of("viewer"), member_of("operator"), member_of("admin")
    for client in (viewer, operator, admin):
        for path in ("/admin/dashboard/", ORDERS, TASKS, ACCOUNTS, "/admin/orders/customer/",
                     "/admin/orders/balanceentry/", f"{ORDERS}{order.pk}/change/"):  # fmt: skip
            assert client.get(path).status_code == 200, path
    # The viewer: no action anywhere, no add, no save.
    for path in (ORDERS, TASKS, ACCOUNTS):
        assert 'name="action"' not in viewer.get(path).content.decode(), path
    assert viewer.get(f"{ORDERS}add/").status_code == 403
    assert 'name="_save"' not in viewer.get(f"{ORDERS}{order.pk}/change/").content.decode()
    # The operator: orders, tasks and accounts actions; not the money, not the catalogue.
    assert "cancel_orders" in operator.get(ORDERS).content.decode()
    assert "fail_tasks" in operator.get(TASKS).content.decode()
    assert "clear_holds" in operator.get(ACCOUNTS).content.decode()
    customer_page = f"/admin/orders/customer/{customer.pk}/change/"
    assert "Adjust balance" not in operator.get(customer_page).content.decode()
    assert operator.get(f"/admin/orders/customer/{customer.pk}/adjust/").status_code == 403
    assert operator.get("/admin/orders/service/add/").status_code == 403
    # The admin: the money and the catalogue too.
    assert "Adjust balance" in admin.get(customer_page).content.decode()
    assert admin.get("/admin/orders/service/add/").status_code == 200


def test_create_operator_groups_is_idempotent_and_exact(capsys):
    call_command("create_operator_groups")
    first = {g.name: set(g.permissions.values_list("codename", flat=True))
             for g in Group.objects.all()}  # fmt: skip
    assert set(first) == {"viewer", "operator", "admin"}
    assert first["viewer"] < first["operator"] < first["admin"]
    assert not any(p.startswith("delete_") for perms in first.values() for p in perms)
    assert "adjust_balance" in first["admin"] - first["operator"]
    assert {"cancel_order", "fail_telegramtask", "manage_telegramaccount"} <= first["operator"]
    extra = Group.objects.get(name="viewer")
    extra.permissions.add(*Group.objects.get(name="admin").permissions.all())
    call_command("create_operator_groups", "--viewer", "readers")
    assert {g.name for g in Group.objects.all()} == {"viewer", "readers", "operator", "admin"}
    again = set(Group.objects.get(name="readers").permissions.values_list("codename", flat=True))
    assert again == first["viewer"]
    assert "group operator:" in capsys.readouterr().out
