"""The provider API end to end over Django's test client, real PostgreSQL and Redis."""

from datetime import timedelta

import pytest
from django.db import DatabaseError
from django.test import TestCase
from django.utils import timezone
from rest_framework.test import APIClient

from orders.models import Order
from telegram_tasks import claims
from telegram_tasks.claims import keys
from telegram_tasks.models import TelegramAccount, TelegramTask
from telegram_tasks.services import tasks_generate, tasks_pull
from tests.concurrency import run_concurrently
from tests.factories import make_account, make_accounts, make_order

pytestmark = pytest.mark.django_db
TOKEN = "provider-secret-token"
BASE = "/api/provider/telegram"


@pytest.fixture(autouse=True)
def provider_token(settings):
    settings.PROVIDER_TOKEN = TOKEN


class ProviderClient(APIClient):
    """Runs on_commit callbacks (the Redis effects after a ledger commit) as a real commit
    would: a test's own transaction never commits."""

    def generic(self, *args, **kwargs):
        with TestCase.captureOnCommitCallbacks(execute=True):
            return super().generic(*args, **kwargs)


@pytest.fixture
def api():
    client = ProviderClient()
    client.credentials(HTTP_X_PROVIDER_TOKEN=TOKEN)
    return client


def post(client, path, body, **kwargs):
    return client.post(f"{BASE}/{path}", body, format="json", **kwargs)


def assert_error(response, status, code, field=None):
    assert response.status_code == status, response.content
    body = response.json()
    assert body["ok"] is False and body["error"]["code"] == code
    assert body["error"]["message"]
    if field:
        assert field in body["error"]["message"] or field in body["error"]["details"]


def generate(n_accounts=3, **order_kwargs):
    make_accounts(n_accounts)
    order = make_order(**{"action": "view", "link": "t.me/durov/7", "quantity": 3, **order_kwargs})
    tasks_generate(limit=100, now=timezone.now())
    return order


def pull(api, limit=10, **extra):
    response = post(api, "tasks/pull", {"limit": limit, **extra})
    assert response.status_code == 200, response.content
    return response.json()["tasks"]


# --- authentication ----------------------------------------------------------------------------


def test_missing_token_is_401_with_a_challenge():
    response = post(APIClient(), "tasks/pull", {"limit": 1})
    assert_error(response, 401, "not_authenticated")
    assert "X-Provider-Token" in response["WWW-Authenticate"]


def test_wrong_token_is_401():
    client = APIClient()
    client.credentials(HTTP_X_PROVIDER_TOKEN="nope")
    assert_error(post(client, "tasks/pull", {"limit": 1}), 401, "authentication_failed")


def test_unconfigured_token_lets_nobody_in(settings, api):
    settings.PROVIDER_TOKEN = ""
    assert_error(post(api, "tasks/pull", {"limit": 1}), 401, "authentication_failed")
    client = APIClient()
    client.credentials(HTTP_X_PROVIDER_TOKEN="")
    assert_error(post(client, "tasks/pull", {"limit": 1}), 401, "authentication_failed")


def test_rotation_accepts_each_configured_token(settings):
    settings.PROVIDER_TOKEN = f"old-token, {TOKEN}"
    for token in ("old-token", TOKEN):
        client = APIClient()
        client.credentials(HTTP_X_PROVIDER_TOKEN=token)
        assert post(client, "tasks/pull", {"limit": 1}).status_code == 200


def test_unconfigured_token_is_reported_by_a_system_check(settings):
    from django.core import checks

    settings.PROVIDER_TOKEN = ""
    assert "telegram_tasks.W001" in {e.id for e in checks.run_checks()}


