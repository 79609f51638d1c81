"""Prometheus metrics (``GET /metrics``) and the probes (``GET /healthz``, ``GET /readyz``).

Counters of what the web processes do (reports, HTTP answers) are prometheus-client metrics; with
several gunicorn workers they are kept in PROMETHEUS_MULTIPROC_DIR (config/gunicorn.conf.py sets
it) and summed over the workers at each scrape. Gauges of the ledger (tasks by status, queue
age, starved orders, accounts by state, the last pass) are read at scrape time from cheap
queries: the same in whichever worker answers, and kept HEALTH_CACHE_SECONDS per process, as
/readyz's checks are, so a flood of scrapes or probes costs no query.

Who may see what: with DEBUG off, /metrics and the details of /readyz (which check failed, and
why) need ``Authorization: Bearer <METRICS_TOKEN>``, unless asked on the internal listener
(WEB_PROBE_BIND, config.serving), which needs no token; /readyz answers everyone with its
status and ``{"ok": …}``.
"""

from __future__ import annotations

import hmac
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from django.conf import settings
from django.core.signals import setting_changed
from django.db import connection
from django.db.models import Count, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from telegram_tasks import claims
from telegram_tasks.api.exception_handlers import envelope
from telegram_tasks.conf import app_settings, get_order_model
from telegram_tasks.models import GenerationPass, Provider, TaskHour, TaskStatus, TaskTotal
from telegram_tasks.monitoring import overview
from telegram_tasks.services import farm, sql
from telegram_tasks.services.dispatch import breaker_name
from telegram_tasks.services.liveness import pass_liveness

CIRCUIT_STATES = ("closed", "open", "half")


class LedgerCollector(Collector):
    """The ledger's gauges, read at scrape time. ``provider`` labels (a provider's name) where
    a number belongs to one fleet: tasks, accounts, the push circuit (providers are few; no
    label names an account or a token)."""

    def collect(self) -> Iterator[Any]:
        now = timezone.now()
        names = dict(Provider.objects.values_list("pk", "name"))
        tasks = GaugeMetricFamily(
            "telegram_tasks_tasks",
            "Tasks by status, action and provider (finished ones: those the retention keeps)",
            labels=["status", "action", "provider"],
        )
        # Every configured action, status and provider, zero included: a series that vanishes
        # when it reaches zero would break rate() and alerts.
        counted = {
            (s, a, p): 0 for s in TaskStatus.values for a in app_settings.ACTIONS for p in names
        }
        for status, action, provider, n in sql.rows(
            f"SELECT status, action, provider_id, count(*) FROM {sql.TASKS} "  # noqa: S608
            f"WHERE status IN {sql.LIVE} GROUP BY 1, 2, 3"
        ):
            counted[(status, action, provider)] = n
        for row in (
            TaskHour.objects.exclude(outcome=TaskHour.Outcome.CREATED)
            .values("outcome", "action", "provider_id")
            .annotate(n=Sum("count"))
        ):
            counted[(row["outcome"], row["action"], row["provider_id"])] = row["n"]
        for (status, action, provider), n in sorted(counted.items()):
            tasks.add_metric([status, action, names.get(provider, str(provider))], n)
        yield tasks

        oldest = GaugeMetricFamily(
            "telegram_tasks_queue_oldest_seconds",
            "How long the oldest task due for hand-out has waited, by action",
            labels=["action"],
        )
        by_action: dict[str, float] = dict.fromkeys(app_settings.ACTIONS, 0.0)
        for queue in overview.queues(now=now):
            if queue.oldest_seconds is not None:
                by_action[queue.action] = max(
                    by_action.get(queue.action, 0.0), queue.oldest_seconds
                )
        for action, seconds in sorted(by_action.items()):
            oldest.add_metric([action], seconds)
        yield oldest

        created = CounterMetricFamily(
            "telegram_tasks_tasks_created",
            "Tasks created, by action and provider",
            labels=["action", "provider"],
        )
        made = {(a, p): 0 for a in app_settings.ACTIONS for p in names}
        for row in (
            TaskTotal.objects.filter(outcome=TaskHour.Outcome.CREATED)
            .values("action", "provider_id")
            .annotate(n=Sum("count"))
        ):
            made[(row["action"], row["provider_id"])] = row["n"]
        for (action, provider), n in sorted(made.items()):
            created.add_metric([action, names.get(provider, str(provider))], n)
        yield created

        last = GenerationPass.objects.order_by("-started_at").values("seconds").first()
        seconds = GaugeMetricFamily(
            "telegram_tasks_generation_pass_seconds", "How long the last generation pass took"
        )
        if last is not None:
            seconds.add_metric([], last["seconds"])
        yield seconds

        starved = GaugeMetricFamily(
            "telegram_tasks_starved_orders",
            "Orders the last passes found short of accounts, by action",
            labels=["action"],
        )
        action_field = f"order__{get_order_model()._meta.get_field('action').name}"
        short = dict.fromkeys(app_settings.ACTIONS, 0)
        for row in overview.short_of_accounts(now=now).values(action_field).annotate(n=Count("pk")):
            short[row[action_field]] = row["n"]
        for action, n in sorted(short.items()):
            starved.add_metric([action], n)
        yield starved

        yield from pass_metrics(now)

        accounts = GaugeMetricFamily(
            "telegram_tasks_accounts",
            "Accounts by state and provider (an account may be both cooling and capped)",
            labels=["state", "provider"],
        )
        counts = farm.account_counts(now=now)
        for pk, name in sorted(names.items()):
            mine = counts.providers.get(str(pk)) or {}
            for state in farm.STATES:
                if mine.get(state, 0) is not None:  # (cooling, capped: unknown without Redis)
                    accounts.add_metric([state, name], mine.get(state, 0))
        yield accounts
        yield from circuit_metrics(names, now)


