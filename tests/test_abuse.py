"""Abuse suite: the broker facing hostile or careless clients, against a live gunicorn started
from the shipped config (tests/live.py: gevent workers, the database pool, DEBUG off), on
loopback only, each attack bounded in connections and time. What is asserted are bounded
outcomes with wide margins (an answer at all within seconds, a status, memory that did not
grow by tens of MB), never tight latencies.

The hostile push endpoint is the dispatcher's side: a provider server of our own on loopback
that drips, floods or nests its answers.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import json
import selectors
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from telegram_tasks.api import push_transport
from telegram_tasks.models import TelegramTask
from telegram_tasks.services import tasks_generate, tasks_push
from tests import live
from tests.factories import make_accounts, make_order

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(180)]
API = "/api/provider/telegram"


def slow_reader(port: int, raw_request: bytes) -> socket.socket:
    """A connection that pipelines ``raw_request`` as often as the kernel takes it and never
    reads: its receive window stays small (a 4 kB buffer, 536-byte segments), so the server's
    answers soon fill every buffer between them and the server's write blocks."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        sock.send(raw_request * max(1, 200_000 // len(raw_request)))
    return sock


def get(path: str, headers: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode()


def server_side(port: int, peers: set[int]) -> dict[int, tuple[int, int]]:
    """The server's (on ``port``) established connections to these client ports: the bytes in
    each one's send and receive queues."""
    held = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote, state, queues = line.split()[1:5]
        peer = int(remote.split(":")[1], 16)
        if state == "01" and int(local.split(":")[1], 16) == port and peer in peers:
            tx, rx = queues.split(":")
            held[peer] = (int(tx, 16), int(rx, 16))
    return held


def wait_until_stuck(port: int, peers: set[int], timeout: float = 20) -> None:
    """Until the server is blocked writing to every slow reader (its answers queued, their
    requests still unread), or has dropped it."""
    deadline = time.monotonic() + timeout
    before = server_side(port, peers)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = server_side(port, peers)
        if all(tx and rx and before.get(peer) == (tx, rx) for peer, (tx, rx) in now.items()):
            return  # (nothing moved in half a second)
        before = now
    raise AssertionError(f"the slow readers never held the server: {server_side(port, peers)}")


def provider_calls(url: str) -> list[tuple[str, int, int, float]]:
    """A provider's ordinary calls, each on a fresh connection, each needing the database:
    (path, status expected, status, seconds)."""
    headers = {"X-Provider-Token": live.TOKEN}
    calls = [
        ("accounts/sync", {"accounts": [{"provider_account_id": "x1", "phone": "+10000000001"}]},
         200),
        ("tasks/pull", {"limit": 10}, 200),
        ("tasks/report", {"task_id": "0" * 26, "state": "done"}, 404),  # (no such task)
        ("tasks/pull", {"limit": 10}, 200),
    ]  # fmt: skip
    answers = []
    for path, body, expected in calls:
        started = time.monotonic()
        answer = httpx.post(f"{url}{API}/{path}", json=body, headers=headers, timeout=30)
        answers.append((path, expected, answer.status_code, time.monotonic() - started))
    return answers


def test_slow_readers_on_every_public_path_never_starve_provider_calls(redis_prefix):
    """Clients that pipeline requests and never read hold the server's writes. Whatever
    those requests took from the database pool (2 connections here) was given back before the
    write, so a provider's calls still get one; and each slow connection is dropped once a
    write has waited WEB_SOCKET_TIMEOUT."""
    env = {"DB_POOL_SIZE": "2", "DB_POOL_TIMEOUT": "3", "WEB_SOCKET_TIMEOUT": "8",
           "HEALTH_CACHE_SECONDS": "0", "METRICS_TOKEN": live.TOKEN}  # fmt: skip
    token = f"Authorization: Bearer {live.TOKEN}\r\n"
    paths = [
        get("/healthz"), get("/readyz"), get("/readyz"), get("/readyz"), get("/metrics"),
        get("/metrics", token), get("/metrics", token), get("/api/schema/"), get("/api/docs/"),
        get("/admin/login/"), get("/admin/"), get(f"{API}/tasks/pull"), get("/api/nowhere"),
        get("/static/telegram_tasks/dashboard.js"), get("/readyz", token),
    ]  # fmt: skip
    with live.gunicorn(redis_prefix, **env) as server:
        readers = [slow_reader(server.port, raw) for raw in paths]
        peers = {r.getsockname()[1] for r in readers}
        try:
            wait_until_stuck(server.port, peers)
            for path, expected, status, seconds in provider_calls(server.url):
                assert status == expected and seconds < 5, (path, status, seconds)
            assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200
            deadline = time.monotonic() + 25
            while server_side(server.port, peers) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert not server_side(server.port, peers), "slow readers were never dropped"
        finally:
            for reader in readers:
                reader.close()


def test_a_flood_of_long_polls_leaves_healthz_and_another_provider_fast(redis_prefix):
    """One provider opens more long-polls than a worker serves connections: past its cap the
    pulls answer 429 at once (nothing leased), so the connections free up, /healthz answers,
    and another provider's pulls are served, its long-polls included."""
    from telegram_tasks.services.providers import providers_create

    _, other_token = providers_create(name="other", now=timezone.now())
    env = {"WEB_CONNECTIONS": "40", "MAX_WAITING_PULLS_PER_PROVIDER": "10",
           "MAX_WAITING_PULLS": "30"}  # fmt: skip
    body = json.dumps({"limit": 10, "wait_seconds": 20}).encode()
    request = (
        f"POST {API}/tasks/pull HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Provider-Token: {live.TOKEN}"
        f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    with live.gunicorn(redis_prefix, **env) as server, flood(server.port, request, 60) as seen:
        time.sleep(1.0)
        started = time.monotonic()
        assert httpx.get(server.url + "/healthz", timeout=15).status_code == 200
        assert httpx.get(server.probe_url + "/healthz", timeout=15).status_code == 200
        other = {"X-Provider-Token": other_token}
        pull = httpx.post(f"{server.url}{API}/tasks/pull", json={"limit": 5}, headers=other,
                          timeout=15)  # fmt: skip
        assert pull.status_code == 200, pull.text
        assert time.monotonic() - started < 5
        waiting = httpx.post(f"{server.url}{API}/tasks/pull", headers=other, timeout=15,
                             json={"limit": 5, "wait_seconds": 1})  # fmt: skip
        assert waiting.status_code == 200, waiting.text  # its own cap is untouched
        refused = [s for s in seen if s == 429]
        assert len(refused) >= 40, seen  # everything past the 10 that may wait


@contextlib.contextmanager
def flood(port: int, request: bytes, count: int) -> Iterator[list[int]]:
    """``count`` connections each send ``request``; a thread reads their answers' status
    lines and closes each connection once answered. Yields the statuses seen so far."""
    sel = selectors.DefaultSelector()
    seen: list[int] = []
    stop = threading.Event()
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.connect(("127.0.0.1", port))
        sel.register(sock, selectors.EVENT_WRITE, b"")

    def run() -> None:
        while not stop.is_set() and sel.get_map():
            for key, events in sel.select(timeout=0.2):
                sock = key.fileobj
                if events & selectors.EVENT_WRITE:
                    try:
                        sock.send(request)
                    except OSError:
                        sel.unregister(sock)
                        sock.close()
                        continue
                    sel.modify(sock, selectors.EVENT_READ, b"")
                    continue
                try:
                    data = key.data + sock.recv(4096)
                except OSError:
                    data = b""
                if b"\r\n" in data or not data:
                    if data:
                        seen.append(int(data.split(b" ", 2)[1]))
                    sel.unregister(sock)
                    sock.close()
                else:
                    sel.modify(sock, selectors.EVENT_READ, data)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join(5)
        for key in list(sel.get_map().values()):
            key.fileobj.close()


def test_the_admin_locks_out_after_n_failures(redis_prefix):
    """Three wrong passwords from one address: the right one is refused too (429), before its
    hash is computed; a login from the same address for another user as well."""
    user = get_user_model().objects.create_superuser("boss", password="right-pass-1234")
    with (
        live.gunicorn(redis_prefix, ADMIN_LOGIN_FAILURES="3") as server,
        httpx.Client(base_url=server.url, timeout=15) as browser,
    ):

        def login(username: str, password: str) -> httpx.Response:
            form = browser.get("/admin/login/")
            token = form.text.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"')[0]
            return browser.post(
                "/admin/login/?next=/admin/",
                data={"username": username, "password": password, "csrfmiddlewaretoken": token},
            )

        for _ in range(3):  # the form again; the third may already say "locked"
            assert login(user.username, "wrong").status_code in (200, 429)
        locked = login(user.username, "right-pass-1234")
        assert locked.status_code == 429, locked.status_code
        assert "sessionid" not in browser.cookies
    assert get_user_model().objects.get(pk=user.pk).last_login is None


def test_a_31_mb_anonymous_post_is_refused_without_growing_the_worker(redis_prefix):
    """Four 31 MB posts at once to the admin login, with a made-up CSRF cookie: each is
    refused (413) from its Content-Length, before its body is read, and the worker's memory
    does not grow by the bodies' size."""
    size = 31 * 1024 * 1024
    head = (
        "POST /admin/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: csrftoken=" + "x" * 32 +
        f"\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {size}\r\n\r\n"
    ).encode()  # fmt: skip
    with live.gunicorn(redis_prefix) as server:
        [worker] = server.workers()
        before = server.rss(worker)
        statuses = run_threads(lambda: big_post(server.port, head, size), 4)
        grown = server.rss(worker) - before
        assert statuses == [413] * 4, statuses
        assert grown < 30 * 1024 * 1024, f"the worker grew by {grown / 2**20:.0f} MB"
        assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200


def big_post(port: int, head: bytes, size: int) -> int:
    """Send the headers, give the server 3 s to answer them; only then send the body (as a
    client that does not wait would). The status the server answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head)
        sock.settimeout(3)
        try:
            first = sock.recv(4096)
        except TimeoutError:
            chunk = b"a=" + b"b" * (1024 * 1024 - 2)
            with contextlib.suppress(OSError):
                for _ in range(size // len(chunk)):
                    sock.sendall(chunk)
                sock.sendall(b"b" * (size % len(chunk)))
            sock.settimeout(60)
            first = sock.recv(4096)
        return int(first.split(b" ", 2)[1])


def run_threads(work, count: int) -> list:
    results: list = [None] * count

    def run(i: int) -> None:
        results[i] = work()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


# --- a hostile push endpoint ---------------------------------------------------------------------

DRIP_SECONDS = 30  # how long the drip keeps going if nobody hangs up
HUGE = 64 * 1024 * 1024
DEEP = b"[" * 100_000 + b"]" * 100_000


@functools.cache
def bomb() -> bytes:
    """A gzip body of 60 kB that inflates to a valid report padded with 64 MB of blanks."""
    return gzip.compress(b'{"state": "done"}' + b" " * HUGE, compresslevel=9)


class HostileProvider(socketserver.ThreadingTCPServer):
    """A push endpoint on loopback that answers by the task's link: ``done`` as a good provider
    does; ``drip`` one byte every 0.2 s; ``huge`` 64 MB; ``deep`` 100,000 nested arrays;
    ``bomb`` a gzip body (never asked for) that inflates to 64 MB."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), HostileHandler)
        self.sent: dict[str, int] = {}


class HostileHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        while True:
            headers = {}
            line = self.rfile.readline()
            if not line:
                return
            while line not in (b"\r\n", b""):
                line = self.rfile.readline()
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            task = json.loads(self.rfile.read(int(headers["content-length"])))
            kind = next(k for k in ("done", "drip", "huge", "deep", "bomb") if k in task["link"])
            if not self.answer(kind, task):
                return

    def answer(self, kind: str, task: dict) -> bool:
        if kind == "done":
            body = json.dumps({"task_id": task["task_id"], "state": "done"}).encode()
        elif kind == "deep":
            body = DEEP
        elif kind == "bomb":
            body = bomb()
        else:
            body = b'{"state": "done", "pad": "' + b" " * HUGE + b'"}'
        encoding = "Content-Encoding: gzip\r\n" if kind == "bomb" else ""
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{encoding}"
                f"Content-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
        sent = 0
        try:
            if kind == "drip":
                until = time.monotonic() + DRIP_SECONDS
                for byte in head:
                    if time.monotonic() > until:
                        return False
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    sent += 1
                    time.sleep(0.2)
                return False
            view = memoryview(head + body)
            for start in range(0, len(view), 65536):
                self.wfile.write(view[start : start + 65536])
                sent += len(view[start : start + 65536])
            self.wfile.flush()
            return True
        except OSError:
            return False
        finally:
            self.server.sent[kind] = self.server.sent.get(kind, 0) + sent


@pytest.fixture
def hostile(settings):
    server = HostileProvider()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.PROVIDER_TOKEN = live.TOKEN
    settings.TELEGRAM_TASKS = {
        **settings.TELEGRAM_TASKS,
        "PROVIDER_PUSH_URL": f"http://127.0.0.1:{server.server_address[1]}/push",
        "PUSH_ALLOW_HTTP": True,
        "PUSH_TIMEOUT_SECONDS": 2,
    }
    push_transport._transport.cache_clear()
    yield server
    push_transport._transport.cache_clear()
    server.shutdown()
    server.server_close()


def test_a_hostile_push_endpoint_costs_one_task_not_the_pass(hostile):
    """In one pass: two tasks answered well, one answer dripped a byte at a time, one of
    64 MB, one nested 100,000 deep, one gzip bomb. The pass ends in about
    PUSH_TIMEOUT_SECONDS; the good answers are applied; the drip goes back to the queue (not
    answered in time); the huge, deep and compressed answers are unreadable (the task stays
    leased: the provider may still report); and the huge one was not read past
    PUSH_MAX_ANSWER_BYTES."""
    bomb()  # (made before the pass: its time is not the dispatcher's)
    make_accounts(6)
    for i, kind in enumerate(("done", "done", "drip", "huge", "deep", "bomb")):
        make_order(action="view", link=f"t.me/{kind}{i}/1", quantity=1, execution_mode="push")
    tasks_generate(limit=10, now=timezone.now())
    started = time.monotonic()
    summary = tasks_push(now=timezone.now(), deliver=push_transport.deliver)
    took = time.monotonic() - started
    assert summary.leased == 6
    assert took < 15, f"the pass took {took:.1f} s"
    assert summary.outcomes["done"] == 2, summary.outcomes
    assert summary.outcomes["retry"] == 1 and summary.outcomes["unreadable"] == 3
    statuses = sorted(TelegramTask.objects.values_list("status", flat=True))
    assert statuses == ["done", "done", "leased", "leased", "leased", "queued"]
    assert hostile.sent.get("huge", 0) < 16 * 1024 * 1024, hostile.sent
