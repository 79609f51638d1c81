"""The push transport: POST each pushed task to its provider's push URL and say what came back.
An interface, like a view: it signs and sends bodies and parses answers with the report
endpoint's serializer; the dispatch service (``services.dispatch``) decides what the answers do,
and names each provider's URL and signing key (a ``PushTarget``).

Each request carries:

    Content-Type: application/json
    Idempotency-Key: <task_id>:<lease_id>    the same on every re-send of one hand-out
    X-Provider-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">
                                             keyed by the provider's signing key
                                             (services.dispatch.signing_secret)

and the body is the task exactly as ``/tasks/pull`` returns it (lease fields included).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from functools import cache
from typing import Any

import httpcore
import httpx
from rest_framework.exceptions import ParseError

from telegram_tasks.api.parsers import check_json
from telegram_tasks.api.serializers import ReportIn, report_in
from telegram_tasks.conf import app_settings
from telegram_tasks.services.dispatch import (
    Accepted,
    Delivered,
    Outcome,
    PushTarget,
    Rejected,
    Unreachable,
    push_url_problem,
    target_problem,
)

SIGNATURE_TOLERANCE_SECONDS = 300
logger = logging.getLogger(__name__)


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
    """Why pushes cannot go to this PROVIDER_PUSH_URL (its scheme), or None."""
    if not url:
        return "PROVIDER_PUSH_URL is not set"
    problem = push_url_problem(url)
    return None if problem is None else f"PROVIDER_PUSH_URL: {problem}"


class HttpTransport:
    """Sends a batch of tasks at most PUSH_CONCURRENCY at a time over one connection pool
    (httpcore), each send bounded as a whole by PUSH_TIMEOUT_SECONDS, from its connect to the
    last byte of the answer (``DeadlineBackend``), and its answer by PUSH_MAX_ANSWER_BYTES: a
    provider that answers slowly, or a byte at a time, or without end, holds one sender for
    at most that long, never the others. Whatever goes wrong with one send (an exception
    included) is that task's outcome alone. A send that could not start in time for its lease
    to outlast it is not made (the task goes back to the queue, no attempt counted)."""

    def __init__(self, url: str, *, timeout: float, concurrency: int, max_answer: int) -> None:
        self.url = url
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_answer = max_answer
        self.pool = httpcore.ConnectionPool(
            max_connections=concurrency,
            max_keepalive_connections=concurrency,
            network_backend=DeadlineBackend(),
        )

    def __call__(self, tasks: Sequence[dict[str, Any]], secret: str | None = None) -> list[Outcome]:
        """Send the tasks, each signed with ``secret`` (none: unsigned)."""
        # Stop starting sends when one could still be running as the lease ends (the first
        # round always goes, however short the lease).
        deadline = time.monotonic() + max(app_settings.LEASE_SECONDS - self.timeout, 0.5)
        if len(tasks) <= 1:
            return [self.send(t, deadline, secret) for t in tasks]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(tasks))) as pool:
            return list(pool.map(lambda t: self.send(t, deadline, secret), tasks))

    def send(self, task: dict[str, Any], deadline: float, secret: str | None = None) -> Outcome:
        if time.monotonic() > deadline:
            return Unreachable(
                "push: not sent, the pass ran out of time", retry_after=0, sent=False
            )
        try:
            return self._send(task, secret)
        except Exception as exc:  # one answer never costs the other tasks of the pass
            logger.warning("push of task %s failed: %r", task.get("task_id"), exc, exc_info=True)
            return Unreachable(f"push: {type(exc).__name__}: {exc}"[:500])

    def _send(self, task: dict[str, Any], secret: str | None) -> Outcome:
        body = json.dumps(task, separators=(",", ":")).encode()
        headers = [
            (b"Host", httpx.URL(self.url).netloc),
            (b"User-Agent", b"telegram-task-broker/push"),
            (b"Content-Type", b"application/json"),
            (b"Content-Length", str(len(body)).encode()),
            (b"Idempotency-Key", f"{task['task_id']}:{task['lease_id']}".encode()),
        ]
        if secret:
            headers.append((b"X-Provider-Signature", sign(body, secret, int(time.time())).encode()))
        limits = dict.fromkeys(("connect", "read", "write", "pool"), self.timeout)
        _SEND.deadline = time.monotonic() + self.timeout
        try:
            with self.pool.stream(
                "POST", self.url, headers=headers, content=body, extensions={"timeout": limits}
            ) as response:
                content = read_at_most(response.iter_stream(), self.max_answer)
                status, answer_headers = response.status, response.headers
        except httpcore.TimeoutException:
            return Unreachable("push: the provider did not answer in time")
        except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
            return Unreachable(f"push: {type(exc).__name__}: {exc}"[:500])
        finally:
            _SEND.deadline = None
        if content is None:
            logger.warning(
                "push: the answer about task %s is over %d bytes; not read",
                task["task_id"], self.max_answer,
            )  # fmt: skip
        # Only the header the answer is read by: with a Content-Encoding, httpx would inflate
        # the body (we ask for none; a 1 MB bomb could inflate to gigabytes).
        kept = [(k, v) for k, v in answer_headers if k.lower() == b"retry-after"]
        answer = httpx.Response(status, headers=kept, content=content or b"")
        return classify(answer, task, complete=content is not None)

    def close(self) -> None:
        self.pool.close()


def read_at_most(chunks: Iterable[bytes], most: int) -> bytes | None:
    """The answer's body, or None as soon as it runs past ``most`` bytes (the rest unread)."""
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > most:
            return None
    return bytes(body)