# --- input errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "limit"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": "10"}, "limit"),
        ({"limit": 10.5}, "limit"),
        ({"limit": True}, "limit"),
        ({"limit": 10, "colour": "red"}, "colour"),
        ({"limit": 10, "accounts": "ext_1"}, "accounts"),
        ({"limit": 10, "request_id": "has spaces"}, "request_id"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_bad_pull_bodies_are_400_naming_the_field(api, body, field):
    assert_error(post(api, "tasks/pull", body), 400, "validation_error", field)


def test_malformed_json_is_400(api):
    response = api.post(f"{BASE}/tasks/pull", "{not json", content_type="application/json")
    assert_error(response, 400, "malformed_json")


def test_non_json_is_415(api):
    response = api.post(
        f"{BASE}/tasks/pull", "limit=1", content_type="application/x-www-form-urlencoded"
    )
    assert_error(response, 415, "unsupported_media_type")


def test_unknown_endpoint_and_wrong_method_use_the_envelope(api):
    assert_error(api.get(f"{BASE}/tasks/pull"), 405, "method_not_allowed")
    assert_error(api.post("/api/provider/telegram/nope", {}, format="json"), 404, "not_found")


@pytest.mark.parametrize("path", ["tasks/pull/", "tasks/nope", "tasks/report/extra"])
def test_a_post_to_a_wrong_provider_path_is_the_apis_json_404(path):
    """As a provider's client sends it: no session, no CSRF token (the check a browser needs
    must not answer an API client with an HTML 403)."""
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    response = client.post(
        f"{BASE}/{path}", '{"limit": 1}', content_type="application/json",
        HTTP_X_PROVIDER_TOKEN="t",
    )  # fmt: skip
    assert_error(response, 404, "not_found")


# --- accounts sync -----------------------------------------------------------------------------


def test_sync_upserts_and_reports_item_errors(api):
    response = post(
        api,
        "accounts/sync",
        {
            "accounts": [
                {
                    "provider_account_id": "ext_123",
                    "phone": "+1234567890",
                    "is_active": True,
                    "meta": {"a": 1},
                },
                {"phone": "+1"},
                {"provider_account_id": "ext_124", "is_active": "yes"},
                {"provider_account_id": "ext_125"},
                {"provider_account_id": "ext_123", "phone": "+2"},
                "not an object",
            ]
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True and body["synced"] == 2
    assert [(e["index"], e["provider_account_id"]) for e in body["errors"]] == [
        (1, None),
        (2, "ext_124"),
        (4, "ext_123"),
        (5, None),
    ]
    assert "provider_account_id" in body["errors"][0]["errors"]
    account = TelegramAccount.objects.get(provider_account_id="ext_123")
    assert (account.phone, account.meta, account.is_active) == ("+1234567890", {"a": 1}, True)
    # An update that leaves out fields keeps them.
    post(api, "accounts/sync", {"accounts": [{"provider_account_id": "ext_123", "phone": "+3"}]})
    account.refresh_from_db()
    assert (account.phone, account.meta) == ("+3", {"a": 1})


def test_sync_uses_a_constant_number_of_queries(api, django_assert_max_num_queries):
    items = [
        {"provider_account_id": f"p{i}", "phone": f"+{i}", "meta": {"i": i}} for i in range(300)
    ]
    with django_assert_max_num_queries(8):
        assert post(api, "accounts/sync", {"accounts": items}).json()["synced"] == 300
    with django_assert_max_num_queries(8):
        assert post(api, "accounts/sync", {"accounts": items}).json()["synced"] == 300
    assert TelegramAccount.objects.count() == 300


def test_sync_batch_too_large_is_413_and_changes_nothing(api, settings):
    settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, "SYNC_MAX_BATCH": 2}
    items = [{"provider_account_id": f"p{i}"} for i in range(3)]
    assert_error(post(api, "accounts/sync", {"accounts": items}), 413, "batch_too_large")
    assert not TelegramAccount.objects.exists()


def test_deactivated_account_is_not_picked_and_its_queued_tasks_are_released(api, redis_client):
    account = make_account(provider_account_id="ext_1")
    order = make_order(action="view", quantity=1)
    tasks_generate(limit=10, now=timezone.now())
    task = TelegramTask.objects.get()
    response = post(
        api, "accounts/sync", {"accounts": [{"provider_account_id": "ext_1", "is_active": False}]}
    )
    assert response.status_code == 200
    task.refresh_from_db()
    assert (task.status, task.failure_reason) == ("failed", "account_inactive")
    assert not redis_client.exists(keys.lock(account.id, "view"))
    summary = tasks_generate(limit=10, now=timezone.now())
    assert (summary.created, summary.starved_orders) == (0, 1)
    make_account(provider_account_id="ext_2")
    tasks_generate(limit=10, now=timezone.now())
    assert TelegramTask.objects.get(order=order, status="queued").provider_account_id == "ext_2"


# --- pull --------------------------------------------------------------------------------------


def test_pull_leases_tasks_with_the_seed_fields(api):
    order = generate()
    tasks = pull(api, limit=10)
    assert len(tasks) == 3
    task = tasks[0]
    assert set(task) == {
        "task_id", "order_id", "action", "link", "account", "per_call", "post_id", "link_hash",
        "params", "attempt", "leased_until", "lease_id",
    }  # fmt: skip
    assert task["params"] == {}
    assert (task["order_id"], task["action"], task["link"], task["post_id"]) == (
        order.pk,
        "view",
        "https://t.me/durov",
        7,
    )
    assert task["attempt"] == 0 and task["per_call"] == 1 and task["link_hash"] == order.link_hash
    assert set(task["account"]) == {"provider_account_id", "phone"}
    assert TelegramTask.objects.filter(status="leased").count() == 3
    assert pull(api) == []


def test_pull_respects_the_limit_and_serves_oldest_first(api):
    generate(n_accounts=5, quantity=5)
    first = pull(api, limit=2)
    ids = sorted(TelegramTask.objects.values_list("id", flat=True))
    assert [t["task_id"] for t in first] == ids[:2]


def test_expired_lease_is_handed_out_again_with_attempt_one(api):
    generate(n_accounts=1, quantity=1)
    [task] = pull(api)
    TelegramTask.objects.filter(pk=task["task_id"]).update(
        leased_until=timezone.now() - timedelta(seconds=1)
    )
    [again] = pull(api)
    assert again["task_id"] == task["task_id"]
    assert again["attempt"] == 1 and again["lease_id"] != task["lease_id"]


def test_lease_runs_out_of_attempts(api, settings):
    settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, "MAX_ATTEMPTS": 2}
    generate(n_accounts=1, quantity=1)
    for expected in (0, 1):
        [task] = pull(api)
        assert task["attempt"] == expected
        TelegramTask.objects.update(leased_until=timezone.now() - timedelta(seconds=1))
    assert pull(api) == []  # housekeeping fails it (attempts_exhausted)


def test_not_yet_available_and_lapsed_reservations_are_not_handed_out(api):
    generate(n_accounts=2, quantity=2)
    now = timezone.now()
    a, b = TelegramTask.objects.order_by("id")
    TelegramTask.objects.filter(pk=a.pk).update(available_at=now + timedelta(seconds=30))
    TelegramTask.objects.filter(pk=b.pk).update(reserved_until=now - timedelta(seconds=1))
    assert pull(api) == []


def test_a_pulled_task_is_locked_past_its_lease_and_grace(api, redis_client, settings):
    """Generation's reservation already covers any lease a pull within the reservation hands
    out, and its grace: the pull re-arms nothing. A lapsed lease handed out again is re-armed
    for its new lease."""
    from telegram_tasks.services import settle

    generate(n_accounts=1, quantity=1)
    [_task] = pull(api)
    account = TelegramAccount.objects.get()
    task = TelegramTask.objects.get()

    def lock_until():
        return int(redis_client.hget(keys.lock(account.id, "view"), "until"))

    assert lock_until() == int(settle.queued_lock_until(task.reserved_until).timestamp() * 1000)
    assert lock_until() >= int((task.leased_until + timedelta(seconds=120)).timestamp() * 1000)
    later = task.leased_until + timedelta(seconds=1)  # the lease ran out
    [again] = tasks_pull(limit=10, now=later).tasks
    task.refresh_from_db()
    assert again["attempt"] == 1 and task.leased_until > later
    assert lock_until() >= int((task.leased_until + timedelta(seconds=120)).timestamp() * 1000)


def test_pull_filtered_by_accounts(api):
    accounts = make_accounts(3)
    make_order(action="view", quantity=3)
    tasks_generate(limit=10, now=timezone.now())
    wanted = accounts[1].provider_account_id
    tasks = pull(api, accounts=[wanted])
    assert [t["account"]["provider_account_id"] for t in tasks] == [wanted]


def test_pull_with_request_id_replays_the_same_tasks(api):
    generate(n_accounts=4, quantity=4)
    first = pull(api, limit=2, request_id="req-1")
    again = post(api, "tasks/pull", {"limit": 2, "request_id": "req-1"}).json()
    assert again["replayed"] is True
    assert [t["task_id"] for t in again["tasks"]] == [t["task_id"] for t in first]
    assert TelegramTask.objects.filter(status="leased").count() == 2
    other = pull(api, limit=2, request_id="req-2")
    assert {t["task_id"] for t in other}.isdisjoint(t["task_id"] for t in first)


def test_empty_pull_costs_one_query(api):
    """(The first request of a process looks its provider up and notes that it was seen, at
    most once a minute; every other costs the lease alone.)"""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    assert pull(api) == []
    with CaptureQueriesContext(connection) as ctx:
        assert pull(api) == []
    # The test's own transaction turns BEGIN/COMMIT into savepoints; those are not queries.
    queries = [q["sql"] for q in ctx.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(queries) == 1 and "SKIP LOCKED" in queries[0]


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_pulls_never_get_the_same_task(settings):
    settings.PROVIDER_TOKEN = TOKEN
    make_accounts(60)
    for i in range(60):
        make_order(action="view", link=f"t.me/c{i:05d}/1", quantity=1)
    tasks_generate(limit=1000, now=timezone.now())
    assert TelegramTask.objects.count() == 60

    def puller(_):
        client = APIClient()
        client.credentials(HTTP_X_PROVIDER_TOKEN=TOKEN)
        mine = []
        for _ in range(5):
            mine += [t["task_id"] for t in post(client, "tasks/pull", {"limit": 7}).json()["tasks"]]
        return mine

    got = run_concurrently(puller, 4)
    every = [task for mine in got for task in mine]
    assert len(every) == len(set(every)) == 60


# --- report ------------------------------------------------------------------------------------


def report(api, task, state="done", **extra):
    return post(api, "tasks/report", {"task_id": task["task_id"], "state": state, **extra})


def test_done_commits_and_counts_once(api, redis_client):
    order = generate(n_accounts=3, quantity=3)
    tasks = pull(api)
    body = report(
        api, tasks[0], ok=True, error=None, retry_after=None, provider_task_id="p1", data={}
    ).json()
    assert body == {"ok": True, "task_id": tasks[0]["task_id"], "status": "done"}
    again = report(api, tasks[0]).json()
    assert again["duplicate"] is True
    order.refresh_from_db()
    assert order.remains == 2 and order.status == Order.Status.IN_PROGRESS
    account = TelegramAccount.objects.get(
        provider_account_id=tasks[0]["account"]["provider_account_id"]
    )
    assert (
        int(
            redis_client.get(
                keys.cap(account.id, "view", claims.operations.local_day(timezone.now()))
            )
        )
        == 1
    )
    done = TelegramTask.objects.get(pk=tasks[0]["task_id"])
    assert (done.status, done.provider_task_id, done.finished_at is not None) == (
        "done",
        "p1",
        True,
    )
    for t in tasks[1:]:
        report(api, t)
    order.refresh_from_db()
    assert order.remains == 0 and order.status == Order.Status.COMPLETED


def test_remains_never_below_zero(api):
    order = generate(n_accounts=2, quantity=2, per_call=2)
    tasks = pull(api)
    assert len(tasks) == 1
    Order.objects.filter(pk=order.pk).update(remains=1)
    report(api, tasks[0])
    order.refresh_from_db()
    assert order.remains == 0


@pytest.mark.django_db(transaction=True)
def test_two_threads_reporting_the_same_task_count_one_success(settings, redis_client):
    settings.PROVIDER_TOKEN = TOKEN
    make_accounts(1)
    order = make_order(action="view", quantity=5)
    tasks_generate(limit=10, now=timezone.now())
    client = APIClient()
    client.credentials(HTTP_X_PROVIDER_TOKEN=TOKEN)
    [task] = post(client, "tasks/pull", {"limit": 5}).json()["tasks"]

    def reporter(_):
        c = APIClient()
        c.credentials(HTTP_X_PROVIDER_TOKEN=TOKEN)
        return post(c, "tasks/report", {"task_id": task["task_id"], "state": "done"}).json()

    answers = run_concurrently(reporter, 8)
    assert sum(not a.get("duplicate") for a in answers) == 1
    order.refresh_from_db()
    assert order.remains == 4
    account = TelegramAccount.objects.get()
    cap_key = keys.cap(account.id, "view", claims.operations.local_day(timezone.now()))
    assert int(redis_client.get(cap_key)) == 1


def test_failed_rolls_back_and_the_account_is_free_again(api, redis_client):
    generate(n_accounts=1, quantity=1)
    [task] = pull(api)
    account = TelegramAccount.objects.get()
    body = report(api, task, "failed", ok=False, error="SOMETHING_ODD").json()
    assert body["status"] == "failed"
    assert not redis_client.exists(keys.lock(account.id, "view"))
    failed = TelegramTask.objects.get()
    assert (failed.failure_reason, failed.last_error) == ("provider_failed", "SOMETHING_ODD")
    assert not redis_client.exists(keys.cooldown(account.id, "view"))
    # The order gets a new task.
    assert tasks_generate(limit=10, now=timezone.now()).created == 1


def test_stale_lease_cannot_fail_the_current_hand_out(api):
    generate(n_accounts=1, quantity=1)
    [first] = pull(api)
    TelegramTask.objects.update(leased_until=timezone.now() - timedelta(seconds=1))
    [second] = pull(api)
    assert_error(report(api, first, "failed", lease_id=first["lease_id"]), 409, "stale_lease")
    assert TelegramTask.objects.get().status == "leased"
    # A done from the stale holder is accepted, once.
    assert report(api, first, "done", lease_id=first["lease_id"]).json()["status"] == "done"
    assert report(api, second, "done", lease_id=second["lease_id"]).json()["duplicate"] is True


def test_failed_with_retry_after_holds_the_account_and_requeues(api, redis_client):
    generate(n_accounts=1, quantity=1)
    [task] = pull(api)
    before = timezone.now()
    body = report(api, task, "failed", ok=False, error="FLOOD_WAIT_30", retry_after=30).json()
    assert body["status"] == "queued"
    queued = TelegramTask.objects.get()
    assert queued.status == "queued" and queued.available_at >= before + timedelta(seconds=30)
    account = TelegramAccount.objects.get()
    assert int(redis_client.get(keys.hold(account.id))) >= int(
        (before + timedelta(seconds=30)).timestamp() * 1000
    )
    assert redis_client.hget(keys.lock(account.id, "view"), "token").decode() == task["task_id"]
    assert pull(api) == []  # not before retry_after
    TelegramTask.objects.update(available_at=timezone.now())
    assert pull(api) == []  # nor while the account is held
    TelegramAccount.objects.update(held_until=timezone.now())
    [again] = pull(api)
    assert again["task_id"] == task["task_id"] and again["attempt"] == 1


def test_pending_then_done(api, redis_client):
    order = generate(n_accounts=1, quantity=1)
    [task] = pull(api)
    body = report(api, task, "pending", provider_task_id="ptask-9").json()
    assert body["status"] == "pending"
    parked = TelegramTask.objects.get()
    assert parked.provider_task_id == "ptask-9"
    account = TelegramAccount.objects.get()
    until = int(redis_client.hget(keys.lock(account.id, "view"), "until"))
    assert until >= int((timezone.now() + timedelta(seconds=3600)).timestamp() * 1000) - 5000
    TelegramTask.objects.update(leased_until=timezone.now() + timedelta(seconds=3600))
    assert pull(api) == []  # a pending task is not handed out
    assert report(api, task, "done").json()["status"] == "done"
    order.refresh_from_db()
    assert order.remains == 0
    assert TelegramTask.objects.get().provider_task_id == "ptask-9"


def test_report_for_a_queued_task_never_handed_out_is_409(api):
    generate(n_accounts=1, quantity=1)
    task_id = TelegramTask.objects.get().pk
    assert_error(
        post(api, "tasks/report", {"task_id": task_id, "state": "done"}), 409, "task_not_leased"
    )
    assert TelegramTask.objects.get().status == "queued"


def test_report_for_an_unknown_task_is_404(api):
    response = post(api, "tasks/report", {"task_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "state": "done"})
    assert_error(response, 404, "task_not_found")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"state": "done"}, "task_id"),
        ({"task_id": "short", "state": "done"}, "task_id"),
        ({"task_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "state": "exploded"}, "state"),
        ({"task_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "state": "done", "ok": False}, "ok"),
        (
            {"task_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "state": "failed", "retry_after": -1},
            "retry_after",
        ),
        (
            {"task_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "state": "failed", "retry_after": 10**12},
            "retry_after",
        ),
        ({"task_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "state": "done", "error": 42}, "error"),
        ({"task_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "state": "done", "extra": 1}, "extra"),
    ],
)
def test_bad_reports_are_400(api, body, field):
    assert_error(post(api, "tasks/report", body), 400, "validation_error", field)


def test_batch_report_answers_per_item(api):
    order = generate(n_accounts=3, quantity=3)
    tasks = pull(api)
    body = post(
        api,
        "tasks/report",
        {
            "reports": [
                {"task_id": tasks[0]["task_id"], "state": "done"},
                {
                    "task_id": tasks[1]["task_id"],
                    "state": "failed",
                    "error": {"code": "X", "message": "y"},
                },
                {"task_id": tasks[0]["task_id"], "state": "done"},
                {"task_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "state": "done"},
            ]
        },
    ).json()
    assert body["ok"] is True
    r = body["results"]
    assert (r[0]["status"], r[1]["status"], r[2].get("duplicate"), r[3]["error"]["code"]) == (
        "done",
        "failed",
        True,
        "task_not_found",
    )
    order.refresh_from_db()
    assert order.remains == 2


def test_batch_report_with_a_bad_item_changes_nothing(api):
    generate(n_accounts=1, quantity=1)
    [task] = pull(api)
    response = post(
        api,
        "tasks/report",
        {"reports": [{"task_id": task["task_id"], "state": "done"}, {"state": "x"}]},
    )
    assert_error(response, 400, "validation_error", "reports")
    assert TelegramTask.objects.get().status == "leased"


def test_batch_report_too_large_is_413(api, settings):
    settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, "REPORT_MAX_BATCH": 2}
    reports = [{"task_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "state": "done"}] * 3
    assert_error(post(api, "tasks/report", {"reports": reports}), 413, "batch_too_large")


def test_database_failure_after_redis_commit_never_double_counts(api, monkeypatch, redis_client):
    """COMMIT runs first; the ledger step fails (PostgreSQL lost right after Redis counted
    the success); the provider's retry repairs it, once."""
    order = generate(n_accounts=1, quantity=2)
    [task] = pull(api)
    real = claims.commit_many_at

    def broken(*args, **kwargs):
        real(*args, **kwargs)
        raise DatabaseError("connection lost")

    monkeypatch.setattr(claims, "commit_many_at", broken)
    assert_error(report(api, task), 503, "service_unavailable")
    account = TelegramAccount.objects.get()
    cap_key = keys.cap(account.id, "view", claims.operations.local_day(timezone.now()))
    assert int(redis_client.get(cap_key)) == 1
    assert TelegramTask.objects.get().status == "leased"
    order.refresh_from_db()
    assert order.remains == 2
    monkeypatch.setattr(claims, "commit_many_at", real)
    assert report(api, task).json()["status"] == "done"
    assert int(redis_client.get(cap_key)) == 1
    order.refresh_from_db()
    assert order.remains == 1
    # The ledger keeps the moment the success was first counted, not the retry's.
    committed_ms = int(redis_client.get(keys.done(account.id, task["task_id"])))
    assert int(TelegramTask.objects.get().finished_at.timestamp() * 1000) == committed_ms


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("tasks/pull", lambda t: {"limit": 5}),
        ("tasks/report", lambda t: {"task_id": t.pk, "state": "done"}),
        ("tasks/report", lambda t: {"task_id": t.pk, "state": "failed", "error": "X"}),
        ("tasks/extend", lambda t: {"leases": [{"task_id": t.pk, "lease_id": t.lease_id}]}),
        ("tasks/release", lambda t: {"leases": [{"task_id": t.pk, "lease_id": t.lease_id}]}),
        ("accounts/sync", lambda t: {"accounts": [{"provider_account_id": "new-one"}]}),
    ],
)
def test_redis_down_is_503_on_every_endpoint_and_changes_nothing(api, cut_redis, path, body):
    generate(n_accounts=1, quantity=1)
    pull(api)
    task = TelegramTask.objects.get()
    before = (task.status, task.leased_until, TelegramAccount.objects.count())
    cut_redis()
    assert_error(post(api, path, body(task)), 503, "service_unavailable")
    task.refresh_from_db()
    assert (task.status, task.leased_until, TelegramAccount.objects.count()) == before


# --- extend and release ------------------------------------------------------------------------


def test_extend_pushes_the_lease_and_is_capped(api, settings, redis_client):
    settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, "MAX_LEASE_SECONDS": 300}
    generate(n_accounts=1, quantity=1)
    [task] = pull(api)
    body = post(
        api,
        "tasks/extend",
        {"leases": [{"task_id": task["task_id"], "lease_id": task["lease_id"], "seconds": 200}]},
    ).json()
    assert body["results"][0]["ok"] is True
    leased = TelegramTask.objects.get()
    assert leased.leased_until >= timezone.now() + timedelta(seconds=190)
    body = post(
        api,
        "tasks/extend",
        {"leases": [{"task_id": task["task_id"], "lease_id": task["lease_id"], "seconds": 5000}]},
    ).json()
    leased.refresh_from_db()
    assert leased.leased_until == leased.leased_at + timedelta(seconds=300)
    account = TelegramAccount.objects.get()
    assert int(redis_client.hget(keys.lock(account.id, "view"), "until")) == int(
        (leased.leased_until + timedelta(seconds=120)).timestamp() * 1000
    )
    stale = post(
        api, "tasks/extend", {"leases": [{"task_id": task["task_id"], "lease_id": "X" * 26}]}
    ).json()
    assert stale["results"][0]["error"]["code"] == "stale_lease"


def test_release_hands_back_without_counting_an_attempt(api):
    generate(n_accounts=1, quantity=1)
    [task] = pull(api)
    body = post(
        api,
        "tasks/release",
        {"leases": [{"task_id": task["task_id"], "lease_id": task["lease_id"]}]},
    ).json()
    assert body["results"] == [{"task_id": task["task_id"], "ok": True}]
    assert TelegramTask.objects.get().status == "queued"
    [again] = pull(api)
    assert again["task_id"] == task["task_id"] and again["attempt"] == 0


# --- OpenAPI -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_schema_and_docs_are_for_staff_when_debug_is_off(admin_client, settings):
    settings.DEBUG = False
    anonymous = APIClient()
    refused = anonymous.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "not_authenticated"
    assert anonymous.get("/api/docs/").status_code == 403
    assert admin_client.get("/api/schema/?format=json").status_code == 200
    settings.DEBUG = True
    assert anonymous.get("/api/schema/?format=json").status_code == 200


@pytest.mark.django_db
def test_schema_and_docs_are_served(admin_client, monkeypatch):
    from drf_spectacular.generators import SchemaGenerator

    generated = []
    real = SchemaGenerator.get_schema
    monkeypatch.setattr(
        SchemaGenerator, "get_schema", lambda *a, **k: generated.append(1) or real(*a, **k)
    )
    monkeypatch.setattr("telegram_tasks.api.schema.ProviderSchemaView._rendered", {})
    for _ in range(3):
        schema = admin_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
        assert schema.status_code == 200
    assert len(generated) == 1  # made once, then served as it was rendered
    paths = schema.json()["paths"]
    for p in ("accounts/sync", "tasks/pull", "tasks/report", "tasks/extend", "tasks/release"):
        assert f"{BASE}/{p}" in paths
    # Each task's params, per action, are described.
    components = schema.json()["components"]["schemas"]
    assert "params" in components["TaskOut"]["properties"]
    assert set(components["TaskParamsOut"]["properties"]) == {"reaction", "option", "start_param"}
    assert admin_client.get("/api/schema/").content.startswith(b"openapi:")  # YAML apart
    docs = admin_client.get("/api/docs/")
    assert docs.status_code == 200
    body = docs.content.decode()
    assert "cdn.jsdelivr" not in body  # the UI is served by the app itself, offline too
    assert "<script>" not in body  # no inline script: the Content-Security-Policy holds
    assert "script-src 'self'" in docs["Content-Security-Policy"]
    bundle = next(p for p in body.split('"') if p.endswith("swagger-ui-bundle.js"))
    assert admin_client.get(bundle).status_code == 200
    start = next(p for p in body.split('"') if "script=" in p)
    assert "SwaggerUIBundle" in admin_client.get(start.replace("&amp;", "&")).content.decode()


# --- JSON depth and size (hardening) ---------------------------------------------------------


def nested(levels: int):
    value: object = "x"
    for _ in range(levels):
        value = [value]
    return value


def test_json_just_under_the_depth_limit_is_stored_and_readable(api, admin_client):
    generate(n_accounts=1, quantity=1)
    [task] = pull(api)
    data = nested(31)  # the body is one level more: 32, the limit
    response = report(api, task, data=data)
    assert response.status_code == 200, response.content
    stored = TelegramTask.objects.get()
    assert stored.result["data"] == data
    page = admin_client.get(f"/admin/telegram_tasks/telegramtask/{stored.pk}/change/")
    assert page.status_code == 200


@pytest.mark.parametrize("levels", [32, 900, 5000])
def test_json_beyond_the_depth_limit_is_400_and_changes_nothing(api, levels):
    generate(n_accounts=1, quantity=1)
    [task] = pull(api)
    deep = "[" * levels + '"x"' + "]" * levels
    raw = '{"task_id": "' + task["task_id"] + '", "state": "done", "data": ' + deep + "}"
    response = api.post(f"{BASE}/tasks/report", raw, content_type="application/json")
    assert_error(response, 400, "malformed_json")
    assert TelegramTask.objects.get().status == "leased"


def test_json_larger_than_the_size_limit_is_400(api, settings):
    settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, "JSON_MAX_BYTES": 1000}
    generate(n_accounts=1, quantity=1)
    [task] = pull(api)
    assert_error(report(api, task, data={"x": "y" * 2000}), 400, "validation_error", "data")
    response = post(
        api,
        "accounts/sync",
        {"accounts": [{"provider_account_id": "big", "meta": {"x": "y" * 2000}}]},
    )
    assert response.status_code == 200 and response.json()["errors"][0]["errors"]["meta"]


def test_sync_sets_tiers_and_reports_an_unknown_tier_per_item(api):
    response = post(
        api,
        "accounts/sync",
        {
            "accounts": [
                {"provider_account_id": "t1", "tier": "premium"},
                {"provider_account_id": "t2", "tier": "gold"},
                {"provider_account_id": "t3"},
            ]
        },
    )
    body = response.json()
    assert response.status_code == 200 and body["synced"] == 2
    assert (
        body["errors"][0]["index"] == 1 and "unknown tier" in body["errors"][0]["errors"]["tier"][0]
    )
    assert dict(TelegramAccount.objects.values_list("provider_account_id", "tier")) == {
        "t1": "premium",
        "t3": "default",
    }


# --- a Redis that lost its claim state (no marker): refused in the same round trip ------------


def test_a_lost_claim_state_refuses_pulls_and_done_reports_and_changes_nothing(
    api, redis_client, redis_prefix
):
    """No per-request ping: the pull's one Redis round trip asks for the marker (with the
    re-arms of lapsed leases), a done report's COMMIT checks it itself (on a cluster, just
    before). Both answer 503 and leave the ledger and Redis as they were."""
    order = generate(n_accounts=2, quantity=2)
    [first] = pull(api, limit=1)
    redis_client.delete(f"{redis_prefix}:marker")
    assert_error(post(api, "tasks/pull", {"limit": 5}), 503, "service_unavailable")
    assert TelegramTask.objects.filter(status="queued").count() == 1
    assert_error(report(api, first), 503, "service_unavailable")
    task = TelegramTask.objects.get(pk=first["task_id"])
    assert task.status == "leased"
    account = task.telegram_account
    today = claims.operations.local_day(timezone.now())
    assert redis_client.get(keys.cap(account.id, "view", today)) is None
    assert not redis_client.exists(keys.done(account.id, task.pk))
    order.refresh_from_db()
    assert order.remains == 2
    claims.mark_state("back")
    assert report(api, first).json()["status"] == "done"


def test_a_pull_costs_one_statement_and_one_redis_round_trip(api, monkeypatch):
    """The lease is one statement (in its transaction); the claim state and any re-arms are
    one Redis round trip; nothing per task."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from redis.client import Pipeline, Redis
    from redis.cluster import ClusterPipeline, RedisCluster

    generate(n_accounts=5, quantity=5)
    trips = []
    for cls, name in ((Redis, "execute_command"), (Pipeline, "execute"),
                      (RedisCluster, "execute_command"), (ClusterPipeline, "execute")):  # fmt: skip
        real = getattr(cls, name)

        def counted(self, *args, _real=real, _name=f"{cls.__name__}.{name}", **kwargs):
            trips.append(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, counted)
    with CaptureQueriesContext(connection) as queries:
        assert len(pull(api, limit=10)) == 5
    on_tasks = [q["sql"][:60] for q in queries if "telegram_tasks" in q["sql"]]
    assert len(on_tasks) == 1, on_tasks
    assert len(trips) == 1, trips


def test_a_batch_whose_ledger_step_fails_after_commit_never_double_counts(api, monkeypatch):
    """The general path (a batch): COMMIT, then the ledger step fails; the retry counts once."""
    from telegram_tasks.services import settle

    order = generate(n_accounts=2, quantity=2)
    tasks = pull(api)
    body = {"reports": [{"task_id": t["task_id"], "state": "done"} for t in tasks]}
    real = settle.mark_done

    def broken(*args, **kwargs):
        raise DatabaseError("connection lost")

    monkeypatch.setattr(settle, "mark_done", broken)
    assert_error(post(api, "tasks/report", body), 503, "service_unavailable")
    assert set(TelegramTask.objects.values_list("status", flat=True)) == {"leased"}
    monkeypatch.setattr(settle, "mark_done", real)
    results = post(api, "tasks/report", body).json()["results"]
    assert [r["status"] for r in results] == ["done", "done"]
    order.refresh_from_db()
    assert order.remains == 0
