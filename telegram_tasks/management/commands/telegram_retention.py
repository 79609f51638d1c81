from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from telegram_tasks.management.outages import run_service
from telegram_tasks.services import retention_preview, retention_purge


class Command(BaseCommand):
    help = (
        "Show what retention would delete now: finished tasks and closed memberships older than "
        "TASK_RETENTION_DAYS (housekeeping deletes them, a bounded batch per pass). With "
        "--apply, delete them all now."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--apply", action="store_true", help="delete now, in batches")

    def handle(self, *args, apply: bool, **options) -> None:
        now = timezone.now()
        if not apply:
            summary = run_service(lambda: retention_preview(now=now))
            self.stdout.write(f"would delete: {summary.line()}")
            return
        summary = run_service(lambda: retention_purge(now=now, most=10**12))
        self.stdout.write(f"deleted: {summary.line()}")
