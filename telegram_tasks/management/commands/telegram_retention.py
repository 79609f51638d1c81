from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from telegram_tasks.management.outages import run_service
from telegram_tasks.services import retention_preview, retention_purge


class Command(BaseCommand):
    help = (
        "Show what retention would delete now: finished tasks older than TASK_RETENTION_DAYS, "
        "closed memberships no task names any more, one-shot successes past their TTL, the "
        "dashboard's old hourly counts and pass records (housekeeping deletes them, a bounded "
        "batch per pass). With --apply, delete them all now."
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
