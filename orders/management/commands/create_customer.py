from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import IntegrityError
from django.utils import timezone

from orders import money
from orders.services import customer_create


class Command(BaseCommand):
    help = "Create a panel customer with its first API key; prints the key (shown only now)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--balance", default="0", help="opening balance (a ledger row)")
        parser.add_argument("--currency", default=None, help="the install's (PANEL_CURRENCY)")

    def handle(self, *args, name: str, balance: str, currency: str | None, **options) -> None:
        try:
            amount = money.parse(balance, what="--balance")
            customer, key = customer_create(
                name=name, balance=amount, currency=currency, actor="command", now=timezone.now()
            )
        except (ValueError, IntegrityError) as exc:
            raise CommandError(str(exc) if isinstance(exc, ValueError) else
                               f"a customer named {name!r} exists already") from None  # fmt: skip
        self.stderr.write(
            f"customer {customer.pk} {customer.name!r}: balance "
            f"{money.text(amount)} {customer.currency}; "
            "its API key (shown once):"
        )
        self.stdout.write(key.key)
