"""Whether the periodic passes run: each one records, as it ends, when it ran and whether it
succeeded (``PassRun``, in the ledger, so every process reads the same). Beat and the commands
call the same services, so a pass run by hand counts as well.

A pass that stops running — a beat entry Celery refuses to send, a worker that is gone, a pass
that fails every time — shows as a last success that stops moving: the dashboard turns it red
past three periods, and ``/metrics`` exposes both times for an alert (docs/operations.md).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ParamSpec, TypeVar

from django.db import DatabaseError

from telegram_tasks.conf import app_settings
from telegram_tasks.models import PassRun
from telegram_tasks.services import sql

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

RUNS = PassRun._meta.db_table

# The passes, each with the beat entry that runs it and the interval that entry is created with
# (``expected_periods`` reads the one in force).
PASSES: dict[str, tuple[str, int | None]] = {
    "generation": ("telegram_tasks.generate", None),  # None: GENERATION_TICK_SECONDS
    "housekeeping": ("telegram_tasks.housekeep", None),
    "rollup": ("telegram_tasks.housekeep", None),  # part of housekeeping
    "push": ("telegram_tasks.push", 5),
}
# A pass whose last success is older than this many periods is late (red on the dashboard).
LATE_PERIODS = 3


def records_pass(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Record each run of the decorated service (which takes ``now``) as pass ``name``: its
    start, how long it took, and its error if it raised (the error still propagates)."""

    def decorate(service: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(service)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            now = kwargs["now"]
            started = time.perf_counter()
            try:
                result = service(*args, **kwargs)
            except BaseException as exc:
                record_run(name, now=now, seconds=time.perf_counter() - started, error=exc)
                raise
            record_run(name, now=now, seconds=time.perf_counter() - started)
            return result

        return run

    return decorate


def record_run(
    name: str, *, now: datetime, seconds: float, error: BaseException | None = None
) -> None:
    """One run of a pass, in a statement of its own (autocommit). A ledger that cannot take it
    (PostgreSQL down) loses the record, never the pass's own outcome: the time then stops
    moving, which is what an outage should look like."""
    failed = error is not None
    text = "" if error is None else f"{type(error).__name__}: {error}"[:2000]
    try:
        sql.fetch(
            f"""
            INSERT INTO {RUNS} AS r (name, last_run_at, last_success_at, last_seconds,
                                    last_error, runs, failures)
            VALUES (%(name)s, %(now)s, %(ok_at)s, %(seconds)s, %(error)s, 1, %(failed)s)
            ON CONFLICT (name) DO UPDATE SET
                last_run_at = GREATEST(r.last_run_at, EXCLUDED.last_run_at),
                last_success_at = COALESCE(GREATEST(r.last_success_at, EXCLUDED.last_success_at),
                                           r.last_success_at, EXCLUDED.last_success_at),
                last_seconds = EXCLUDED.last_seconds,
                last_error = EXCLUDED.last_error,
                runs = r.runs + 1,
                failures = r.failures + EXCLUDED.failures
            """,  # noqa: S608
            {
                "name": name,
                "now": now,
                "ok_at": None if failed else now,
                "seconds": seconds,
                "error": text,
                "failed": int(failed),
            },
        )
    except DatabaseError as exc:
        logger.warning("the %s pass's run was not recorded (PostgreSQL unavailable): %s", name, exc)


@dataclass(frozen=True)
class Liveness:
    """One pass as the operator's view shows it."""

    name: str
    period_seconds: int
    last_run_at: datetime | None
    last_success_at: datetime | None
    last_seconds: float | None
    last_error: str
    runs: int
    failures: int

    def age(self, now: datetime) -> float | None:
        """Seconds since the last success (None: never succeeded)."""
        if self.last_success_at is None:
            return None
        return max(0.0, (now - self.last_success_at).total_seconds())

    def late(self, now: datetime) -> bool:
        """No success for LATE_PERIODS periods (or never one)."""
        age = self.age(now)
        return age is None or age > LATE_PERIODS * self.period_seconds


def pass_liveness(*, now: datetime) -> list[Liveness]:
    """Every pass with its last run and success (never-run passes included), in PASSES order."""
    runs = {r.name: r for r in PassRun.objects.all()}
    periods = expected_periods()
    out = []
    for name in PASSES:
        run = runs.get(name)
        out.append(
            Liveness(
                name=name,
                period_seconds=periods[name],
                last_run_at=run.last_run_at if run else None,
                last_success_at=run.last_success_at if run else None,
                last_seconds=run.last_seconds if run else None,
                last_error=run.last_error if run else "",
                runs=run.runs if run else 0,
                failures=run.failures if run else 0,
            )
        )
    return out


def expected_periods() -> dict[str, int]:
    """How often each pass should run: the interval of its beat entry in the database
    scheduler when there is one (an operator may retime it in the admin), else the default."""
    tick = int(app_settings.GENERATION_TICK_SECONDS)
    periods = {name: default or tick for name, (_, default) in PASSES.items()}
    intervals = _beat_intervals()
    for name, (task, _) in PASSES.items():
        if task in intervals:
            periods[name] = intervals[task]
    return periods


_UNIT_SECONDS = {"microseconds": 1e-6, "seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}


def _beat_intervals() -> dict[str, int]:
    """task name -> seconds, for the enabled interval entries of django-celery-beat (if the
    project uses it)."""
    from django.apps import apps

    if not apps.is_installed("django_celery_beat"):
        return {}
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    rows: Any = PeriodicTask.objects.filter(
        enabled=True, interval__isnull=False, task__in=[t for t, _ in PASSES.values()]
    ).values_list("task", "interval__every", "interval__period")
    return {task: max(1, int(every * _UNIT_SECONDS.get(period, 1))) for task, every, period in rows}


def late_after(period_seconds: int) -> timedelta:
    return timedelta(seconds=LATE_PERIODS * period_seconds)
