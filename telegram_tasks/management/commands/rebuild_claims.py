from __future__ import annotations

from django.core.management.base import BaseCommand
from django.utils import timezone

from telegram_tasks.management.outages import run_service
from telegram_tasks.services import claims_rebuild


class Command(BaseCommand):
    help = (
        "Restore the Redis claim state (cooldowns, today's caps, link states, dedupe keys, locks "
        "of unfinished tasks) from the PostgreSQL ledger, then mark it present."
    )

    def handle(self, *args, **options) -> None:
        self.stdout.write(run_service(lambda: claims_rebuild(now=timezone.now())).line())
