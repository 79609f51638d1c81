"""HTTP for the benchmarks: the real web server (gunicorn with the project's config file) and a
lean keep-alive client, so the clients cost as little of the shared CPU as possible."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from _setup import ROOT

PULL = "/api/provider/telegram/tasks/pull"
REPORT = "/api/provider/telegram/tasks/report"
NOOP = "/bench/noop"


class Client:
    """One HTTP/1.1 keep-alive connection; requests are prebuilt bytes, responses read by
    Content-Length (reconnects when the server closed the connection)."""

    def __init__(self, port: int, token: str, timeout: float = 120) -> None:
        self.port, self.token, self.timeout = port, token, timeout
        self.sock: socket.socket | None = None
        self.buffer = b""

    def request(self, path: str, body: Any) -> bytes:
        data = json.dumps(body).encode()
        return (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"X-Provider-Token: {self.token}\r\nContent-Length: {len(data)}\r\n\r\n"
        ).encode() + data

    def send(self, raw: bytes) -> tuple[int, bytes]:
        for attempt in range(2):
            try:
                if self.sock is None:
                    self.sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
                    self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self.buffer = b""
                self.sock.sendall(raw)
                return self._read()
            except (ConnectionError, _Closed):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        status, data = self.send(self.request(path, body))
        return status, json.loads(data) if data else None

    def call(self, path: str, data: bytes) -> tuple[int, bytes]:
        return self.send(
            (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"X-Provider-Token: {self.token}\r\nContent-Length: {len(data)}\r\n\r\n"
            ).encode()
            + data
        )

    def _read(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        closing = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                closing = True
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        if closing:
            self.close()
        return status, body

    def _fill(self) -> None:
        assert self.sock is not None
        chunk = self.sock.recv(65536)
        if not chunk:
            raise _Closed
        self.buffer += chunk

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
        self.sock = None


class _Closed(Exception):
    pass


class StdlibClient:
    """One keep-alive connection through the standard library's http.client: what a typical
    provider's Python client costs per request (the lean Client measures the server alone)."""

    def __init__(self, port: int, token: str, timeout: float = 120) -> None:
        import http.client

        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.headers = {"Content-Type": "application/json", "X-Provider-Token": token}

    def call(self, path: str, data: bytes) -> tuple[int, bytes]:
        import http.client

        try:
            self.conn.request("POST", path, body=data, headers=self.headers)
            response = self.conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # The server closed the idle keep-alive connection (WEB_KEEPALIVE) before this
            # request reached it: a client opens a new one, as this does once.
            self.conn.close()
            self.conn.request("POST", path, body=data, headers=self.headers)
            response = self.conn.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self.conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(env: dict[str, str], **overrides: str) -> Iterator[tuple[int, subprocess.Popen]]:
    """gunicorn with config/gunicorn.conf.py on a free loopback port (``overrides``: more of
    its environment, e.g. WEB_WORKER_CLASS), answering; yields (port, process), stops it on the
    way out and shows what it logged beyond INFO lines."""
    port = free_port()
    gunicorn = Path(sys.executable).parent / "gunicorn"
    env = {**env, "WEB_BIND": f"127.0.0.1:{port}", "WEB_ACCESS_LOG": "", **overrides}
    cmd = [str(gunicorn), "-c", "config/gunicorn.conf.py", "config.wsgi:application"]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)
        try:
            wait_until_up(proc, port)
            yield port, proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            log.seek(0)
            lines = log.read().decode(errors="replace").splitlines()
            noisy = [
                line
                for line in lines
                if line.strip()
                and "[INFO]" not in line
                and "Not Found: " not in line
                and " INFO " not in line
            ]
            if noisy:
                print("gunicorn logged:", *noisy[-30:], sep="\n  ")


def wait_until_up(proc: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), 2) as sock:
                sock.sendall(b"GET /api/ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                if sock.recv(64):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("gunicorn did not answer within 60 s")


def server_cpu_seconds(proc: subprocess.Popen) -> float:
    """CPU seconds used so far by gunicorn's master and its workers (from /proc)."""
    pids = [proc.pid]
    with contextlib.suppress(OSError):
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        pids += [int(c) for c in children]
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total


def cpu_by_program() -> dict[str, float]:
    """CPU seconds used so far by every process of this machine, summed by program name
    (postgres, redis-server, gunicorn, python…), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    totals: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            raw = (entry / "stat").read_text()
            name = raw[raw.index("(") + 1 : raw.rindex(")")]
            fields = raw.rsplit(")", 1)[1].split()
            cmd = (entry / "cmdline").read_bytes().split(b"\0")
            if name.startswith("postgres") or name == "postmaster":
                name = "postgres"
            elif "gunicorn" in b" ".join(cmd).decode(errors="replace"):
                name = "gunicorn"
            totals[name] = totals.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return totals


def cpu_spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}


def in_threads(
    chunks: Sequence[Sequence[Any]],
    work: Callable[[Sequence[Any]], None],
    prepare: Callable[[], None] | None = None,
) -> float:
    """Run ``work(chunk)`` in one thread per chunk, all released at once once each thread ran
    ``prepare`` (untimed); wall seconds from the release to the last thread's end."""
    barrier = threading.Barrier(len(chunks) + 1)
    errors: list[BaseException] = []

    def run(chunk: Sequence[Any]) -> None:
        try:
            if prepare is not None:
                prepare()
        finally:
            barrier.wait()
        try:
            work(chunk)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return elapsed


def split(items: Sequence[Any], parts: int) -> list[Sequence[Any]]:
    """``parts`` contiguous runs of nearly equal length."""
    bounds = [len(items) * i // parts for i in range(parts + 1)]
    return [items[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def batches(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
