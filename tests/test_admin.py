import pytest
from django.urls import reverse

from tests.factories import make_account, make_order, make_task

pytestmark = pytest.mark.django_db


@pytest.fixture
def objects():
    order = make_order(action="view", link="t.me/durov/42", execution_meta={"note": "vip"})
    account = make_account(meta={"country": "NL"})
    task = make_task(order, account, result={"ok": True, "data": {"x": 1}})
    return {
        "orders_order": order,
        "telegram_tasks_telegramaccount": account,
        "telegram_tasks_telegramtask": task,
    }


@pytest.mark.parametrize(
    "model", ["orders_order", "telegram_tasks_telegramaccount", "telegram_tasks_telegramtask"]
)
def test_changelist_and_change_pages_render(admin_client, objects, model):
    obj = objects[model]
    changelist = admin_client.get(reverse(f"admin:{model}_changelist"))
    assert changelist.status_code == 200
    assert str(obj.pk) in changelist.content.decode()
    filters = {
        "orders_order": ["?q=durov", "?status__exact=awaiting", "?action__exact=view"],
        "telegram_tasks_telegramaccount": ["?q=ext_", "?is_active__exact=1"],
        "telegram_tasks_telegramtask": ["?q=ext_", "?status__exact=queued", "?action__exact=view"],
    }
    for query in filters[model]:
        assert admin_client.get(reverse(f"admin:{model}_changelist") + query).status_code == 200
    change = admin_client.get(reverse(f"admin:{model}_change", args=[obj.pk]))
    assert change.status_code == 200


def test_task_change_page_shows_formatted_json_and_no_inputs(admin_client, objects):
    task = objects["telegram_tasks_telegramtask"]
    body = admin_client.get(
        reverse("admin:telegram_tasks_telegramtask_change", args=[task.pk])
    ).content.decode()
    assert "<pre" in body and "&quot;ok&quot;: true" in body
    assert 'name="status"' not in body  # machine-written: read-only


def test_task_cannot_be_added_or_edited_by_post(admin_client, objects):
    task = objects["telegram_tasks_telegramtask"]
    assert admin_client.get(reverse("admin:telegram_tasks_telegramtask_add")).status_code == 403
    response = admin_client.post(
        reverse("admin:telegram_tasks_telegramtask_change", args=[task.pk]), {"status": "done"}
    )
    assert response.status_code == 403
    task.refresh_from_db()
    assert task.status == "queued"


def test_order_add_page_renders_and_creates_a_normalized_order(admin_client):
    assert admin_client.get(reverse("admin:orders_order_add")).status_code == 200
    response = admin_client.post(
        reverse("admin:orders_order_add"),
        {"action": "subscribe", "link": "https://t.me/Durov", "quantity": 3, "per_call": 1,
         "interval_seconds": 0, "execution_meta": "{}"},
    )  # fmt: skip
    assert response.status_code == 302
    from orders.models import Order

    order = Order.objects.get()
    assert (order.link, order.remains) == ("https://t.me/durov", 3)


def test_order_add_rejects_bad_link_with_a_form_error(admin_client):
    response = admin_client.post(
        reverse("admin:orders_order_add"),
        {"action": "subscribe", "link": "https://example.com", "quantity": 3, "per_call": 1,
         "interval_seconds": 0, "execution_meta": "{}"},
    )  # fmt: skip
    assert response.status_code == 200
    assert "not a Telegram link" in response.content.decode()


def test_order_change_page_locks_target_and_quantity(admin_client, objects):
    order = objects["orders_order"]
    body = admin_client.get(reverse("admin:orders_order_change", args=[order.pk])).content.decode()
    assert 'name="quantity"' not in body and 'name="link"' not in body
    assert 'name="interval_seconds"' in body
