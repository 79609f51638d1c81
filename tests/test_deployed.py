"""The system as `make run` deploys it: scripts/devstack.py starts the Procfile's processes (web,
worker, beat) under honcho against a database of its own, and nobody calls a command. A provider
syncs its accounts over HTTP, an operator adds a pull order and a push order in the admin, and
beat's passes (generation, the push dispatcher to a real provider on loopback, housekeeping)
take both to completion while the test pulls and reports like a provider. Then Ctrl-C stops it
all; neither the worker's nor beat's (nor web's) log may hold an ERROR line or a traceback.

It takes a minute and a half: beat's first generation tick comes a minute after migration.
"""

from __future__ import annotations

import contextlib
import html.parser
import os
import pty
import re
import secrets
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent
LOG_PROBLEM = re.compile(r"\bERROR\b|\bCRITICAL\b|Traceback \(most recent call last\)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


class Terminal:
    """`scripts/devstack.py run` in a pseudo-terminal, as a developer runs `make run` (so
    Ctrl-C is a real terminal's), its output collected."""

    def __init__(self, env: dict[str, str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child
            os.chdir(ROOT)
            os.execve(sys.executable, [sys.executable, "scripts/devstack.py", "run"], env)  # noqa: S606
        self.output = bytearray()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                ready, _, _ = select.select([self.fd], [], [], 0.5)
                if ready:
                    data = os.read(self.fd, 65536)
                    if not data:
                        return
                    self.output += data
            except OSError:
                return

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace")

    def ctrl_c(self, timeout: float = 90) -> int:
        os.write(self.fd, b"\x03")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.reader.join(5)
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.2)
        raise AssertionError("make run did not stop after Ctrl-C")

    def stop(self, marker: str) -> None:
        """Whatever happened: Ctrl-C, and then every process started with ``marker`` in its
        environment killed (honcho runs each of its processes in a session of its own, which
        a kill of ours would not reach)."""
        with contextlib.suppress(OSError, AssertionError, ChildProcessError):
            if not os.waitpid(self.pid, os.WNOHANG)[0]:
                self.ctrl_c(timeout=60)
        for pid in _started_with(marker):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _started_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if marker.encode() in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
    return found


class Form(html.parser.HTMLParser):
    """The fields of an admin add form, with the values the page gives them."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "input" and a.get("name") and a.get("type") not in ("submit", "checkbox"):
            self.fields[a["name"]] = a.get("value") or ""
        elif tag == "select" and a.get("name"):
            self._select = a["name"]
            self.fields.setdefault(a["name"], "")
        elif tag == "option" and self._select and "selected" in a:
            self.fields[self._select] = a.get("value") or ""
        elif tag == "textarea" and a.get("name"):
            self._textarea = a["name"]
            self.fields[a["name"]] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea:
            self.fields[self._textarea] += data.strip()


def wait_for(what: str, check, timeout: float, terminal: Terminal):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(1)
    raise AssertionError(
        f"{what}: not within {timeout} s. The stack said:\n{terminal.text[-6000:]}"
    )


@pytest.fixture
def stack(tmp_path):
    base_db = os.environ["DATABASE_URL"]
    redis_url = os.environ["REDIS_URL"]
    if "+cluster" in redis_url.split("://", 1)[0]:
        pytest.skip("the deployed stack runs on a single Redis (Celery's broker)")
    name = f"{urlsplit(base_db).path.lstrip('/')}_deployed"
    admin_url = with_database(base_db, "postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    # A Redis database of its own (Celery's queues included): emptied before and after.
    parts = urlsplit(redis_url)
    redis_db = urlunsplit((parts.scheme, parts.netloc, "/15", "", ""))
    import redis

    redis.Redis.from_url(redis_db).flushdb()
    web_port, provider_port = free_port(), free_port()
    token = secrets.token_urlsafe(32)
    web = f"http://127.0.0.1:{web_port}"
    log = tmp_path / "provider.jsonl"
    log.touch()
    provider = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "push_provider.py"), str(provider_port), web, token,
         str(log)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert provider.stdout.readline().strip() == "ready"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_SETTINGS"))},
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "DEVSTACK_DIR": str(tmp_path / "devstack"),
        "DATABASE_URL": with_database(base_db, name),
        "REDIS_URL": redis_db,
        "WEB_PORT": str(web_port),
        "PROVIDER_TOKEN": token,
        "PROVIDER_PUSH_URL": f"http://127.0.0.1:{provider_port}/push",
        "PUSH_ALLOW_HTTP": "1",
        "CELERY_CONCURRENCY": "2",
    }
    terminal = Terminal(env)
    try:
        yield terminal, web, token, env, tmp_path / "devstack"
    finally:
        terminal.stop(f"DEVSTACK_DIR={env['DEVSTACK_DIR']}")
        provider.kill()
        provider.wait()
        redis.Redis.from_url(redis_db).flushdb()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_make_run_takes_pull_and_push_orders_to_completion_with_no_command(stack):
    terminal, web, token, env, state = stack
    http = httpx.Client(base_url=web, timeout=30)
    wait_for("the web server", lambda: _answers(http, "/healthz"), 120, terminal)
    provider = {"X-Provider-Token": token}
    api = "/api/provider/telegram"
    synced = http.post(
        f"{api}/accounts/sync",
        json={"accounts": [{"provider_account_id": f"acc_{i}", "phone": f"+1000000000{i}"}
                           for i in range(4)]},
        headers=provider,
    )  # fmt: skip
    assert synced.status_code == 200 and synced.json()["synced"] == 4, synced.text

    # The operator adds the two orders in the admin.
    admin = httpx.Client(base_url=web, timeout=30, follow_redirects=False)
    login = admin.get("/admin/login/")
    csrf = admin.cookies["csrftoken"]
    password = (state / "admin_password").read_text().strip()
    answer = admin.post(
        "/admin/login/?next=/admin/",
        data={"username": "admin", "password": password, "csrfmiddlewaretoken": csrf},
        headers={"Referer": f"{web}/admin/login/"},
    )
    assert answer.status_code == 302, (login.status_code, answer.text[-2000:])
    for link, mode in (("t.me/deployedpull", "pull"), ("t.me/deployeddone", "push")):
        form = Form()
        form.feed(admin.get("/admin/orders/order/add/").text)
        fields = {**form.fields, "action": "subscribe", "link": link, "quantity": "2",
                  "execution_mode": mode, "csrfmiddlewaretoken": admin.cookies["csrftoken"]}  # fmt: skip
        added = admin.post(
            "/admin/orders/order/add/", data=fields,
            headers={"Referer": f"{web}/admin/orders/order/add/"},
        )  # fmt: skip
        assert added.status_code == 302, added.text[-3000:]

    # The provider long-polls and reports; beat's passes do the rest.
    done: set[str] = set()
    unavailable: list[str] = []

    def pulled_and_reported() -> bool:
        got = http.post(
            f"{api}/tasks/pull", json={"limit": 10, "wait_seconds": 10}, headers=provider,
            timeout=40,
        )  # fmt: skip
        if got.status_code == 503:  # the claim state is not restored yet: as Retry-After says
            unavailable.append(got.text)
            return False
        assert got.status_code == 200, got.text
        for task in got.json()["tasks"]:
            reported = http.post(
                f"{api}/tasks/report",
                json={"task_id": task["task_id"], "lease_id": task["lease_id"], "state": "done"},
                headers=provider,
            )
            assert reported.status_code == 200, reported.text
            done.add(task["task_id"])
        return len(done) >= 2

    wait_for("beat's generation, then the pull tasks", pulled_and_reported, 200, terminal)
    # The worker restored the (empty) claim state as it started: a few seconds of 503 at most.
    assert len(unavailable) <= 5, unavailable
    with psycopg.connect(env["DATABASE_URL"]) as db:

        def completed() -> bool:
            rows = db.execute("SELECT link, execution_mode, status FROM orders").fetchall()
            db.commit()
            return len(rows) == 2 and {r[2] for r in rows} == {"completed"}

        wait_for("both orders completed (the push one by the dispatcher)", completed, 60,
                 terminal)  # fmt: skip
        pushed = db.execute(
            "SELECT count(*) FROM telegram_tasks WHERE execution_mode = 'push' AND status = 'done'"
        ).fetchone()[0]
        assert pushed == 2

        def housekept() -> bool:
            rows = dict(
                db.execute(
                    "SELECT name, last_success_at IS NOT NULL FROM telegram_pass_runs"
                ).fetchall()
            )
            db.commit()
            return all(rows.get(n) for n in ("generation", "housekeeping", "rollup", "push"))

        wait_for("every pass run by beat", housekept, 90, terminal)
    dashboard = admin.get("/admin/dashboard/")
    assert dashboard.status_code == 200 and "(late)" not in dashboard.text
    code = terminal.ctrl_c()
    text = terminal.text
    assert code == 0, text[-3000:]
    assert "have stopped" in text
    problems = [line for line in text.splitlines() if LOG_PROBLEM.search(line)]
    assert problems == [], "\n".join(problems[:40])


def _answers(http: httpx.Client, path: str) -> bool:
    try:
        return http.get(path, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
