from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from telegram_tasks import push
from telegram_tasks.conf import app_settings
from telegram_tasks.management.outages import run_service
from telegram_tasks.services import tasks_push


class Command(BaseCommand):
    help = (
        "Run one push dispatch pass: lease due push tasks, POST each to PROVIDER_PUSH_URL, apply "
        "the answers; prints one line (the circuit breaker's state included)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--limit", type=int, default=None, help="most tasks to send (PUSH_BATCH)"
        )

    def handle(self, *args, limit: int | None, **options) -> None:
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1")
        problem = push.check_push_url(app_settings.PROVIDER_PUSH_URL)
        if problem:
            raise CommandError(problem)
        summary = run_service(
            lambda: tasks_push(now=timezone.now(), deliver=push.deliver, limit=limit)
        )
        self.stdout.write(summary.line())