def circuit_metrics(names: dict[int, str], now: Any) -> Iterator[Any]:
    """Each provider's push circuit: 1 for the state it is in, 0 for the others (nothing while
    Redis does not answer)."""
    circuit = GaugeMetricFamily(
        "telegram_tasks_push_circuit",
        "Each provider's push circuit breaker: 1 for its state (closed, open, half)",
        labels=["provider", "state"],
    )
    try:
        states = {pk: claims.breaker(breaker_name(pk), "peek", now=now).state for pk in names}
    except RedisError:
        states = {}
    for pk, state in sorted(states.items()):
        for each in CIRCUIT_STATES:
            circuit.add_metric([names[pk], each], 1 if state == each else 0)
    yield circuit


def pass_metrics(now: Any) -> Iterator[Any]:
    """When each periodic pass last ran and last succeeded (Unix time; 0: never), and how many
    runs and failures it had: alert on ``time() - …last_success… > 3 * its period``."""
    ran = GaugeMetricFamily(
        "telegram_tasks_pass_last_run_timestamp_seconds",
        "When each periodic pass last ran (Unix time, 0: never)",
        labels=["pass"],
    )
    succeeded = GaugeMetricFamily(
        "telegram_tasks_pass_last_success_timestamp_seconds",
        "When each periodic pass last succeeded (Unix time, 0: never)",
        labels=["pass"],
    )
    period = GaugeMetricFamily(
        "telegram_tasks_pass_period_seconds",
        "How often each periodic pass is due (its beat entry's interval)",
        labels=["pass"],
    )
    runs = CounterMetricFamily(
        "telegram_tasks_pass_runs", "Runs of each periodic pass", labels=["pass"]
    )
    failures = CounterMetricFamily(
        "telegram_tasks_pass_failures", "Runs of each periodic pass that failed", labels=["pass"]
    )
    for p in pass_liveness(now=now):
        ran.add_metric([p.name], p.last_run_at.timestamp() if p.last_run_at else 0)
        succeeded.add_metric([p.name], p.last_success_at.timestamp() if p.last_success_at else 0)
        period.add_metric([p.name], p.period_seconds)
        runs.add_metric([p.name], p.runs)
        failures.add_metric([p.name], p.failures)
    yield from (ran, succeeded, period, runs, failures)


