"""The push transport: POST each pushed task to PROVIDER_PUSH_URL and say what came back. An
interface, like a view: it signs and sends bodies and parses answers with the report
endpoint's serializer; the dispatch service (``services.push``) decides what the answers do.

Each request carries:

    Content-Type: application/json
    Idempotency-Key: <task_id>:<lease_id>    the same on every re-send of one hand-out
    X-Provider-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">
                                             keyed by the provider token (the first one)

and the body is the task exactly as ``/tasks/pull`` returns it (lease fields included).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from functools import cache
from typing import Any

import httpx
from rest_framework.exceptions import ParseError

from telegram_tasks.conf import app_settings, provider_tokens
from telegram_tasks.parsers import check_json
from telegram_tasks.serializers import ReportIn, report_in
from telegram_tasks.services.push import Accepted, Delivered, Outcome, Rejected, Unreachable

SIGNATURE_TOLERANCE_SECONDS = 300


def sign(body: bytes, token: str, timestamp: int) -> str:
    """The X-Provider-Signature header of ``body`` sent at ``timestamp``."""
    mac = hmac.new(token.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(body: bytes, header: str, tokens: Sequence[str], *, now: float | None = None) -> bool:
    """What a provider does with X-Provider-Signature: recompute the HMAC with each token it
    accepts, compare in constant time, and refuse a timestamp older than five minutes."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp, given = int(parts["t"]), parts["v1"]
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > SIGNATURE_TOLERANCE_SECONDS:
        return False
    return any(
        hmac.compare_digest(sign(body, token, timestamp).split("v1=", 1)[1], given)
        for token in tokens
    )


def check_push_url(url: str) -> str | None:
    """Why push cannot be used with this PROVIDER_PUSH_URL, or None."""
    if not url:
        return "PROVIDER_PUSH_URL is not set"
    if not provider_tokens():
        return "PROVIDER_TOKEN is not set: pushes could not be signed"
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme == "https" or (scheme == "http" and app_settings.PUSH_ALLOW_HTTP):
        return None
    return f"PROVIDER_PUSH_URL must be https:// (or set PUSH_ALLOW_HTTP): {url!r}"


class HttpTransport:
    """Sends a batch of tasks at most PUSH_CONCURRENCY at a time over one pooled client, each
    request bounded by PUSH_TIMEOUT_SECONDS: a provider that answers slowly holds one sender
    for at most that long, never the others. A send that could not start in time for its
    lease to outlast it is not made (the task goes back to the queue, no attempt counted)."""

    def __init__(self, url: str, *, timeout: float, concurrency: int) -> None:
        self.url = url
        self.concurrency = concurrency
        self.timeout = timeout
        self.client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            headers={"User-Agent": "telegram-task-broker/push"},
        )

    def __call__(self, tasks: Sequence[dict[str, Any]]) -> list[Outcome]:
        # Stop starting sends when one could still be running as the lease ends (the first
        # round always goes, however short the lease).
        deadline = time.monotonic() + max(app_settings.LEASE_SECONDS - self.timeout, 0.5)
        if len(tasks) <= 1:
            return [self.send(t, deadline) for t in tasks]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(tasks))) as pool:
            return list(pool.map(lambda t: self.send(t, deadline), tasks))

    def send(self, task: dict[str, Any], deadline: float) -> Outcome:
        if time.monotonic() > deadline:
            return Unreachable(
                "push: not sent, the pass ran out of time", retry_after=0, sent=False
            )
        body = json.dumps(task, separators=(",", ":")).encode()
        tokens = provider_tokens()
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": f"{task['task_id']}:{task['lease_id']}",
        }
        if tokens:
            headers["X-Provider-Signature"] = sign(body, tokens[0], int(time.time()))
        try:
            response = self.client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException:
            return Unreachable("push: the provider did not answer in time")
        except httpx.HTTPError as exc:
            return Unreachable(f"push: {type(exc).__name__}: {exc}"[:500])
        return classify(response, task)

    def close(self) -> None:
        self.client.close()


def classify(response: httpx.Response, task: dict[str, Any]) -> Outcome:
    status = response.status_code
    if status == 429 or status >= 500:
        return Unreachable(f"push: HTTP {status}", retry_after(response))
    if 300 <= status < 400:  # a URL that moved: the setting's fault, not the task's
        return Unreachable(f"push: HTTP {status} (redirects are not followed: fix the URL)")
    if status == 202:
        return Accepted()
    if 200 <= status < 300:
        try:
            data = response.json()
            # The report endpoint's own checks (a NUL, a lone surrogate, NaN, nesting): what
            # the ledger cannot store is as good as no answer.
            check_json(data)
        except (ValueError, RecursionError, ParseError):
            return Accepted("unreadable")
        if isinstance(data, dict):
            data.setdefault("task_id", task["task_id"])
            data.pop("lease_id", None)  # the answer is about the hand-out we sent
        serializer = ReportIn(data=data)
        if not serializer.is_valid():
            return Accepted("unreadable")  # the provider may still report through the API
        return Delivered(report_in(serializer.validated_data))
    return Rejected(status)


def retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (a number, or an HTTP date)."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


@cache
def _transport(url: str, timeout: float, concurrency: int) -> HttpTransport:
    return HttpTransport(url, timeout=timeout, concurrency=concurrency)


def deliver(tasks: Sequence[dict[str, Any]]) -> list[Outcome]:
    """The dispatcher's transport for the settings in force (one pooled client per process)."""
    url = app_settings.PROVIDER_PUSH_URL
    problem = check_push_url(url)
    if problem:
        return [Unreachable(problem) for _ in tasks]
    transport = _transport(
        url, float(app_settings.PUSH_TIMEOUT_SECONDS), int(app_settings.PUSH_CONCURRENCY)
    )
    return transport(tasks)
