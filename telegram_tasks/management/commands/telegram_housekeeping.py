from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from django.utils import timezone
from redis.exceptions import RedisError

from telegram_tasks.housekeeping import tasks_housekeep


class Command(BaseCommand):
    help = (
        "End tasks that can no longer finish (expired, attempts_exhausted, pending_timeout), "
        "keep live tasks' locks, and rebuild the claim state if Redis lost it."
    )

    def handle(self, *args, **options) -> None:
        try:
            summary = tasks_housekeep(now=timezone.now())
        except DatabaseError as exc:
            raise CommandError(f"PostgreSQL is unavailable: {exc}".strip()) from exc
        except RedisError as exc:
            raise CommandError(f"Redis is unavailable: {exc}".strip()) from exc
        self.stdout.write(summary.line())
