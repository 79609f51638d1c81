"""The panel side in the admin: the catalogue, a customer's page (balance, ledger, keys), a key
shown once, revoking, a balance adjustment written as a ledger row with who, permissions."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from orders.customers import ApiKey, BalanceEntry, Customer
from orders.models import Service
from tests.panel_world import balance, ledger_sum, make_customer, make_service

pytestmark = pytest.mark.django_db


def test_the_operator_keeps_the_catalogue(admin_client):
    response = admin_client.post("/admin/orders/service/add/", {
        "name": "Members 30d", "category": "Telegram", "action": "subscribe", "rate": "1.25",
        "min_quantity": "10", "max_quantity": "1000", "refill_days": "30", "priority": "0",
        "execution_mode": "pull", "params": "{}", "enabled": "on", "cancel": "on",
    })  # fmt: skip
    assert response.status_code == 302, response.content[:2000]
    assert Service.objects.get().refill_days == 30
    bad = admin_client.post("/admin/orders/service/add/", {
        "name": "Views refill", "action": "view", "rate": "1.123456", "min_quantity": "10",
        "max_quantity": "5", "refill_days": "3", "priority": "0", "execution_mode": "pull",
        "params": "{}",
    })  # fmt: skip
    assert bad.status_code == 200 and Service.objects.count() == 1
    errors = bad.context["adminform"].form.errors
    assert {"rate", "max_quantity"} <= set(errors) or {"rate", "refill_days"} <= set(errors)


def test_a_customers_page_adjusts_the_balance_with_who_and_why(admin_client, admin_user):
    customer, _ = make_customer("acme", "3")
    page = admin_client.get(f"/admin/orders/customer/{customer.pk}/change/")
    assert page.status_code == 200
    assert b"3.00 USD" in page.content and b"opening balance" in page.content
    assert b"Adjust balance" in page.content and b"New API key" in page.content
    url = f"/admin/orders/customer/{customer.pk}/adjust/"
    refused = admin_client.post(url, {"amount": "-5", "note": "too much"})
    assert refused.status_code == 200 and b"Not enough funds" in refused.content
    done = admin_client.post(url, {"amount": "-1.5", "note": "chargeback"})
    assert done.status_code == 302
    row = BalanceEntry.objects.filter(customer=customer).first()
    assert (row.amount, row.actor, row.user_id, row.note) == (
        Decimal("-1.5"), f"admin:{admin_user.username}", admin_user.pk, "chargeback",
    )  # fmt: skip
    assert balance(customer) == Decimal("1.5") == ledger_sum(customer)


def test_a_new_key_is_shown_once_and_a_revoked_key_refuses(admin_client):
    customer, _ = make_customer("keys", "1")
    page = admin_client.post(f"/admin/orders/customer/{customer.pk}/new-key/", {"name": "bot"})
    key = re.search(rb'id="new-api-key"[^>]*>([0-9a-f]{32})<', page.content).group(1).decode()
    assert Client().post("/api/v2", {"key": key, "action": "balance"}).json()["balance"] == "1.00"
    made = ApiKey.objects.get(prefix=key[:8])
    assert key not in made.digest and made.name == "bot"
    assert (
        key.encode()
        not in admin_client.get(f"/admin/orders/customer/{customer.pk}/change/").content
    )
    admin_client.post("/admin/orders/apikey/", {
        "action": "revoke_keys", "_selected_action": [made.pk],
    })  # fmt: skip
    answer = Client().post("/api/v2", {"key": key, "action": "balance"}).json()
    assert answer == {"error": "Invalid API key"}


def test_money_pages_need_their_permissions(django_user_model):
    customer, _ = make_customer("perm", "1")
    user = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        codename__in=["view_customer", "view_balanceentry", "view_apikey"]
    ))  # fmt: skip
    client = Client()
    client.force_login(user)
    page = client.get(f"/admin/orders/customer/{customer.pk}/change/")
    assert page.status_code == 200 and b"Adjust balance" not in page.content
    assert client.post(f"/admin/orders/customer/{customer.pk}/adjust/",
                       {"amount": "5", "note": "x"}).status_code == 403  # fmt: skip
    assert client.post(f"/admin/orders/customer/{customer.pk}/new-key/").status_code == 403
    assert client.get("/admin/orders/balanceentry/add/").status_code == 403
    assert Customer.objects.get(pk=customer.pk).balance == Decimal("1")


def test_a_panel_orders_page_shows_customer_money_and_refills(admin_client):
    _, key = make_customer("shop", "5")
    service = make_service(rate=Decimal("2"))
    pk = Client().post("/api/v2", {"key": key, "action": "add", "service": service.pk,
                                   "link": "t.me/adm_chan/1", "quantity": 10}).json()["order"]  # fmt: skip
    page = admin_client.get(f"/admin/orders/order/{pk}/change/")
    assert page.status_code == 200
    assert b"charged 0.02" in page.content and b"panel status: Pending" in page.content
    assert b"shop" in admin_client.get("/admin/orders/order/").content
