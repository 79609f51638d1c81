"""The one DRF exception handler: every API error in one envelope,
``{"ok": false, "error": {"code", "message", "details"}}``, with the HTTP status chosen here."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse, UnreadablePostError
from django.views.decorators.csrf import csrf_exempt
from redis.exceptions import RedisError
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from telegram_tasks.claims import ClaimsStateLost
from telegram_tasks.exceptions import (
    BatchTooLarge,
    DomainError,
    TaskConflict,
    TaskNotFound,
    TooManyWaiting,
)

logger = logging.getLogger(__name__)

# The HTTP status of each domain error (the most specific class wins).
DOMAIN_STATUS: dict[type[DomainError], int] = {
    TaskNotFound: status.HTTP_404_NOT_FOUND,
    TaskConflict: status.HTTP_409_CONFLICT,
    BatchTooLarge: status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    TooManyWaiting: status.HTTP_429_TOO_MANY_REQUESTS,
}

_DRF_CODES = {
    exceptions.ValidationError: "validation_error",
    exceptions.ParseError: "malformed_json",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.Throttled: "throttled",
}


def logged(response: Response) -> Response:
    """An outage's 503 was logged above as the WARNING it is (a dependency away, the client
    told to retry): Django's request logger would log it again as an ERROR, the level kept for
    the broker's own faults (a 500). Django skips a response marked as logged."""
    response._has_been_logged = True  # (django.utils.log.log_response)
    return response


def http_status(error: DomainError) -> int:
    for cls in type(error).__mro__:
        if cls in DOMAIN_STATUS:
            return DOMAIN_STATUS[cls]
    return status.HTTP_400_BAD_REQUEST


def envelope(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message, "details": details or {}}}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        retry = getattr(exc, "retry_after", None)
        return Response(
            envelope(exc.code, exc.message, exc.details),
            status=http_status(exc),
            headers={"Retry-After": str(retry)} if retry else None,
        )
    if isinstance(exc, ClaimsStateLost):
        logger.warning("API request refused until the claim state is restored: %s", exc)
        return logged(
            Response(
                envelope("service_unavailable", str(exc)),
                status=status.HTTP_503_SERVICE_UNAVAILABLE,
                headers={"Retry-After": "30"},
            )
        )
    if isinstance(exc, RequestDataTooBig):
        return Response(
            envelope("batch_too_large", "request body is too large"),
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, UnreadablePostError):
        # The client stopped sending its body (or sent it too slowly: WEB_SOCKET_TIMEOUT).
        return Response(
            envelope("malformed_json", "the request body could not be read in full"),
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, DatabaseError | RedisError):
        # Nothing half-applied remains: services write inside transactions that this error
        # rolled back. The client retries later.
        which = "PostgreSQL" if isinstance(exc, DatabaseError) else "Redis"
        logger.warning("API request failed, %s unavailable: %s", which, exc)
        return logged(
            Response(
                envelope("service_unavailable", f"{which} is unavailable; retry later"),
                status=status.HTTP_503_SERVICE_UNAVAILABLE,
                headers={"Retry-After": "5"},
            )
        )
    response = exception_handler(exc, context)
    if response is None:
        return None
    code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "error")
    if isinstance(exc, exceptions.ValidationError):
        message = _first_message(exc.detail)
        details = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
    else:
        message = str(getattr(exc, "detail", exc))
        details = {}
    response.data = envelope(code, message, details)
    return response


def _first_message(detail: Any, path: str = "") -> str:
    """The first validation message, prefixed with the field it concerns."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            if isinstance(key, int):  # an item of a list field
                return _first_message(value, f"{path}[{key}]")
            name = key if key != "non_field_errors" else ""
            return _first_message(value, f"{path}.{name}".strip(".") if name else path)
    if isinstance(detail, list) and detail:
        for i, value in enumerate(detail):
            if value:
                nested = isinstance(value, dict | list)
                return _first_message(value, f"{path}[{i}]" if nested else path)
    text = str(detail)
    return f"{path}: {text}" if path else text


@csrf_exempt
def json_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Anything else under /api/ answers in the envelope, not Django's HTML 404 — a POST too (a
    provider's wrong path, ``…/tasks/pull/``), which would otherwise meet the CSRF check's HTML
    403 first: nothing here reads a session or changes anything."""
    return JsonResponse(envelope("not_found", f"no endpoint at {request.path}"), status=404)
