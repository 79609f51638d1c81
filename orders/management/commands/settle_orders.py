from __future__ import annotations

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from orders.services import orders_settle_due


class Command(BaseCommand):
    help = (
        "Settle ended panel orders not settled yet (refund their undelivered part); beat runs "
        "it every minute."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--limit", type=int, default=1000)

    def handle(self, *args, limit: int, **options) -> None:
        self.stdout.write(f"settled={orders_settle_due(now=timezone.now(), most=limit)}")
