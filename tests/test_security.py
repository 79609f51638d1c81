"""Facing the internet, in-process and at start-up: secrets the settings refuse, the production
check list, request bodies by size, the caps on long-polls, admin login throttling, the
security headers. (The attacks themselves, against a live server: test_abuse.)"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from telegram_tasks.api import waiting
from telegram_tasks.api.authentication import ProviderTokenAuthentication
from telegram_tasks.models import TelegramTask
from telegram_tasks.services import tasks_generate
from telegram_tasks.tokens import secret_problem
from tests import live
from tests.factories import make_accounts, make_order

API = "/api/provider/telegram"
STRONG = secrets.token_urlsafe(32)


# --- secrets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("t", "1 characters long"),
        ("a" * 40, "too few characters"),
        ("test-" * 10, "too few characters"),
        ("changeme-" + secrets.token_hex(16), "placeholder"),
        ("django-insecure-" + secrets.token_hex(20), "placeholder"),
    ],
)
def test_weak_secrets_are_named(value, why):
    assert why in secret_problem(value, name="X")


def test_generated_secrets_will_do():
    for _ in range(50):
        assert secret_problem(secrets.token_urlsafe(24), name="X") is None
        assert secret_problem(secrets.token_hex(16), name="X") is None


def start(**env: str) -> subprocess.CompletedProcess:
    """Load the settings as a server process would (no test runner in it)."""
    full = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "PROVIDER_TOKEN")}
    full.update({"DEBUG": "0", "SECRET_KEY": secrets.token_urlsafe(50), **env})
    return subprocess.run(
        [sys.executable, "-c", "import config.settings"],
        cwd=live.ROOT, env=full, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"SECRET_KEY": ""}, "SECRET_KEY is not set"),
        ({"SECRET_KEY": "django-insecure-dev-only-do-not-deploy"}, "SECRET_KEY is not set"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY is 5 characters long"),
        ({"PROVIDER_TOKEN": f"{STRONG},weak"}, "PROVIDER_TOKEN is 4 characters long"),
        ({"PUSH_SIGNING_SECRET": "x" * 40}, "PUSH_SIGNING_SECRET repeats too few"),
        ({"METRICS_TOKEN": "scrape-me"}, "METRICS_TOKEN is 9 characters long"),
    ],
)
def test_the_settings_refuse_to_start_in_production_with_a_weak_secret(env, said):
    refused = start(**env)
    assert refused.returncode != 0
    assert "refusing to start with DEBUG off" in refused.stderr and said in refused.stderr


def test_the_settings_start_with_strong_secrets_or_with_debug_on():
    assert start(PROVIDER_TOKEN=f"{STRONG},{secrets.token_hex(16)}").returncode == 0
    assert start(DEBUG="1", SECRET_KEY="", PROVIDER_TOKEN="t").returncode == 0


def test_check_deploy_is_clean_with_production_settings(db):
    """The environment docs/operations.md ("Security settings") lists for production."""
    env = {
        **os.environ, "DATABASE_URL": live.database_url(), "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50), "PROVIDER_TOKEN": STRONG,
        "METRICS_TOKEN": secrets.token_urlsafe(32), "ALLOWED_HOSTS": "broker.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://broker.example.com", "USE_X_FORWARDED_PROTO": "1",
        "SECURE_SSL_REDIRECT": "1", "SECURE_HSTS_SECONDS": "31536000",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1", "SECURE_HSTS_PRELOAD": "1",
    }  # fmt: skip
    checked = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=live.ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "no issues" in checked.stdout


# --- request bodies ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_body_over_the_limit_is_refused_before_it_is_read(client, settings):
    big = "a=" + "b" * 3_000_000
    refused = client.post("/admin/login/", big, content_type="application/x-www-form-urlencoded")
    assert refused.status_code == 413
    assert refused.json()["error"] == {
        "code": "batch_too_large",
        "message": f"request body is too large: {len(big)} bytes, at most 2621440 here",
        "details": {"max": 2621440, "got": len(big)},
    }
    settings.PROVIDER_TOKEN = STRONG
    report = client.post(f"{API}/tasks/report", big, content_type="application/json",
                         HTTP_X_PROVIDER_TOKEN=STRONG)  # fmt: skip
    assert report.status_code == 413


@pytest.mark.django_db
def test_a_sync_may_be_larger_than_other_requests_and_has_its_own_limit(client, settings):
    settings.PROVIDER_TOKEN = STRONG
    accounts = [
        {"provider_account_id": f"acc-{i}", "phone": f"+1{i:010d}", "meta": {"note": "x" * 300}}
        for i in range(8000)
    ]
    body = {"accounts": accounts}
    synced = client.post(f"{API}/accounts/sync", body, content_type="application/json",
                         HTTP_X_PROVIDER_TOKEN=STRONG)  # fmt: skip
    assert synced.status_code == 200 and synced.json()["synced"] == 8000  # a 3 MB body
    anonymous = client.post(f"{API}/accounts/sync", body, content_type="application/json")
    assert anonymous.status_code == 401  # (its body never read: DRF checks the token first)
    settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, "SYNC_MAX_BODY_BYTES": 1_000_000}
    refused = client.post(f"{API}/accounts/sync", body, content_type="application/json",
                          HTTP_X_PROVIDER_TOKEN=STRONG)  # fmt: skip
    assert refused.status_code == 413 and refused.json()["error"]["details"]["max"] == 1_000_000


# --- long-polls ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_past_its_cap_a_pull_that_would_wait_is_refused_at_once(client, settings, rf):
    """A provider with MAX_WAITING_PULLS_PER_PROVIDER pulls waiting: its next pull that would
    wait answers 429 (Retry-After), leasing nothing; without waiting it is served; another
    provider's long-poll is not counted against it; the process's own cap holds for
    everyone."""
    from telegram_tasks.services.providers import providers_create

    settings.PROVIDER_TOKEN = STRONG
    settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, "MAX_WAITING_PULLS_PER_PROVIDER": 1,
                               "MAX_WAITING_PULLS": 2}  # fmt: skip
    second, other = providers_create(name="second", now=timezone.now())
    make_accounts(1, provider=second)
    make_order(action="view", link="t.me/durov/7", quantity=1)
    tasks_generate(limit=10, now=timezone.now())

    def pull(token: str, wait: int):
        return client.post(f"{API}/tasks/pull", {"limit": 5, "wait_seconds": wait},
                           content_type="application/json", HTTP_X_PROVIDER_TOKEN=token)  # fmt: skip

    def key(token: str) -> int:  # how the API names the caller (its provider)
        request = rf.post("/", HTTP_X_PROVIDER_TOKEN=token)
        return ProviderTokenAuthentication().authenticate(request)[0].key

    with waiting.LISTENER.place(key(STRONG)):  # one of its pulls waits
        refused = pull(STRONG, 20)
        assert refused.status_code == 429 and refused["Retry-After"] == "5"
        assert refused.json()["error"]["code"] == "too_many_waiting_pulls"
        assert TelegramTask.objects.get().status == "queued"  # nothing leased
        assert key(STRONG) != key(other)
        with waiting.LISTENER.place(key(other)):
            assert pull(other, 20).status_code == 429  # the process is full (2)
        served = pull(other, 20)  # (finds the task at once: never sleeps)
        assert served.status_code == 200 and served.json()["count"] == 1
        assert pull(STRONG, 0).status_code == 200  # not waiting: not counted
    with waiting.LISTENER.place(key(STRONG)), waiting.LISTENER.place(key(other)):
        pass  # every place was given back


# --- the admin -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_logins_are_throttled_per_address_and_per_username(client, settings):
    settings.AXES_FAILURE_LIMIT = 3
    user = get_user_model().objects.create_superuser("boss", password="right-pass-1234")
    get_user_model().objects.create_superuser("clerk", password="clerk-pass-1234")

    def login(username, password, address):
        return client.post("/admin/login/", {"username": username, "password": password},
                           REMOTE_ADDR=address)  # fmt: skip

    for _ in range(3):
        login("boss", "wrong", "10.0.0.1")
    assert login("boss", "right-pass-1234", "10.0.0.2").status_code == 429  # the username
    assert login("clerk", "clerk-pass-1234", "10.0.0.1").status_code == 429  # the address
    assert login("clerk", "clerk-pass-1234", "10.0.0.3").status_code == 302
    user.refresh_from_db()
    assert user.last_login is None


def test_behind_the_proxy_the_client_is_its_x_real_ip(rf, settings):
    from config.middleware import client_ip

    request = rf.get("/", HTTP_X_REAL_IP="203.0.113.9", REMOTE_ADDR="172.18.0.5")
    assert client_ip(request) == "172.18.0.5"  # not trusted unless asked
    settings.USE_X_REAL_IP = True
    assert client_ip(request) == "203.0.113.9"


@pytest.mark.django_db
def test_pages_carry_the_security_headers(client, settings):
    settings.SECURE_HSTS_SECONDS = 3600
    page = client.get("/admin/login/", secure=True)
    policy = page["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page["Strict-Transport-Security"] == "max-age=3600"
    assert page["X-Frame-Options"] == "DENY"
    assert settings.SESSION_COOKIE_AGE == 8 * 3600
