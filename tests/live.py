"""A live web server for tests, as production runs it: gunicorn with config/gunicorn.conf.py
(gevent workers, the pool, the socket timeouts), DEBUG off, on the test database and the
test's Redis key prefix, on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
# Strong enough for the settings to start with DEBUG off (telegram_tasks.tokens).
TOKEN = secrets.token_urlsafe(32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    port: int
    probe_port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def probe_url(self) -> str:
        return f"http://127.0.0.1:{self.probe_port}"

    def workers(self) -> list[int]:
        """The worker processes' pids."""
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(p) for p in path.read_text().split()]

    def rss(self, pid: int) -> int:
        """A process's resident memory, in bytes."""
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no VmRSS for {pid}")


def database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@contextlib.contextmanager
def gunicorn(prefix: str, **env: str) -> Iterator[Server]:
    """gunicorn from the shipped config; ``env`` overrides its environment. Stopped at once on
    the way out (SIGQUIT: no graceful wait for long-polls still waiting), killed if it will
    not stop."""
    port, probe_port = free_port(), free_port()
    full = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "TG_KEY_PREFIX": prefix,
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "PROVIDER_TOKEN": TOKEN,
        "WEB_BIND": f"127.0.0.1:{port}",
        "WEB_PROBE_BIND": f"127.0.0.1:{probe_port}",
        "WEB_WORKERS": "1",
        "WEB_ACCESS_LOG": "",
        "SECURE_COOKIES": "0",
        **env,
    }
    full.pop("PROMETHEUS_MULTIPROC_DIR", None)  # the config file makes its own
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", "config/gunicorn.conf.py",
         "config.wsgi:application"],
        cwd=ROOT, env=full, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    server = Server(port, probe_port, process)
    try:
        wait_until_up(server.url + "/healthz", process)
        yield server
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(15)


def wait_until_up(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited with {process.returncode}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError(f"{url} never answered")
