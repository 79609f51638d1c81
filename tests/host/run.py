"""The app as another Django project uses it (`make test-host`).

Builds the wheel, installs it into a fresh virtualenv with the host's own few dependencies, and
runs the host project beside this file (hostsite/, with its order model shop.Purchase) against
a fresh database ``<DATABASE_URL's name>_host`` and a key prefix of its own on REDIS_URL:
migrate, the system checks (no warning allowed), then one flow through the public surfaces:
accounts sync over HTTP, a purchase of the host's model, a generation pass (the command), a
pull and reports over HTTP, the Celery task of housekeeping, the admin pages (logged in) and
the operator's pages. Nothing of this repository is importable in the host's processes but the
installed wheel. pip's cache makes a second run quick.

    python tests/host/run.py [--keep]      (under scripts/devstack.py exec, as make does)
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import venv
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from scripts.wheel import build  # noqa: E402

# The host's own dependencies beside the wheel: PostgreSQL's driver with its libpq.
HOST_DEPENDENCIES = ["psycopg[binary]"]
TOKEN = secrets.token_urlsafe(24)
ADMIN_PASSWORD = secrets.token_urlsafe(16)
MONITOR = secrets.token_urlsafe(24)  # METRICS_TOKEN: /metrics and /readyz's details


def step(message: str) -> None:
    print(f"test-host: {message}", flush=True)


class Host:
    """The host project's processes: its virtualenv's Python, its settings, its database."""

    def __init__(self, venv_dir: Path, database_url: str, redis_url: str, prefix: str) -> None:
        self.python = str(venv_dir / "bin" / "python")
        self.env = {
            "PATH": f"{venv_dir / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": os.environ.get("HOME", tempfile.gettempdir()),  # pip's cache
            "LANG": "C.UTF-8",
            "DJANGO_SETTINGS_MODULE": "hostsite.settings",
            "HOST_DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "PROVIDER_TOKEN": TOKEN,
            "METRICS_TOKEN": MONITOR,
            "TG_KEY_PREFIX": prefix,
            "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD,
        }

    def run(self, *args: str) -> str:
        done = subprocess.run(
            [self.python, *args], cwd=HERE, env=self.env, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"host: {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def manage(self, *args: str) -> str:
        return self.run("manage.py", *args)

    def shell(self, code: str) -> Any:
        """Run code in the host's Django shell; what it prints, as JSON."""
        return json.loads(self.manage("shell", "-v", "0", "-c", code).strip().splitlines()[-1])

    def serve(self, port: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [self.python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=HERE, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip


def install(work: Path) -> Path:
    step("building the wheel")
    wheel = build(work / "dist")
    step(f"fresh virtualenv, installing {wheel.name} and {', '.join(HOST_DEPENDENCIES)}")
    venv_dir = work / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(venv_dir)
    # The versions this repository tests (requirements.txt), as constraints: pip refuses extras
    # in a constraints file, so they are dropped.
    constraints = work / "constraints.txt"
    pins = (ROOT / "requirements.txt").read_text().splitlines()
    constraints.write_text("\n".join(re.sub(r"\[[^\]]*\]", "", p) for p in pins) + "\n")
    subprocess.run(
        [str(venv_dir / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", "-c", str(constraints), str(wheel), *HOST_DEPENDENCIES],
        check=True,
    )  # fmt: skip
    return venv_dir


def fresh_database(url: str) -> str:
    import psycopg

    parts = urllib.parse.urlsplit(url)
    name = f"{parts.path.lstrip('/') or 'tg_broker'}_host"
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return parts._replace(path=f"/{name}").geturl()


def drop_database(url: str) -> None:
    import psycopg

    parts = urllib.parse.urlsplit(url)
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{parts.path.lstrip("/")}" WITH (FORCE)')


def clear_redis(url: str, prefix: str) -> None:
    from redis import Redis
    from redis.cluster import RedisCluster

    plain = re.sub(r"^(rediss?)\+cluster://", r"\1://", url)
    client = RedisCluster.from_url(plain) if "+cluster://" in url else Redis.from_url(plain)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for key in keys:
        client.delete(key)


class Http:
    """A browser of sorts: cookies, CSRF tokens, JSON."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:  # fmt: skip
        req = urllib.request.Request(self.base + path, data=body, method=method)  # noqa: S310 (http://127.0.0.1)
        for name, value in (headers or {}).items():
            req.add_header(name, value)
        try:
            with self.opener.open(req, timeout=30) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def provider(self, path: str, payload: Any) -> Any:
        status, body = self.request(
            "POST", f"/broker/provider/telegram/{path}", json.dumps(payload).encode(),
            {"X-Provider-Token": TOKEN, "Content-Type": "application/json"},
        )  # fmt: skip
        expect(status == 200, f"POST {path} answered {status}: {body[:300]!r}")
        return json.loads(body)

    def page(self, path: str) -> str:
        status, body = self.request("GET", path)
        expect(status == 200, f"GET {path} answered {status}")
        return body.decode()

    def login(self, username: str, password: str) -> None:
        form = self.page("/admin/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)
        expect(token is not None, "no CSRF token on the login page")
        fields = {"csrfmiddlewaretoken": token.group(1), "username": username,
                  "password": password, "next": "/admin/"}  # fmt: skip
        status, body = self.request(
            "POST", "/admin/login/", urllib.parse.urlencode(fields).encode(),
            {"Content-Type": "application/x-www-form-urlencoded"},
        )  # fmt: skip
        expect(status == 200 and b"Log out" in body, f"admin login answered {status}")


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"test-host: FAILED: {message}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_serving(http: Http, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"host: runserver exited:\n{server.stderr.read().decode()}")
        try:
            if http.request("GET", "/ops/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit("host: runserver did not answer within 60 s")


def prepare(host: Host) -> None:
    where = host.run("-c", "import telegram_tasks; print(telegram_tasks.__file__)").strip()
    expect("site-packages" in where, f"telegram_tasks imported from {where}, not the wheel")
    for project_module in ("orders", "config"):
        found = host.run(
            "-c", f"import importlib.util as u; print(u.find_spec({project_module!r}))"
        )
        expect(found.strip() == "None", f"the host can import this repository's {project_module}")
    step("migrate (a fresh database), system checks, migrations up to date")
    host.manage("migrate", "--no-input", "-v", "0")
    host.manage("check", "--fail-level", "WARNING")
    host.manage("makemigrations", "--check", "--dry-run")
    host.manage("createsuperuser", "--no-input", "--username", "admin", "--email", "a@example.com")


def flow(host: Host, http: Http) -> None:
    step("sync over HTTP, a purchase, a generation pass, pull and reports over HTTP")
    accounts = [{"provider_account_id": f"acc_{i}", "phone": f"+1000000000{i}"} for i in (1, 2)]
    synced = http.provider("accounts/sync", {"accounts": accounts})
    expect(synced == {"ok": True, "synced": 2, "errors": []}, f"sync: {synced}")

    purchase = host.shell(
        "import json; from shop.models import Purchase; "
        "p = Purchase.objects.create(customer='c1', action='subscribe', link='t.me/HostShop', "
        "quantity=2); print(json.dumps(p.pk))"
    )
    passed = host.manage("generate_telegram_tasks", "--limit=100")
    expect("created=2" in passed, f"generation: {passed}")

    pulled = http.provider("tasks/pull", {"limit": 10})
    expect(pulled["count"] == 2, f"pull: {pulled}")
    expect({t["order_id"] for t in pulled["tasks"]} == {purchase}, "tasks of another order")
    expect(pulled["tasks"][0]["link"] == "https://t.me/hostshop", "link not normalized")
    first, second = pulled["tasks"]
    # One report alone (the fast path), one in a batch (the full path).
    single = {"task_id": first["task_id"], "lease_id": first["lease_id"], "state": "done"}
    expect(http.provider("tasks/report", single)["status"] == "done", "single report")
    batch = {"reports": [{"task_id": second["task_id"], "lease_id": second["lease_id"],
                          "state": "done"}]}  # fmt: skip
    expect(http.provider("tasks/report", batch)["results"][0]["ok"], "batch report")
    state = host.shell(
        "import json; from shop.models import Purchase; p = Purchase.objects.get(); "
        "print(json.dumps([p.status, p.remains]))"
    )
    expect(state == ["done", 0], f"the purchase after its reports: {state}")

    step("the Celery task of housekeeping, as a worker would run it")
    line = host.shell(
        "import json; from hostsite.celery import app; app.loader.import_default_modules(); "
        "names = sorted(n for n in app.tasks if n.startswith('telegram_tasks.')); "
        "print(json.dumps([names, app.tasks['telegram_tasks.housekeep'].apply().get()]))"
    )
    expect(line[0] == ["telegram_tasks.generate", "telegram_tasks.housekeep",
                       "telegram_tasks.push"], f"Celery tasks: {line[0]}")  # fmt: skip
    expect(isinstance(line[1], str) and line[1], f"housekeeping: {line[1]}")


def admin_pages(http: Http) -> None:
    step("the admin (logged in) and the operator's pages")
    http.login("admin", ADMIN_PASSWORD)
    index = http.page("/admin/")
    expect("Purchases" in index and "Telegram tasks" in index, "admin index")
    for model in ("shop/purchase", "telegram_tasks/telegramtask",
                  "telegram_tasks/telegramaccount", "telegram_tasks/membership"):  # fmt: skip
        listing = http.page(f"/admin/{model}/")
        pk = re.search(rf'href="/admin/{model}/([^/"]+)/change/', listing)
        expect(pk is not None, f"no row to open on /admin/{model}/")
        http.page(f"/admin/{model}/{pk.group(1)}/change/")
    expect("Dashboard" in http.page("/admin/telegram/dashboard/"), "dashboard")
    schema = json.loads(http.request("GET", "/broker/schema/", None,
                                     {"Accept": "application/json"})[1])  # fmt: skip
    expect("/broker/provider/telegram/tasks/pull" in schema["paths"], "schema paths")
    http.page("/broker/docs/")
    monitor = {"Authorization": f"Bearer {MONITOR}"}
    status, body = http.request("GET", "/ops/readyz", None, monitor)
    ready = json.loads(body)
    expect(status == 200 and ready["checks"]["claim_state"] == "ok", f"readyz: {ready}")
    status, body = http.request("GET", "/ops/metrics", None, monitor)
    expect(status == 200, f"GET /ops/metrics answered {status}")
    metrics = body.decode()
    expect(
        'telegram_tasks_tasks{action="subscribe",provider="default",status="done"}' in metrics,
        "metrics",
    )
    expect('telegram_tasks_http_responses_total{code="200"}' in metrics, "API answers counted")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the folder and the database")
    args = parser.parse_args()
    started = time.monotonic()
    database_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/tg_broker")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"tghost:{secrets.token_hex(6)}"
    work = Path(tempfile.mkdtemp(prefix="tg-host-"))
    host_db = fresh_database(database_url)
    server = None
    try:
        host = Host(install(work), host_db, redis_url, prefix)
        prepare(host)
        port = free_port()
        server = host.serve(port)
        http = Http(f"http://127.0.0.1:{port}")
        wait_until_serving(http, server)
        flow(host, http)
        admin_pages(http)
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        clear_redis(redis_url, prefix)
        if args.keep:
            step(f"kept {work} and {host_db}")
        else:
            shutil.rmtree(work, ignore_errors=True)
            drop_database(host_db)
    step(f"passed in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
