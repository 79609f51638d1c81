"""A property test over /api/v2: whatever a client sends — any action, any field, any value,
as a form or as JSON, with a good key or not — the answer is JSON, never a 5xx, and money
stays where the ledger says."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.panel_world import balance, ledger_sum, make_customer, make_service

ACTIONS = ["services", "add", "status", "cancel", "refill", "refill_status", "balance"]
FIELDS = ["service", "link", "quantity", "runs", "interval", "order", "orders", "refill",
          "refills", "request_id", "answer_number"]  # fmt: skip
EDGE = ["", "0", "-1", "1", "2", "10", "1.5", "1e9", "99999999999999999999", "1,2,3", ",,",
        "t.me/durov", "t.me/durov/5", "@x", "\x00", "\ud800", "x" * 300, "١٢", "NaN", " 5 "]  # fmt: skip

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
