from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from django.utils import timezone
from redis.exceptions import RedisError

from telegram_tasks.claims import ClaimsStateLost
from telegram_tasks.generation import tasks_generate


class Command(BaseCommand):
    help = "Run one generation pass: due orders become tasks with a reserved account."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--limit", type=int, default=1000, help="most tasks to create")

    def handle(self, *args, limit: int, **options) -> None:
        if limit < 1:
            raise CommandError("--limit must be at least 1")
        try:
            summary = tasks_generate(limit=limit, now=timezone.now())
        except DatabaseError as exc:
            raise CommandError(f"PostgreSQL is unavailable: {exc}".strip()) from exc
        except ClaimsStateLost as exc:
            raise CommandError(str(exc)) from exc
        except RedisError as exc:
            raise CommandError(f"Redis is unavailable: {exc}".strip()) from exc
        self.stdout.write(summary.line())