class _Send(threading.local):
    """The running send's deadline (time.monotonic()), per sender thread."""

    deadline: float | None = None


_SEND = _Send()


def _left(timeout: float | None, expired: type[Exception]) -> float | None:
    """The timeout of one socket operation of the running send: what is left of its deadline
    when that is shorter (``expired`` when nothing is left)."""
    if _SEND.deadline is None:
        return timeout
    left = _SEND.deadline - time.monotonic()
    if left <= 0:
        raise expired("push: the send's deadline passed")
    return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write waits no longer than the running send has left:
    a per-read timeout alone lets a byte every few seconds hold a send for ever."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self.inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.inner.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self.inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        timeout = _left(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self.inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's own sockets, each wrapped in a ``DeadlineStream``."""

    def __init__(self) -> None:
        self.inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        timeout = _left(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(
            self.inner.connect_tcp(host, port, timeout, local_address, socket_options)
        )

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        timeout = _left(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self.inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


def classify(response: httpx.Response, task: dict[str, Any], *, complete: bool = True) -> Outcome:
    """What the provider's answer says of the task (``complete``: its body was read whole)."""
    status = response.status_code
    if status == 429 or status >= 500:
        return Unreachable(f"push: HTTP {status}", retry_after(response))
    if 300 <= status < 400:  # a URL that moved: the setting's fault, not the task's
        return Unreachable(f"push: HTTP {status} (redirects are not followed: fix the URL)")
    if status == 202:
        return Accepted()
    if 200 <= status < 300:
        if not complete:
            return Accepted("unreadable")
        try:
            data = json.loads(response.content)
            # The report endpoint's own checks (a NUL, a lone surrogate, NaN, nesting deeper
            # than JSON_MAX_DEPTH): what the ledger cannot store is as good as no answer.
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
def _transport(url: str, timeout: float, concurrency: int, max_answer: int) -> HttpTransport:
    return HttpTransport(url, timeout=timeout, concurrency=concurrency, max_answer=max_answer)


def deliver(target: PushTarget, tasks: Sequence[dict[str, Any]]) -> list[Outcome]:
    """The dispatcher's transport: one provider's tasks to its URL, signed with its key (one
    pooled client per URL and process)."""
    problem = target_problem(target)
    if problem:
        return [Unreachable(problem) for _ in tasks]
    transport = _transport(
        target.url,
        float(app_settings.PUSH_TIMEOUT_SECONDS),
        int(app_settings.PUSH_CONCURRENCY),
        int(app_settings.PUSH_MAX_ANSWER_BYTES),
    )
    return transport(tasks, target.secret)
