"""Health probes and Prometheus metrics, as a scraper and an orchestrator see them."""

from __future__ import annotations

import httpx
import pytest
from django.utils import timezone

from telegram_tasks.services import tasks_generate, tasks_housekeep
from tests import live
from tests.factories import make_accounts, make_order

REQUIRED = (
    "telegram_tasks_tasks{",
    "telegram_tasks_queue_oldest_seconds{",
    "telegram_tasks_reports_total{",
    "telegram_tasks_generation_pass_seconds ",
    "telegram_tasks_tasks_created_total{",
    "telegram_tasks_starved_orders{",
    "telegram_tasks_accounts{",
    "telegram_tasks_push_circuit{",
)


MONITOR = "scrape-me-" + "x7Kq2mZ9pL4vR8tY1wN6bC3dF5gH0jA"


@pytest.fixture
def monitoring(settings):
    """The monitoring token set, nothing kept between calls: each probe checks afresh."""
    settings.METRICS_TOKEN = MONITOR
    settings.HEALTH_CACHE_SECONDS = 0
    return {"HTTP_AUTHORIZATION": f"Bearer {MONITOR}"}


@pytest.mark.django_db
def test_healthz_and_readyz(client, redis_client, redis_prefix, monitoring):
    assert client.get("/healthz").json() == {"ok": True}
    ready = client.get("/readyz", **monitoring)
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"postgresql": "ok", "redis": "ok", "claim_state": "ok"}
    redis_client.delete(f"{redis_prefix}:marker")
    lost = client.get("/readyz", **monitoring)
    assert lost.status_code == 503 and lost.json()["failed"] == ["claim_state"]


@pytest.mark.django_db
def test_readyz_names_redis_when_it_is_down(client, cut_redis, monitoring):
    cut_redis()
    down = client.get("/readyz", **monitoring)
    assert down.status_code == 503 and down.json()["failed"] == ["redis"]


@pytest.mark.django_db
def test_readyz_tells_no_stranger_why(client, cut_redis, settings):
    """DEBUG off and no token: the status and ok only, never which check failed or the
    exception's class."""
    settings.HEALTH_CACHE_SECONDS = 0
    assert client.get("/readyz").json() == {"ok": True}
    cut_redis()
    down = client.get("/readyz")
    assert down.status_code == 503 and down.json() == {"ok": False}
    settings.DEBUG = True
    assert client.get("/readyz").json()["failed"] == ["redis"]


@pytest.mark.django_db
def test_readyz_and_the_ledger_gauges_are_kept_a_few_seconds(
    client, redis_client, redis_prefix, settings, django_assert_num_queries
):
    settings.METRICS_TOKEN = MONITOR
    auth = {"HTTP_AUTHORIZATION": f"Bearer {MONITOR}"}
    settings.HEALTH_CACHE_SECONDS = 60
    assert client.get("/readyz").status_code == 200
    client.get("/metrics", **auth)
    redis_client.delete(f"{redis_prefix}:marker")
    with django_assert_num_queries(0):
        for _ in range(20):
            assert client.get("/readyz").status_code == 200  # kept: not asked again
            assert client.get("/metrics", **auth).status_code == 200
    settings.HEALTH_CACHE_SECONDS = 0  # (a changed setting forgets what was kept)
    assert client.get("/readyz").status_code == 503


@pytest.mark.django_db
def test_metrics_name_what_the_contract_asks(client, settings, monitoring):
    settings.PROVIDER_TOKEN = "t"
    make_accounts(2)
    make_order(action="view", link="t.me/durov/4", quantity=2)
    tasks_generate(limit=10, now=timezone.now())
    client.post("/api/provider/telegram/tasks/report", {"task_id": "0" * 26, "state": "done"},
                content_type="application/json", HTTP_X_PROVIDER_TOKEN="t")  # fmt: skip
    body = client.get("/metrics", **monitoring).content.decode()
    for name in REQUIRED:
        assert name in body, name
    assert 'telegram_tasks_tasks{action="view",provider="default",status="queued"} 2.0' in body
    assert (
        'telegram_tasks_reports_total{outcome="task_not_found",provider="default",state="done"}'
        in body
    )
    assert 'telegram_tasks_push_circuit{provider="default",state="closed"} 1.0' in body
    assert 'telegram_tasks_http_responses_total{code="404"}' in body


