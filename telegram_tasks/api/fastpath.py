"""The provider's most frequent request — one task's report in its common shape — answered
without DRF's machinery (request wrapping, negotiation, serializer, renderer), which costs more
than the report itself. Only a body the full path would accept as it is goes this way, and it
gets the same answer; anything else (a batch, an error given as an object, ``data``, any
invalid value, a missing or wrong token, another content type) goes the full way, which
answers it as always. The service call and its guarantees are the same either way."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from telegram_tasks import services
from telegram_tasks.api.authentication import ProviderCaller, authenticate_token
from telegram_tasks.api.serializers import TASK_ID, error_code
from telegram_tasks.conf import app_settings

STATES = frozenset(s.value for s in services.ReportState)
KEYS = frozenset(
    {"task_id", "state", "ok", "error", "retry_after", "provider_task_id", "data", "lease_id"}
)


def single_report(request: HttpRequest) -> HttpResponse | None:
    """The answer to a single report in its common shape, or None (the full path answers)."""
    if request.content_type != "application/json":
        return None
    if request.content_params.get("charset", "utf-8").lower() not in ("utf-8", "utf8"):
        return None
    accept = request.headers.get("Accept", "*/*")
    if "json" not in accept and "*/*" not in accept:
        return None
    caller = _authenticated(request)
    if caller is None:
        return None
    try:
        body = json.loads(request.body.decode("utf-8"))
    except (ValueError, RecursionError, RequestDataTooBig):
        return None
    report = common_report(body)
    if report is None:
        return None
    try:
        [out] = services.tasks_report(reports=[report], now=timezone.now(), provider=caller)
        if out.error is not None:
            out.error.details = {"task_id": out.task_id}
            raise out.error
    except Exception as exc:
        return _error(request, exc)
    answer: dict[str, Any] = {"ok": True, "task_id": out.task_id, "status": out.status}
    if out.duplicate:
        answer["duplicate"] = True
    return _json(answer, 200)


def _authenticated(request: HttpRequest) -> ProviderCaller | None:
    """The calling provider, as the full path's authentication finds it (the same function);
    None for no token, a wrong one, or a database that cannot say (the full path answers)."""
    given = request.META.get("HTTP_X_PROVIDER_TOKEN")
    if given is None:
        return None
    try:
        return authenticate_token(given)
    except DatabaseError:
        return None


def common_report(body: Any) -> services.ReportIn | None:
    """The report, if ``body`` is a single report the full path would take exactly as sent
    (the same checks as ``serializers.ReportIn``, for the values this path accepts)."""
    if not isinstance(body, dict) or not KEYS.issuperset(body):
        return None
    task_id, state = body.get("task_id"), body.get("state")
    if not (isinstance(task_id, str) and len(task_id) == 26 and TASK_ID.match(task_id)):
        return None
    if not isinstance(state, str) or state not in STATES:
        return None
    ok = body.get("ok")
    if ok is not None and (
        not isinstance(ok, bool)
        or (ok is False and state == "done")
        or (ok is True and state == "failed")
    ):
        return None
    if body.get("data") is not None:
        return None
    retry_after = body.get("retry_after")
    if retry_after is not None and (
        isinstance(retry_after, bool)
        or not isinstance(retry_after, int)
        or not 0 <= retry_after <= app_settings.MAX_WAIT_SECONDS
        or (retry_after and state != "failed")
    ):
        return None
    error = body.get("error")
    if error is not None and not (_text(error) and len(error) <= 2000):
        return None
    provider_task_id, lease_id = body.get("provider_task_id"), body.get("lease_id")
    if provider_task_id is not None and not (_text(provider_task_id) and provider_task_id):
        return None
    if provider_task_id is not None and len(provider_task_id) > 255:
        return None
    if lease_id is not None and not (_text(lease_id) and 1 <= len(lease_id) <= 26):
        return None
    return services.ReportIn(
        task_id=task_id,
        state=state,
        error_code=(error_code(error) or None) if error else None,
        error_message=error or None,
        retry_after=retry_after,
        provider_task_id=provider_task_id,
        lease_id=lease_id,
    )


def _text(value: Any) -> bool:
    """A string PostgreSQL can store as it is (no NUL, no lone surrogate)."""
    if not isinstance(value, str) or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json(data: Any, status: int, headers: dict[str, str] | None = None) -> HttpResponse:
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return HttpResponse(
        body.encode(), status=status, content_type="application/json", headers=headers
    )


def _error(request: HttpRequest, exc: Exception) -> HttpResponse:
    """The error as the API's one exception handler renders it (status, envelope, headers)."""
    from telegram_tasks.api.exception_handlers import api_exception_handler

    response = api_exception_handler(exc, {"request": request})
    if response is None:
        raise exc
    headers = {k: v for k, v in response.items() if k.lower() != "content-type"}
    out = _json(response.data, response.status_code, headers)
    if getattr(response, "_has_been_logged", False):
        out._has_been_logged = True  # (see exception_handlers.logged)
    return out
