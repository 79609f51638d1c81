"""What every request goes through before the app sees it, facing the internet: a database
connection given back before the response is written, a body refused by its size before it is
read, and the client's address as the proxy in front saw it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from csp.middleware import CSPMiddleware
from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase

from telegram_tasks.api.exception_handlers import envelope


class ReleaseDatabase:
    """Gives the request's database connections back (to the pool) as soon as its response is
    made, before the server writes it: writing to a client that reads slowly, or not at all,
    then holds a socket, never one of the pool's few connections.

    Django would give them back at ``request_finished``, after the last byte is written. Only
    what Django would do then is done here (``close_if_unusable_or_obsolete``: a pooled
    connection goes back to the pool, a persistent one stays for its CONN_MAX_AGE), never
    inside a transaction, and not for a streaming response, whose body may still query."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not response.streaming:
            for conn in connections.all(initialized_only=True):
                if not conn.in_atomic_block:
                    conn.close_if_unusable_or_obsolete()
        return response


class BodyLimit:
    """Refuses a request whose declared body is larger than its route takes, with 413 and the
    API's error envelope, before anything reads it (the server then discards it unread).

    The limit is REQUEST_MAX_BODY_BYTES (Django's default size, 2.5 MB), unless the view (or
    its DRF class) declares ``max_body_bytes``: a number, or a callable that returns one (read
    per request, so a setting can change it). A body without a Content-Length (chunked) is
    never read by Django: it sees an empty one."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view: Callable[..., Any], args: Any, kwargs: Any
    ) -> HttpResponse | None:
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        limit = route_body_limit(view)
        if declared <= limit:
            return None
        return JsonResponse(
            envelope(
                "batch_too_large",
                f"request body is too large: {declared} bytes, at most {limit} here",
                {"max": limit, "got": declared},
            ),
            status=413,
        )


def route_body_limit(view: Callable[..., Any]) -> int:
    """The most bytes a route takes in a body."""
    declared = getattr(view, "max_body_bytes", None)
    if declared is None:
        declared = getattr(getattr(view, "cls", None), "max_body_bytes", None)
    if declared is None:
        return settings.REQUEST_MAX_BODY_BYTES
    return declared() if callable(declared) else declared


class PageCSP(CSPMiddleware):
    """django-csp's Content-Security-Policy, on HTML pages only: a JSON or text answer runs no
    script, and building the policy for each of the API's answers would cost its hot paths
    more than a tenth of a millisecond."""

    def process_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        if not response.get("Content-Type", "").startswith("text/html"):
            return response
        return super().process_response(request, response)


def client_ip(request: HttpRequest) -> str | None:
    """The client's address (django-axes counts failed logins by it): the peer's, or with
    USE_X_REAL_IP the one the proxy in front put in X-Real-IP (nginx overwrites whatever a
    client sent there, so it cannot be forged through the proxy)."""
    if getattr(settings, "USE_X_REAL_IP", False):
        forwarded = request.META.get("HTTP_X_REAL_IP", "").strip()
        if forwarded:
            return forwarded
    return request.META.get("REMOTE_ADDR")
