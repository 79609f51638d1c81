from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from telegram_tasks.management.outages import run_service
from telegram_tasks.services import tasks_generate


class Command(BaseCommand):
    help = "Run one generation pass: due orders become tasks with a reserved account."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--limit", type=int, default=1000, help="most tasks to create")

    def handle(self, *args, limit: int, **options) -> None:
        if limit < 1:
            raise CommandError("--limit must be at least 1")
        summary = run_service(lambda: tasks_generate(limit=limit, now=timezone.now()))
        self.stdout.write(summary.line())
