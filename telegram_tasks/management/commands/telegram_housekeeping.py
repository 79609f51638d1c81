from __future__ import annotations

from django.core.management.base import BaseCommand
from django.utils import timezone

from telegram_tasks.management.outages import run_service
from telegram_tasks.services import tasks_housekeep


class Command(BaseCommand):
    help = (
        "End tasks that can no longer finish (expired, attempts_exhausted, pending_timeout, "
        "lease_abandoned), keep live tasks' locks, and rebuild the claim state if Redis lost it."
    )

    def handle(self, *args, **options) -> None:
        self.stdout.write(run_service(lambda: tasks_housekeep(now=timezone.now())).line())
