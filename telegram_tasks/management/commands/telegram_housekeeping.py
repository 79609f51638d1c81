from __future__ import annotations

from django.core.management.base import BaseCommand
from django.utils import timezone

from telegram_tasks.housekeeping import tasks_housekeep
from telegram_tasks.management.commands._outages import run_service


class Command(BaseCommand):
    help = (
        "End tasks that can no longer finish (expired, attempts_exhausted, pending_timeout, "
        "lease_abandoned), keep live tasks' locks, and rebuild the claim state if Redis lost it."
    )

    def handle(self, *args, **options) -> None:
        self.stdout.write(run_service(lambda: tasks_housekeep(now=timezone.now())).line())
