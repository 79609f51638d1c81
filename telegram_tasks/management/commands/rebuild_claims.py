from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError
from django.utils import timezone
from redis.exceptions import RedisError

from telegram_tasks.housekeeping import claims_rebuild


class Command(BaseCommand):
    help = (
        "Restore the Redis claim state (cooldowns, today's caps, link states, dedupe keys, locks "
        "of unfinished tasks) from the PostgreSQL ledger, then mark it present."
    )

    def handle(self, *args, **options) -> None:
        try:
            summary = claims_rebuild(now=timezone.now())
        except DatabaseError as exc:
            raise CommandError(f"PostgreSQL is unavailable: {exc}".strip()) from exc
        except RedisError as exc:
            raise CommandError(f"Redis is unavailable: {exc}".strip()) from exc
        self.stdout.write(summary.line())
