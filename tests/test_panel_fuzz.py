"""A property test over /api/v2: whatever a client sends — any action, any field, any value,
as a form or as JSON, with a good key or not — the answer is JSON, never a 5xx, and money
stays where the ledger says."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orders.models import Order, Service
from orders.params import InvalidParams, order_params
from orders.services import balance_adjust
from tests.panel_world import balance, ledger_sum, make_customer, make_service

ACTIONS = ["services", "add", "status", "cancel", "refill", "refill_status", "balance"]
FIELDS = ["service", "link", "quantity", "runs", "interval", "order", "orders", "refill",
          "refills", "request_id", "answer_number"]  # fmt: skip
EDGE = ["", "0", "-1", "1", "2", "10", "1.5", "1e9", "99999999999999999999", "1,2,3", ",,",
        "t.me/durov", "t.me/durov/5", "@x", "\x00", "\ud800", "x" * 300, "١٢", "NaN", " 5 ",
        "²", "①,2", "9" * 5000, "t.me:abc/durov/1", "http://[::1/durov", "0"]  # fmt: skip

values = st.one_of(st.sampled_from(EDGE), st.text(max_size=40), st.integers(-(10**20), 10**20))


@pytest.fixture
def world(db):
    customer, key = make_customer("fuzz", "3")
    service = make_service(rate=Decimal("1.5"), min_quantity=1, max_quantity=100)
    return customer, key, service


@pytest.mark.django_db
@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(
    action=st.one_of(st.sampled_from(ACTIONS), st.text(max_size=10)),
    good_key=st.booleans(),
    fields=st.dictionaries(st.sampled_from(FIELDS), values, max_size=6),
    as_json=st.booleans(),
)
def test_any_request_gets_a_json_answer_and_never_a_5xx(world, action, good_key, fields, as_json):
    customer, key, service = world
    if "service" in fields and fields["service"] == "1":
        fields["service"] = service.pk
    body = {"key": key if good_key else "nope", "action": action, **fields}
    client = Client()
    if as_json:
        response = client.post("/api/v2", data=json.dumps(body), content_type="application/json")
    else:
        form = {k: str(v).replace("\ud800", "?") for k, v in body.items()}
        response = client.post("/api/v2", data=form)
    assert response.status_code in (200, 429), response.content
    answer = response.json()
    assert isinstance(answer, dict | list)
    if isinstance(answer, dict) and "error" in answer:
        assert isinstance(answer["error"], str) and answer["error"]
    assert balance(customer) == ledger_sum(customer) >= 0


# Values that once gave a 500: "²" is a digit to str.isdigit() but not to int(); int() refuses
# thousands of digits; a port that is not a number or an unclosed "[" in a link made urlsplit
# raise; an interval whose spacing overflows the order's 32-bit column.
LONG = "9" * 5000


@pytest.mark.parametrize(
    ("fields", "answer"),
    [
        ({"action": "status", "order": "²"}, {"error": "Incorrect order ID"}),
        ({"action": "status", "order": LONG}, {"error": "Incorrect order ID"}),
        ({"action": "status", "orders": f"²,{LONG}"},
         {"²": {"error": "Incorrect order ID"}, LONG: {"error": "Incorrect order ID"}}),
        ({"action": "cancel", "orders": "²"},
         [{"order": "²", "cancel": {"error": "Incorrect order ID"}}]),
        ({"action": "refill", "orders": "①"},
         [{"order": "①", "refill": {"error": "Incorrect order ID"}}]),
        ({"action": "refill_status", "refills": "²"},
         [{"refill": "²", "status": {"error": "Refill not found"}}]),
        ({"action": "refill_status", "refill": LONG}, {"error": "Refill not found"}),
        ({"action": "add", "service": "²", "link": "t.me/durov/1", "quantity": "5"},
         {"error": "Incorrect service ID"}),
        ({"action": "add", "service": "S", "link": "t.me/durov/1", "quantity": "²"},
         {"error": "Incorrect quantity: give a whole number"}),
        ({"action": "add", "service": "S", "link": "t.me/durov/1", "quantity": "5", "runs": "³",
          "interval": "5"}, {"error": "Incorrect runs: give a whole number"}),
        ({"action": "add", "service": "S", "link": "t.me/durov/1", "quantity": "5", "runs": "2",
          "interval": "9999999999"}, {"error": "Incorrect interval: at most 35791394"}),
    ],
)  # fmt: skip
def test_values_int_refuses_are_the_markets_errors_not_a_5xx(world, fields, answer):
    customer, key, service = world
    if fields.get("service") == "S":
        fields["service"] = str(service.pk)
    response = Client().post("/api/v2", {"key": key, **fields})
    assert (response.status_code, response.json()) == (200, answer)
    assert balance(customer) == ledger_sum(customer) == Decimal("3")


@pytest.mark.parametrize("link", ["https://t.me:abc/durov/1", "http://[::1/durov/1", "tg://[x"])
def test_a_link_urlsplit_refuses_is_an_incorrect_link(world, link):
    customer, key, service = world
    fields = {"action": "add", "service": service.pk, "link": link, "quantity": 5}
    answer = Client().post("/api/v2", {"key": key, **fields}).json()
    assert answer["error"].startswith("Incorrect link: ")
    assert balance(customer) == Decimal("3")


def test_the_longest_interval_still_makes_an_order(world):
    _, key, service = world
    fields = {"action": "add", "service": service.pk, "link": "t.me/durov/1", "quantity": 1,
              "runs": 2, "interval": 35791394}  # fmt: skip
    made = Client().post("/api/v2", {"key": key, **fields}).json()
    assert Order.objects.get(pk=made["order"]).interval_seconds == 35791394 * 60


def test_too_many_fields_is_a_json_error_and_a_list_only_holds_ids(world):
    customer, key, service = world
    crowd = {f"f{i}": "1" for i in range(1200)}  # past DATA_UPLOAD_MAX_NUMBER_FIELDS
    response = Client().post("/api/v2", {"key": key, "action": "balance", **crowd})
    assert response.status_code == 200
    assert response.json()["error"].startswith("Incorrect request: ")
    # A JSON list is an id list (orders, refills), not a quantity of [5].
    body = {"key": key, "action": "add", "service": service.pk, "link": "t.me/durov/1",
            "quantity": [5]}  # fmt: skip
    answer = Client().post("/api/v2", json.dumps(body), content_type="application/json").json()
    assert answer == {"error": "Incorrect quantity: give a whole number"}
    assert balance(customer) == Decimal("3")


def test_a_charge_larger_than_any_balance_is_not_enough_funds(world):
    customer, key, _ = world
    dear = make_service(rate=Decimal("999999999.99999"), max_quantity=1_000_000)
    fields = {"action": "add", "service": dear.pk, "link": "t.me/durov/1", "quantity": 100_000}
    answer = Client().post("/api/v2", {"key": key, **fields}).json()
    assert answer == {"error": "Not enough funds on balance"}
    assert Order.objects.count() == 0 and balance(customer) == Decimal("3")


def test_a_poll_answer_int_refuses_is_invalid_params():
    with pytest.raises(InvalidParams, match="answer_number"):
        order_params("poll_vote", {}, "²")
    with pytest.raises(InvalidParams, match="answer_number"):
        order_params("poll_vote", {}, "9" * 5000)


def test_runs_and_interval_of_zero_are_an_ordinary_order(world):
    """Some panel scripts send runs=0&interval=0 with every order: not a drip-feed, and so not
    refused by a service without one."""
    customer, key, _ = world
    plain = make_service(dripfeed=False)
    fields = {"action": "add", "service": plain.pk, "link": "t.me/durov/1", "quantity": 10,
              "runs": "0", "interval": "0"}  # fmt: skip
    made = Client().post("/api/v2", {"key": key, **fields}).json()
    order = Order.objects.get(pk=made["order"])
    assert (order.quantity, order.interval_seconds) == (10, 0)
    assert balance(customer) == Decimal("3") - Decimal("0.009") == ledger_sum(customer)
    fields.update(runs="0", interval="5")
    assert Client().post("/api/v2", {"key": key, **fields}).json() == {
        "error": "Drip-feed is not available for this service"
    }


def test_an_idempotency_header_with_a_nul_is_refused_in_json(world):
    customer, key, service = world
    fields = {"action": "add", "service": service.pk, "link": "t.me/durov/1", "quantity": 5}
    response = Client().post("/api/v2", {"key": key, **fields}, HTTP_IDEMPOTENCY_KEY="a\x00b")
    assert (response.status_code, response.json()) == (
        200, {"error": "request_id (Idempotency-Key) holds a NUL character"},
    )  # fmt: skip
    assert Order.objects.count() == 0 and balance(customer) == Decimal("3")


def test_a_retry_answers_the_first_order_whatever_changed_since(world):
    """The first add made and charged the order; its answer was lost. Meanwhile the operator
    disabled the service, or lowered its maximum, and the balance ran out: the retry still
    answers that order (an error would tell the panel no order exists)."""
    customer, key, service = world
    fields = {"action": "add", "service": service.pk, "link": "t.me/Durov/7", "quantity": 50,
              "runs": 2, "interval": 5, "request_id": "lost-answer"}  # fmt: skip
    first = Client().post("/api/v2", {"key": key, **fields}).json()
    assert balance(customer) == Decimal("3") - Decimal("0.15")
    Service.objects.filter(pk=service.pk).update(max_quantity=10)
    balance_adjust(customer_id=customer.pk, amount=Decimal("-2.85"), note="spent", actor="t",
                   now=timezone.now())  # fmt: skip
    again = {**fields, "link": "https://t.me/durov/7"}  # the same target, spelled otherwise
    assert Client().post("/api/v2", {"key": key, **again}).json() == first
    Service.objects.filter(pk=service.pk).update(enabled=False)
    assert Client().post("/api/v2", {"key": key, **fields}).json() == first
    other = {**fields, "quantity": 49}
    assert Client().post("/api/v2", {"key": key, **other}).json() == {
        "error": "This request_id (Idempotency-Key) was used for another order"
    }
    assert Order.objects.count() == 1
    assert balance(customer) == Decimal("0") == ledger_sum(customer)
