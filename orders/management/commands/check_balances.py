from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from orders.customers import Customer
from orders.services import balances_verify


class Command(BaseCommand):
    help = "Check that every customer's balance is the sum of its ledger rows (exit 1 if not)."

    def handle(self, *args, **options) -> None:
        wrong = balances_verify()
        for line in wrong:
            self.stderr.write(line)
        if wrong:
            raise CommandError(f"{len(wrong)} balance(s) differ from their ledger")
        self.stdout.write(f"ok: {Customer.objects.count()} balance(s) match their ledger")
