from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from telegram_tasks.api import push_transport
from telegram_tasks.management.outages import run_service
from telegram_tasks.services import tasks_push
from telegram_tasks.services.dispatch import push_targets, target_problem


class Command(BaseCommand):
    help = (
        "Run one push dispatch pass: lease each provider's due push tasks, POST each to its "
        "provider's push URL, apply the answers; prints one line (each provider's circuit "
        "breaker included)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--limit", type=int, default=None, help="most tasks to send (PUSH_BATCH)"
        )

    def handle(self, *args, limit: int | None, **options) -> None:
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1")
        targets = push_targets()
        problems = [p for p in map(target_problem, targets) if p]
        if len(problems) == len(targets):
            raise CommandError("; ".join(problems) or "no provider has a push URL")
        for problem in problems:
            self.stderr.write(problem)
        summary = run_service(
            lambda: tasks_push(
                now=timezone.now(), deliver=push_transport.deliver, limit=limit, targets=targets
            )
        )
        self.stdout.write(summary.line())