@pytest.mark.django_db
def test_metrics_behind_a_token(client, settings):
    settings.METRICS_TOKEN = "scrape-me"
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused["WWW-Authenticate"].startswith("Bearer")
    assert refused.json()["error"]["code"] == "unauthorized"
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").status_code == 200


@pytest.mark.django_db
def test_metrics_without_a_token_only_with_debug_on(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 401
    settings.DEBUG = True
    assert client.get("/metrics").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_counters_are_summed_over_every_gunicorn_worker(redis_prefix):
    """Two workers behind one port answer the requests; every scrape counts them all, on the
    internal listener (no token there) as on the public one (with the token)."""
    make_accounts(1)
    tasks_housekeep(now=timezone.now())
    with live.gunicorn(redis_prefix, WEB_WORKERS="2", METRICS_TOKEN=MONITOR) as server:
        for _ in range(40):  # fresh connections: the workers share them out
            answer = httpx.post(
                server.url + "/api/provider/telegram/tasks/pull", json={"limit": 1},
                headers={"X-Provider-Token": live.TOKEN, "Connection": "close"}, timeout=10,
            )  # fmt: skip
            assert answer.status_code == 200, answer.text
        assert httpx.get(server.url + "/metrics", timeout=10).status_code == 401
        for scraped in (
            httpx.get(server.probe_url + "/metrics", timeout=10).text,
            httpx.get(server.url + "/metrics", timeout=10,
                      headers={"Authorization": f"Bearer {MONITOR}"}).text,
        ):  # fmt: skip
            line = next(
                x
                for x in scraped.splitlines()
                if x.startswith('telegram_tasks_http_responses_total{code="200"}')
            )
            assert float(line.split()[-1]) == 40
            assert 'telegram_tasks_accounts{provider="default",state="active"} 1.0' in scraped
        internal = httpx.get(server.probe_url + "/readyz", timeout=10).json()
        assert internal["checks"]["postgresql"] == "ok"
        assert httpx.get(server.probe_url + "/admin/", timeout=10).status_code == 404


@pytest.mark.django_db
def test_the_dashboard_and_metrics_answer_with_redis_down(admin_client, cut_redis, settings):
    """Redis is where the accounts snapshot and the push circuit live, not what the pages need:
    both still answer (counted from PostgreSQL, the circuit "unknown")."""
    make_accounts(2)
    cut_redis()
    board = admin_client.get("/admin/dashboard/")
    assert board.status_code == 200
    assert "unknown (Redis unavailable)" in board.content.decode()
    settings.DEBUG = True  # (no token needed)
    metrics = admin_client.get("/metrics")
    assert metrics.status_code == 200
    assert 'telegram_tasks_accounts{provider="default",state="active"} 2.0' in (
        metrics.content.decode()
    )


@pytest.mark.django_db
def test_every_pass_reports_when_it_last_ran_and_succeeded(client, admin_client, monitoring):
    """Generation, housekeeping (and its rollup) and push dispatch each record their runs,
    whoever runs them; /metrics shows them per pass (0: never), the dashboard how long ago."""
    from datetime import timedelta

    from telegram_tasks.monitoring import overview
    from telegram_tasks.services import tasks_push

    body = client.get("/metrics", **monitoring).content.decode()
    before = {n: sample(body, "telegram_tasks_pass_runs_total", n) for n in PASSES}
    for name in PASSES:
        assert f'telegram_tasks_pass_last_success_timestamp_seconds{{pass="{name}"}} 0.0' in body
    page = admin_client.get("/admin/dashboard/").content.decode()
    assert "last generation pass never (late)" in page
    now = timezone.now().replace(microsecond=0)
    tasks_generate(limit=10, now=now)
    tasks_housekeep(now=now)
    tasks_push(now=now, deliver=lambda target, tasks: [])
    body = client.get("/metrics", **monitoring).content.decode()
    for name in PASSES:
        at = sample(body, "telegram_tasks_pass_last_success_timestamp_seconds", name)
        assert at == now.timestamp(), name
        assert sample(body, "telegram_tasks_pass_runs_total", name) == before[name] + 1
    assert 'telegram_tasks_pass_period_seconds{pass="push"} 5.0' in body
    board = overview.dashboard(now=now + timedelta(seconds=12))
    states = {p.name: p for p in board.liveness}
    assert states["generation"].ago == "12 s ago" and not states["generation"].late
    # Three periods without a success: late (red).
    later = overview.dashboard(now=now + timedelta(seconds=181))
    assert {p.name for p in later.liveness if p.late} == {"generation", "housekeeping",
                                                           "rollup", "push"}  # fmt: skip


PASSES = ("generation", "housekeeping", "rollup", "push")


def sample(body: str, metric: str, pass_name: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name == metric and s.labels.get("pass") == pass_name:
                return s.value
    raise AssertionError(f"no {metric} for {pass_name}")


@pytest.mark.django_db
def test_a_failing_pass_records_its_error_and_keeps_its_last_success(
    client, monkeypatch, monitoring
):
    from telegram_tasks.models import PassRun
    from telegram_tasks.services import generation

    PassRun.objects.all().delete()
    now = timezone.now().replace(microsecond=0)
    tasks_generate(limit=10, now=now)

    def broken(**kwargs):
        raise RuntimeError("the ledger is on fire")

    monkeypatch.setattr(generation, "claims_restore_if_lost", broken)
    with pytest.raises(RuntimeError):
        tasks_generate(limit=10, now=now + timezone.timedelta(minutes=1))
    run = PassRun.objects.get(name="generation")
    assert run.last_run_at > run.last_success_at == now
    assert (run.runs, run.failures) == (2, 1) and "on fire" in run.last_error
    body = client.get("/metrics", **monitoring).content.decode()
    assert 'telegram_tasks_pass_failures_total{pass="generation"} 1.0' in body


@pytest.mark.django_db
def test_the_dashboard_says_when_push_work_waits_for_a_dispatcher_that_does_not_run(
    admin_client, settings
):
    from telegram_tasks.monitoring import overview

    make_accounts(1)
    make_order(action="view", link="t.me/durov/4", quantity=1, execution_mode="push")
    now = timezone.now()
    tasks_generate(limit=10, now=now)
    assert (
        "push is not set up: provider default: no push URL is set"
        in overview.dashboard(now=now).push_problem
    )
    settings.PROVIDER_TOKEN = "t"
    settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, "PROVIDER_PUSH_URL": "https://p.example"}
    assert overview.dashboard(now=now).push_problem.startswith("dispatcher not running")
    assert "dispatcher not running" in admin_client.get("/admin/dashboard/").content.decode()


@pytest.mark.django_db
def test_beat_can_send_every_periodic_task_with_the_projects_limits():
    """Celery refuses to send a task whose soft time limit exceeds its hard one (the project's
    CELERY_TASK_SOFT_TIME_LIMIT applies to a task that names none): beat then logs a traceback
    every time and the pass never runs. Every entry of the beat schedule, every app's."""
    from django_celery_beat.models import PeriodicTask

    from config.celery import app
    from telegram_tasks import schedule
    from telegram_tasks.tasks import push_pass_seconds

    app.loader.import_default_modules()
    names = set(PeriodicTask.objects.values_list("task", flat=True))
    assert {schedule.GENERATE, schedule.HOUSEKEEP, schedule.PUSH} <= names
    for name in names - {"celery.backend_cleanup"}:
        task = app.tasks[name]
        soft = task.soft_time_limit or app.conf.task_soft_time_limit
        hard = task.time_limit or app.conf.task_time_limit
        assert soft <= hard, name
    # A pass can run for a lease and a send: its limit follows LEASE_SECONDS.
    assert app.tasks[schedule.PUSH].soft_time_limit >= push_pass_seconds() >= 60 + 60
