"""Django's permission model in the admin: the view permission to see, one permission per
action to act — each checked with a user holding it alone."""

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.utils import timezone

from orders.models import Order
from telegram_tasks.models import TelegramTask
from telegram_tasks.services import tasks_generate
from tests.factories import make_accounts, make_order

pytestmark = pytest.mark.django_db
TASKS = "/admin/telegram_tasks/telegramtask/"
ORDERS = "/admin/orders/order/"


def staff(*perms: str) -> Client:
    user = User.objects.create_user(f"u{User.objects.count()}", password="x", is_staff=True)
    for perm in perms:
        app, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app, codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def world():
    make_accounts(2)
    order = make_order(action="view", link="t.me/durov/5", quantity=2)
    tasks_generate(limit=10, now=timezone.now())
    return order


def act(client: Client, url: str, action: str, ids: list) -> None:
    client.post(url, {"action": action, "_selected_action": [str(i) for i in ids]})


def task_statuses() -> list[str]:
    return sorted(TelegramTask.objects.values_list("status", flat=True))


def test_no_permission_sees_no_task(world):
    client = staff()
    assert client.get(TASKS).status_code == 403
    task = TelegramTask.objects.first()
    assert client.get(f"{TASKS}{task.pk}/change/").status_code == 403
    act(client, TASKS, "fail_tasks", [task.pk])
    assert task_statuses() == ["queued", "queued"]


def test_view_permission_sees_read_only_tasks_and_no_action(world):
    client = staff("telegram_tasks.view_telegramtask")
    page = client.get(TASKS)
    assert page.status_code == 200
    assert b"fail_tasks" not in page.content and b"requeue_tasks" not in page.content
    task = TelegramTask.objects.first()
    change = client.get(f"{TASKS}{task.pk}/change/")
    assert change.status_code == 200 and b'name="_save"' not in change.content
    act(client, TASKS, "fail_tasks", [task.pk])
    assert task_statuses() == ["queued", "queued"]


@pytest.mark.parametrize(
    ("perm", "action", "allowed"),
    [
        ("telegram_tasks.fail_telegramtask", "fail_tasks", True),
        ("telegram_tasks.fail_telegramtask", "requeue_tasks", False),
        ("telegram_tasks.requeue_telegramtask", "requeue_tasks", True),
        ("telegram_tasks.requeue_telegramtask", "fail_tasks", False),
    ],
)
def test_each_task_action_needs_its_own_permission(world, perm, action, allowed):
    client = staff("telegram_tasks.view_telegramtask", perm)
    page = client.get(TASKS).content.decode()
    assert (f'value="{action}"' in page) is allowed
    before = dict(TelegramTask.objects.values_list("pk", "reserved_until"))
    act(client, TASKS, action, list(before))
    if action == "fail_tasks":
        assert task_statuses() == (["failed", "failed"] if allowed else ["queued", "queued"])
    else:  # a requeue gives a fresh reservation
        after = dict(TelegramTask.objects.values_list("pk", "reserved_until"))
        assert all(after[pk] > before[pk] for pk in before) is allowed
        assert task_statuses() == ["queued", "queued"]


def test_an_action_permission_alone_opens_nothing(world):
    client = staff("telegram_tasks.fail_telegramtask")
    assert client.get(TASKS).status_code == 403
    act(client, TASKS, "fail_tasks", list(TelegramTask.objects.values_list("pk", flat=True)))
    assert task_statuses() == ["queued", "queued"]


@pytest.mark.parametrize(
    ("perms", "action", "changed"),
    [
        (["orders.view_order"], "cancel_orders", False),
        (["orders.view_order"], "pause_orders", False),
        (["orders.view_order", "orders.cancel_order"], "cancel_orders", True),
        (["orders.view_order", "orders.cancel_order"], "pause_orders", False),
        (["orders.view_order", "orders.pause_order"], "pause_orders", True),
        (["orders.view_order", "orders.pause_order"], "cancel_orders", False),
        (["orders.view_order", "orders.change_order"], "cancel_orders", False),
    ],
)
def test_each_order_action_needs_its_own_permission(world, perms, action, changed):
    client = staff(*perms)
    act(client, ORDERS, action, [world.pk])
    world.refresh_from_db()
    if action == "cancel_orders":
        assert (world.status == Order.Status.CANCELED) is changed
    else:
        assert (world.paused_at is not None) is changed


def test_resume_needs_the_pause_permission(world):
    Order.objects.filter(pk=world.pk).update(paused_at=timezone.now())
    act(staff("orders.view_order", "orders.cancel_order"), ORDERS, "resume_orders", [world.pk])
    world.refresh_from_db()
    assert world.paused_at is not None
    act(staff("orders.view_order", "orders.pause_order"), ORDERS, "resume_orders", [world.pk])
    world.refresh_from_db()
    assert world.paused_at is None


def test_view_only_order_page_cannot_be_saved(world):
    client = staff("orders.view_order")
    assert client.get(f"{ORDERS}{world.pk}/change/").status_code == 200
    response = client.post(f"{ORDERS}{world.pk}/change/", {"interval_seconds": 5})
    assert response.status_code == 403


def test_saving_an_order_never_writes_back_a_stale_remains(world, monkeypatch):
    """A report that commits while the operator's form is being saved keeps its effect."""
    from orders.admin import OrderAdmin

    real = OrderAdmin.save_model

    def report_meanwhile(self, request, obj, form, change):
        Order.objects.filter(pk=obj.pk).update(remains=1)  # a success counted meanwhile
        return real(self, request, obj, form, change)

    monkeypatch.setattr(OrderAdmin, "save_model", report_meanwhile)
    client = staff("orders.view_order", "orders.change_order")
    response = client.post(
        f"{ORDERS}{world.pk}/change/",
        {"interval_seconds": 30, "priority": 0, "execution_mode": "pull", "execution_meta": "{}"},
    )
    assert response.status_code == 302, response.content[:2000]
    world.refresh_from_db()
    assert (world.interval_seconds, world.remains) == (30, 1)
