import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from orders.models import Order
from telegram_tasks.models import TelegramTask
from tests.factories import make_account, make_order, make_task

pytestmark = pytest.mark.django_db


def test_order_create_normalizes_and_fills_remains():
    order = Order.objects.create(action="subscribe", link="@durov", quantity=5)
    order.refresh_from_db()
    assert order.remains == 5
    assert order.link == "https://t.me/durov"
    assert len(order.link_hash) == 64 and int(order.link_hash, 16) >= 0
    assert order.status == Order.Status.AWAITING
    assert order.per_call == 1 and order.interval_seconds == 0 and order.next_run_at is None


def test_order_post_link_is_split():
    order = Order.objects.create(action="view", link="https://t.me/Durov/42", quantity=1)
    assert (order.link, order.post_id) == ("https://t.me/durov", 42)


def test_order_rejects_non_telegram_link():
    with pytest.raises(ValidationError) as excinfo:
        Order.objects.create(action="view", link="https://example.com/x", quantity=1)
    assert "link" in excinfo.value.message_dict
    assert Order.objects.count() == 0


def test_order_rejects_contradicting_post_id():
    with pytest.raises(ValidationError):
        Order.objects.create(action="view", link="t.me/durov/42", post_id=41, quantity=1)


def test_order_clean_rejects_unknown_action():
    order = Order(action="teleport", link="@durov", quantity=1)
    with pytest.raises(ValidationError) as excinfo:
        order.full_clean()
    assert "action" in excinfo.value.message_dict


@pytest.mark.parametrize(
    "fields",
    [
        {"quantity": 0},
        {"quantity": 5, "per_call": 0},
        {"quantity": 5, "remains": 6},
    ],
)
def test_order_database_constraints(fields):
    with pytest.raises(IntegrityError), transaction.atomic():
        Order.objects.create(action="view", link="@durov", **fields)


def test_remains_cannot_go_negative_in_the_database():
    order = make_order(quantity=1)
    with pytest.raises(IntegrityError), transaction.atomic():
        Order.objects.filter(pk=order.pk).update(remains=-1)


def test_task_has_a_ulid_primary_key_and_defaults():
    task = make_task(make_order(), make_account())
    assert len(task.pk) == 26
    assert task.status == TelegramTask.Status.QUEUED
    assert task.attempt == 0 and task.available_at is not None


def test_task_ids_sort_by_creation():
    order = make_order()
    ids = [make_task(order).pk for _ in range(5)]
    assert ids == sorted(ids)


def test_task_per_call_constraint():
    with pytest.raises(IntegrityError), transaction.atomic():
        make_task(make_order(), per_call=0)
