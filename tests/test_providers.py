"""Several provider fleets over the provider API: tokens (made, rotated, revoked, refused in
constant time), and isolation — every endpoint answers another provider's task, lease or
account exactly as an unknown one, changing nothing."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import TestCase
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from telegram_tasks.api import authentication
from telegram_tasks.models import Provider, ProviderToken, TelegramAccount, TelegramTask, new_ulid
from telegram_tasks.services import tasks_generate
from telegram_tasks.services.providers import providers_create
from tests.factories import make_accounts, make_order

pytestmark = pytest.mark.django_db
BASE = "/api/provider/telegram"


class ProviderClient(APIClient):
    """Runs on_commit callbacks as a real commit would (a test's transaction never commits)."""

    def generic(self, *args, **kwargs):
        with TestCase.captureOnCommitCallbacks(execute=True):
            return super().generic(*args, **kwargs)


def client_of(token: str) -> ProviderClient:
    client = ProviderClient()
    client.credentials(HTTP_X_PROVIDER_TOKEN=token)
    return client


def post(client, path, body):
    return client.post(f"{BASE}/{path}", body, format="json")


@pytest.fixture
def fleets(settings):
    """Two providers with a token each (no PROVIDER_TOKEN), two accounts each, and an order of
    each routed to its provider, generated."""
    settings.PROVIDER_TOKEN = ""
    now = timezone.now()
    a, token_a = providers_create(name="alpha", now=now)
    b, token_b = providers_create(name="beta", now=now)
    make_accounts(2, provider=a)
    make_accounts(2, provider=b)
    for provider, n in ((a, 1), (b, 2)):
        order = make_order(action="view", link=f"t.me/durov/{n}", quantity=2)
        order.providers.set([provider])
    tasks_generate(limit=10, now=now)
    return SimpleNamespace(
        a=a, b=b, token_a=token_a, token_b=token_b, api_a=client_of(token_a),
        api_b=client_of(token_b),
    )  # fmt: skip


# --- tokens ------------------------------------------------------------------------------------


def test_a_token_is_a_public_prefix_and_a_secret_kept_as_a_digest_only(settings):
    import hashlib

    settings.PROVIDER_TOKEN = ""
    provider, token = providers_create(name="gamma", now=timezone.now())
    prefix, secret = token.split(".")
    assert re.fullmatch(r"[0-9a-f]{12}", prefix) and len(secret) >= 40
    row = ProviderToken.objects.get(provider=provider)
    assert (row.prefix, row.digest) == (prefix, hashlib.sha256(token.encode()).hexdigest())
    assert secret not in json.dumps(list(ProviderToken.objects.values()), default=str)
    assert post(client_of(token), "tasks/pull", {"limit": 1}).status_code == 200


def test_the_commands_make_rotate_revoke_disable_and_enable(settings, capsys):
    """create_provider and provider_token --add print the token as their last line; both tokens
    work at once (a rotation); --revoke refuses the old one; --disable/--enable."""
    settings.PROVIDER_TOKEN = ""
    call_command("create_provider", "fleet-1", "--push-url", "https://fleet.example/push")
    first = capsys.readouterr().out.strip().splitlines()[-1]
    provider = Provider.objects.get(name="fleet-1")
    assert provider.push_url == "https://fleet.example/push" and provider.enabled
    call_command("provider_token", "fleet-1", "--add")
    second = capsys.readouterr().out.strip().splitlines()[-1]
    assert first != second
    for token in (first, second):  # both live: the provider switches its workers over
        assert post(client_of(token), "tasks/pull", {"limit": 1}).status_code == 200
    call_command("provider_token", "fleet-1", "--revoke", first.split(".")[0])
    refused = post(client_of(first), "tasks/pull", {"limit": 1})
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "authentication_failed"
    assert post(client_of(second), "tasks/pull", {"limit": 1}).status_code == 200
    call_command("provider_token", "fleet-1", "--disable")
    assert not Provider.objects.get(pk=provider.pk).enabled
    call_command("provider_token", "fleet-1", "--enable")
    assert Provider.objects.get(pk=provider.pk).enabled
    with pytest.raises(Exception, match="no provider named"):
        call_command("provider_token", "nobody", "--add")
    with pytest.raises(Exception, match="exists already"):
        call_command("create_provider", "fleet-1")
    with pytest.raises(Exception, match="https"):
        call_command("create_provider", "fleet-2", "--push-url", "ftp://x")


def test_a_revocation_bites_in_every_process_within_the_cache_time(settings, monkeypatch):
    """Another process keeps its lookup PROVIDER_AUTH_CACHE_SECONDS: the revoked token works
    there until then, and never after."""
    from telegram_tasks.services.providers import provider_token_revoke

    settings.PROVIDER_TOKEN = ""
    provider, token = providers_create(name="gamma", now=timezone.now())
    clock = [1000.0]
    monkeypatch.setattr(authentication.time, "monotonic", lambda: clock[0])
    assert authentication.authenticate_token(token) is not None  # looked up, kept
    provider_token_revoke(provider_id=provider.pk, prefix=token, now=timezone.now())
    assert authentication.authenticate_token(token) is not None  # (this process still keeps it)
    clock[0] += settings.TELEGRAM_TASKS.get("PROVIDER_AUTH_CACHE_SECONDS", 5) + 0.1
    assert authentication.authenticate_token(token) is None


def test_a_wrong_token_and_a_revoked_one_take_the_same_query_and_comparison(settings, monkeypatch):
    """Constant time per request: whatever the token, one lookup by its prefix (the same
    statement) and one comparison of digests — against a dummy one when no row has the prefix;
    a revoked row is compared like a live one and refused after."""
    from telegram_tasks.services.providers import provider_token_revoke

    settings.PROVIDER_TOKEN = ""
    _, live = providers_create(name="gamma", now=timezone.now())
    _, revoked = providers_create(name="delta", now=timezone.now())
    provider_token_revoke(
        provider_id=Provider.objects.get(name="delta").pk, prefix=revoked, now=timezone.now()
    )
    compared = []
    real = authentication.hmac.compare_digest

    def spy(a, b):
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(authentication.hmac, "compare_digest", spy)
    shapes = {}
    for name, token in {
        "revoked": revoked,
        "wrong secret": live.split(".")[0] + ".x" * 20,
        "unknown prefix": "0123456789ab." + "y" * 43,
        "no prefix": "z" * 56,
    }.items():
        authentication.forget_cached()
        compared.clear()
        with CaptureQueriesContext(connection) as queries:
            assert authentication.authenticate_token(token) is None
        statements = [re.sub(r"'[^']*'", "?", q["sql"]) for q in queries.captured_queries]
        shapes[name] = (statements, list(compared))
    assert len({json.dumps(s) for s in shapes.values()}) == 1, shapes
    statements, comparisons = shapes["revoked"]
    assert len(statements) == 1 and "telegram_provider_tokens" in statements[0]
    assert comparisons == [(64, 64)]


def test_provider_token_keeps_working_as_the_default_providers(settings):
    """An install from before providers: PROVIDER_TOKEN authenticates the default provider,
    which owns the accounts made without one, and signs its pushes as before."""
    settings.PROVIDER_TOKEN = "an-old-install-token-of-thirty-two-chars"
    make_accounts(1)
    make_order(action="view", link="t.me/durov/3", quantity=1)
    tasks_generate(limit=10, now=timezone.now())
    [task] = post(client_of(settings.PROVIDER_TOKEN), "tasks/pull", {"limit": 5}).json()["tasks"]
    default = Provider.objects.get(is_default=True)
    assert TelegramTask.objects.get(pk=task["task_id"]).provider_id == default.pk
    assert default.name == "default"
    assert Provider.objects.get(pk=default.pk).last_seen_at is not None


def test_last_used_is_written_at_most_once_a_minute(fleets):
    from django.db.models import F

    ProviderToken.objects.update(last_used_at=None)
    with CaptureQueriesContext(connection) as queries:
        for _ in range(3):
            post(fleets.api_a, "tasks/report", {"task_id": new_ulid(), "state": "done"})
    writes = [q for q in queries.captured_queries if "WITH token AS" in q["sql"]]
    assert len(writes) == 1
    token = ProviderToken.objects.get(provider=fleets.a)
    assert token.last_used_at is not None
    assert Provider.objects.filter(pk=fleets.a.pk, last_seen_at__isnull=False).exists()
    assert not ProviderToken.objects.filter(provider=fleets.b, last_used_at__gte=F("created_at"))


# --- isolation ---------------------------------------------------------------------------------

# Every endpoint that names a task or a lease: (path, body of a task id and its lease id).
CASES = {
    "report done (fast path)": ("tasks/report", lambda t, lease: {"task_id": t, "state": "done"}),
    "report failed (fast path)": (
        "tasks/report",
        lambda t, lease: {"task_id": t, "state": "failed", "error": "X", "lease_id": lease},
    ),
    "report pending (fast path)": (
        "tasks/report", lambda t, lease: {"task_id": t, "state": "pending", "lease_id": lease},
    ),
    "report with data (full path)": (
        "tasks/report", lambda t, lease: {"task_id": t, "state": "done", "data": {"n": 1}},
    ),
    "report batch": (
        "tasks/report", lambda t, lease: {"reports": [{"task_id": t, "state": "done"}]},
    ),
    "extend": ("tasks/extend", lambda t, lease: {"leases": [{"task_id": t, "lease_id": lease}]}),
    "release": (
        "tasks/release", lambda t, lease: {"leases": [{"task_id": t, "lease_id": lease}]},
    ),
}  # fmt: skip

SNAPSHOT = ("status", "lease_id", "leased_until", "attempt", "available_at", "result",
            "finished_at", "updated_at", "provider_task_id")  # fmt: skip


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("state", ["leased", "queued"])
def test_another_providers_task_is_answered_as_an_unknown_one(fleets, case, state):
    """Provider B names provider A's task (and its lease): the same status, the same body and
    the same statements as for a task that does not exist, and A's task is left as it was."""
    path, body = CASES[case]
    if state == "leased":
        [task, *_] = post(fleets.api_a, "tasks/pull", {"limit": 1}).json()["tasks"]
        task_id, lease_id = task["task_id"], task["lease_id"]
    else:
        task_id = TelegramTask.objects.filter(provider=fleets.a, status="queued").first().pk
        lease_id = new_ulid()
    before = TelegramTask.objects.filter(pk=task_id).values(*SNAPSHOT).get()
    post(fleets.api_b, "tasks/report", {"task_id": new_ulid(), "state": "done"})  # (warm)

    def ask(target: str):
        with CaptureQueriesContext(connection) as queries:
            response = post(fleets.api_b, path, body(target, lease_id))
        text = response.content.decode().replace(target, "<id>")
        shape = [re.sub(r"'[^']*'|\d+", "?", q["sql"]) for q in queries.captured_queries]
        return response.status_code, text, shape

    theirs, unknown = ask(task_id), ask(new_ulid())
    assert theirs == unknown
    assert theirs[0] in (200, 404)
    assert TelegramTask.objects.filter(pk=task_id).values(*SNAPSHOT).get() == before


def test_a_pull_hands_out_the_callers_tasks_only(fleets):
    mine = post(fleets.api_b, "tasks/pull", {"limit": 10}).json()["tasks"]
    assert len(mine) == 2
    assert {TelegramTask.objects.get(pk=t["task_id"]).provider_id for t in mine} == {fleets.b.pk}
    assert post(fleets.api_b, "tasks/pull", {"limit": 10}).json()["tasks"] == []
    # Naming A's accounts finds nothing either (their ids are A's).
    theirs = list(
        TelegramAccount.objects.filter(provider=fleets.a).values_list(
            "provider_account_id", flat=True
        )
    )
    assert post(fleets.api_b, "tasks/pull", {"limit": 10, "accounts": theirs}).json()["count"] == 0
    assert TelegramTask.objects.filter(provider=fleets.a, status="queued").count() == 2


def test_request_ids_are_each_providers_own(fleets):
    first = post(fleets.api_a, "tasks/pull", {"limit": 10, "request_id": "same"}).json()
    again = post(fleets.api_b, "tasks/pull", {"limit": 10, "request_id": "same"}).json()
    assert "replayed" not in again
    assert not {t["task_id"] for t in first["tasks"]} & {t["task_id"] for t in again["tasks"]}
    replay = post(fleets.api_a, "tasks/pull", {"limit": 10, "request_id": "same"}).json()
    assert replay["replayed"] and replay["tasks"] == first["tasks"]


def test_sync_writes_the_callers_accounts_only(fleets):
    """Two providers may use the same provider_account_id: each is its own account."""
    theirs = TelegramAccount.objects.filter(provider=fleets.a).first()
    before = TelegramAccount.objects.filter(pk=theirs.pk).values().get()
    body = {"accounts": [{"provider_account_id": theirs.provider_account_id, "phone": "+7",
                          "is_active": False}]}  # fmt: skip
    assert post(fleets.api_b, "accounts/sync", body).json() == {
        "ok": True, "synced": 1, "errors": [],
    }  # fmt: skip
    assert TelegramAccount.objects.filter(pk=theirs.pk).values().get() == before
    mine = TelegramAccount.objects.get(
        provider=fleets.b, provider_account_id=theirs.provider_account_id
    )
    assert (mine.phone, mine.is_active) == ("+7", False)
    # A's queued tasks were not released by B switching its own account off.
    assert TelegramTask.objects.filter(provider=fleets.a, status="queued").count() == 2


def test_a_disabled_provider_is_handed_nothing_and_its_reports_still_count(fleets):
    from telegram_tasks.services.providers import providers_disable

    [held] = post(fleets.api_a, "tasks/pull", {"limit": 1}).json()["tasks"]
    providers_disable(provider_ids=[fleets.a.pk], now=timezone.now())
    assert post(fleets.api_a, "tasks/pull", {"limit": 10}).json()["tasks"] == []
    assert set(
        TelegramTask.objects.filter(provider=fleets.a).exclude(pk=held["task_id"])
        .values_list("failure_reason", flat=True)
    ) == {"provider_disabled"}  # fmt: skip
    done = post(fleets.api_a, "tasks/report", {"task_id": held["task_id"], "state": "done"})
    assert done.json()["status"] == "done"


def test_metrics_carry_the_provider(fleets, client, settings):
    settings.DEBUG, settings.METRICS_TOKEN, settings.HEALTH_CACHE_SECONDS = True, "", 0
    post(fleets.api_b, "tasks/report", {"task_id": new_ulid(), "state": "done"})
    body = client.get("/metrics").content.decode()
    for name in ("alpha", "beta"):
        assert (
            f'telegram_tasks_tasks{{action="view",provider="{name}",status="queued"}} 2.0' in body
        )
        assert f'telegram_tasks_accounts{{provider="{name}",state="active"}} 2.0' in body
        assert f'telegram_tasks_push_circuit{{provider="{name}",state="closed"}} 1.0' in body
    # (A counter of the process: other tests' reports may be in it too.)
    assert (
        'telegram_tasks_reports_total{outcome="task_not_found",provider="beta",state="done"}'
        in (body)
    )


@pytest.mark.parametrize("token", ["\x00" * 12 + ".x", "abc\x00def0123.x", "é" * 40, "", "." * 9])
def test_any_token_is_refused_with_a_401_never_an_error(fleets, token):
    client = ProviderClient()
    client.credentials(HTTP_X_PROVIDER_TOKEN=token)
    answer = post(client, "tasks/report", {"task_id": new_ulid(), "state": "done"})
    assert answer.status_code == 401, answer.content
