"""The single report's fast path takes only what the full path (DRF, ReportIn) would take as it
is, reads it the same, and answers the same; everything else goes the full way."""

import itertools

import pytest
from rest_framework.views import APIView

from telegram_tasks.api import fastpath
from telegram_tasks.api import serializers as s

from .test_api import BASE, api, generate, provider_token, pull  # noqa: F401 (fixtures)

TASK = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
VALUES = {
    "task_id": [TASK, TASK.lower(), TASK + "\n", "x" * 26, 5, None, "missing"],
    "state": ["done", "failed", "pending", "DONE", "", 1, None, "missing"],
    "ok": [True, False, None, 1, "true", "missing"],
    "error": ["FLOOD_WAIT_30", "USER_NOT_PARTICIPANT", "", "x" * 2001, "bad\x00", "\ud800",
              {"code": "X"}, None, 3, "missing"],
    "retry_after": [0, 30, 10**9, -1, True, 2.5, "5", None, "missing"],
    "provider_task_id": ["p-1", "", "y" * 256, None, 7, "missing"],
    "lease_id": ["01ARZ3NDEKTSV4RRFFQ69G5FAW", "", "z" * 27, None, "missing"],
    "data": [None, {"a": 1}, "missing"],
}  # fmt: skip


def bodies():
    """Every combination of a few fields' values (the others left out), and a few wholes."""
    fields = list(VALUES)
    for a, b in itertools.combinations(fields, 2):
        for va, vb in itertools.product(VALUES[a], VALUES[b]):
            body = {"task_id": TASK, "state": "failed"}
            for field, value in ((a, va), (b, vb)):
                if value == "missing":
                    body.pop(field, None)
                else:
                    body[field] = value
            yield body
    yield {"task_id": TASK, "state": "done", "unknown": 1}
    yield [{"task_id": TASK, "state": "done"}]
    yield {"reports": [{"task_id": TASK, "state": "done"}]}
    yield "done"


def test_the_fast_path_reads_a_body_as_the_full_path_does():
    taken = 0
    for body in bodies():
        fast = fastpath.common_report(body)
        if fast is None:
            continue  # the full path answers it, whatever it is
        serializer = s.ReportIn(data=body)
        assert serializer.is_valid(), (body, serializer.errors)
        assert fast == s.report_in(serializer.validated_data), body
        taken += 1
    assert taken > 100  # (the common shapes are many of them)


def test_the_seed_shapes_take_the_fast_path():
    for body in (
        {"task_id": TASK, "state": "done"},
        {"task_id": TASK, "state": "done", "ok": True, "error": None, "retry_after": None,
         "provider_task_id": "provider_task_123", "data": None},
        {"task_id": TASK, "state": "failed", "ok": False, "error": "FLOOD_WAIT_30"},
        {"task_id": TASK, "state": "failed", "error": "TIMEOUT", "retry_after": 60},
        {"task_id": TASK, "state": "pending", "lease_id": "01ARZ3NDEKTSV4RRFFQ69G5FAW"},
    ):  # fmt: skip
        assert fastpath.common_report(body) is not None, body


@pytest.mark.django_db
def test_a_single_report_skips_drf_and_answers_the_same(api, monkeypatch):  # noqa: F811
    generate(n_accounts=2, quantity=2)
    first, second = pull(api, limit=2)
    url = f"{BASE}/tasks/report"
    full = api.post(url, {"task_id": first["task_id"], "state": "done"}, format="json")
    twice = api.post(url, {"task_id": first["task_id"], "state": "done"}, format="json")
    missing = api.post(url, {"task_id": TASK, "state": "done"}, format="json")

    def refuse(*args, **kwargs):
        raise AssertionError("the single report went through DRF")

    monkeypatch.setattr(APIView, "initial", refuse)
    fast = api.post(url, {"task_id": second["task_id"], "state": "done"}, format="json")
    fast_twice = api.post(url, {"task_id": second["task_id"], "state": "done"}, format="json")
    fast_missing = api.post(url, {"task_id": TASK, "state": "done"}, format="json")
    assert (fast.status_code, fast.json()) == (
        full.status_code,
        {**full.json(), "task_id": second["task_id"]},
    )
    assert (fast_twice.status_code, fast_twice.json()) == (
        twice.status_code,
        {**twice.json(), "task_id": second["task_id"]},
    )
    assert (fast_missing.status_code, fast_missing.json()) == (
        missing.status_code,
        missing.json(),
    )
    assert fast.json() == {"ok": True, "task_id": second["task_id"], "status": "done"}
    assert fast_twice.json()["duplicate"] is True and fast_missing.status_code == 404
    # A wrong token is the full path's to refuse.
    monkeypatch.undo()
    api.credentials(HTTP_X_PROVIDER_TOKEN="wrong")
    refused = api.post(url, {"task_id": TASK, "state": "done"}, format="json")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "authentication_failed"
