"""Celery tasks: thin interfaces over the services, scheduled by Celery beat (the database
entries of django-celery-beat, or ``schedule.BEAT_SCHEDULE``)."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import worker_ready
from django.utils import timezone

from telegram_tasks import claims, schedule
from telegram_tasks.api import push_transport
from telegram_tasks.claims import ClaimsStateLost
from telegram_tasks.conf import app_settings
from telegram_tasks.services import push_waiting, tasks_generate, tasks_housekeep, tasks_push
from telegram_tasks.services.dispatch import push_targets, target_problem

logger = logging.getLogger(__name__)

# Longer than any sane pass; if a worker dies holding it, the next tick after this runs again.
PASS_LOCK_SECONDS = 300
# Each task names both of its limits: beat refuses to send a task whose soft limit (the
# project's CELERY_TASK_SOFT_TIME_LIMIT when the task names none) exceeds its hard one.
SOFT_MARGIN_SECONDS = 30


@shared_task(
    name=schedule.GENERATE,
    ignore_result=True,
    time_limit=PASS_LOCK_SECONDS,
    soft_time_limit=PASS_LOCK_SECONDS - SOFT_MARGIN_SECONDS,
)
def generate_telegram_tasks(limit: int = 1000) -> str | None:
    lock = claims.pass_lock("generate", timeout=PASS_LOCK_SECONDS)
    if not lock.acquire():
        logger.info("generation pass skipped: the previous one is still running")
        return None
    try:
        return tasks_generate(limit=limit, now=timezone.now()).line()
    except ClaimsStateLost as exc:
        # Not a crash: the pass refuses on purpose until the state is rebuilt (housekeeping
        # does it within a minute).
        logger.error("generation pass refused: %s", exc)
        return f"refused: {exc}"
    finally:
        lock.release()


@shared_task(
    name=schedule.HOUSEKEEP,
    ignore_result=True,
    time_limit=PASS_LOCK_SECONDS,
    soft_time_limit=PASS_LOCK_SECONDS - SOFT_MARGIN_SECONDS,
)
def housekeep_telegram_tasks() -> str | None:
    lock = claims.pass_lock("housekeep", timeout=PASS_LOCK_SECONDS)
    if not lock.acquire():
        logger.info("housekeeping skipped: the previous run is still going")
        return None
    try:
        return tasks_housekeep(now=timezone.now()).line()
    finally:
        lock.release()


def push_pass_seconds() -> int:
    """The longest a dispatch pass may take: it starts no send its lease could not outlast, and
    each send ends within PUSH_TIMEOUT_SECONDS, so a pass ends within a lease and a send (the
    providers are served side by side, each in a thread); the answers are applied after. A
    margin on top: a pass killed by its time limit applies no answer at all."""
    lease = int(app_settings.LEASE_SECONDS)
    return max(120, lease + 2 * int(app_settings.PUSH_TIMEOUT_SECONDS) + 60)


PUSH_PASS_SECONDS = push_pass_seconds()


@shared_task(
    name=schedule.PUSH,
    ignore_result=True,
    time_limit=PUSH_PASS_SECONDS + SOFT_MARGIN_SECONDS,
    soft_time_limit=PUSH_PASS_SECONDS,
)
def push_telegram_tasks() -> str | None:
    """A dispatch pass. No pass lock: passes may overlap (a slow provider, several workers or
    machines) — the lease statement's SKIP LOCKED hands each task to one of them, and each
    provider's circuit breaker is shared in Redis."""
    targets = push_targets()
    problems = [p for p in map(target_problem, targets) if p]
    if len(problems) == len(targets):
        # Not set up: nothing is leased. Worth a warning only when push work is waiting.
        if push_waiting():
            logger.warning(
                "push tasks are waiting but push is not set up: %s",
                "; ".join(problems) or "no provider has a push URL",
            )
        return None
    try:
        return tasks_push(
            now=timezone.now(), deliver=push_transport.deliver, targets=targets
        ).line()
    except ClaimsStateLost as exc:
        logger.info("push pass refused until the claim state is restored: %s", exc)
        return None


@worker_ready.connect
def housekeep_when_a_worker_starts(sender: object = None, **kwargs: object) -> None:
    """A worker that starts queues a housekeeping pass at once rather than at beat's next
    tick: on a fresh install or after Redis lost its state, pulls and reports answer 503 until
    the claim state is restored, and a minute of that for every deploy is a minute lost."""
    housekeep_telegram_tasks.delay()