LEDGER = CollectorRegistry(auto_describe=False)
LEDGER.register(LedgerCollector())

# The WSGI environ key the internal listener sets (config.serving); a client cannot set it (its
# headers arrive as HTTP_…).
INTERNAL_LISTENER = "telegram_tasks.internal_listener"

T = TypeVar("T")


class Kept:
    """One value kept HEALTH_CACHE_SECONDS per process; computed by one caller at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value: Any = None
        self._until = 0.0

    def get(self, compute: Callable[[], T]) -> T:
        with self._lock:
            if time.monotonic() >= self._until:
                self._value = compute()
                # (A project's setting, read only if it has one: 5 s otherwise.)
                kept = getattr(settings, "HEALTH_CACHE_SECONDS", 5.0)
                self._until = time.monotonic() + float(kept)
            return self._value

    def forget(self) -> None:
        self._until = 0.0


LEDGER_KEPT = Kept()
READY_KEPT = Kept()


def _forget_kept(**kwargs: Any) -> None:
    """A changed setting (tests) may change every answer."""
    LEDGER_KEPT.forget()
    READY_KEPT.forget()


setting_changed.connect(_forget_kept)


def monitoring_allowed(request: HttpRequest) -> bool:
    """Whether the caller may see the metrics and the probes' details: on the internal
    listener, with the METRICS_TOKEN, or (without a token configured) with DEBUG on."""
    if request.META.get(INTERNAL_LISTENER):
        return True
    token = getattr(settings, "METRICS_TOKEN", "")
    if not token:
        return bool(settings.DEBUG)
    given = request.headers.get("Authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not monitoring_allowed(request):
        refused = JsonResponse(
            envelope(
                "unauthorized",
                "GET /metrics needs Authorization: Bearer <METRICS_TOKEN> (or the internal "
                "listener, WEB_PROBE_BIND)",
            ),
            status=401,
        )
        refused["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return refused
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        workers = CollectorRegistry()
        multiprocess.MultiProcessCollector(workers)
    else:
        workers = REGISTRY
    body = generate_latest(workers) + LEDGER_KEPT.get(lambda: generate_latest(LEDGER))
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


@require_GET
def healthz_view(request: HttpRequest) -> JsonResponse:
    """The process serves (nothing else is asked)."""
    return JsonResponse({"ok": True})


@require_GET
def readyz_view(request: HttpRequest) -> JsonResponse:
    """PostgreSQL and Redis answer and the claim state is present; else 503, naming what failed
    to whom may see it (``monitoring_allowed``)."""
    body, status = READY_KEPT.get(readiness)
    if not monitoring_allowed(request):
        body = {"ok": body["ok"]}
    return JsonResponse(body, status=status)


def readiness() -> tuple[dict[str, Any], int]:
    """The checks behind /readyz, and the status they make."""
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["postgresql"] = "ok"
    except Exception as exc:  # any failure to answer is "not ready"
        checks["postgresql"] = f"unavailable: {type(exc).__name__}"
    try:
        claims.ping()
        checks["redis"] = "ok"
        checks["claim_state"] = (
            "ok" if claims.state_present() else "lost (rebuild_claims runs within a minute)"
        )
    except RedisError as exc:
        checks["redis"] = f"unavailable: {type(exc).__name__}"
    failed = sorted(name for name, state in checks.items() if state != "ok")
    body: dict[str, Any] = {"ok": not failed, "checks": checks}
    if failed:
        body["failed"] = failed
    return body, 503 if failed else 200
