from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from orders import money
from orders.customers import Customer
from orders.exceptions import NotEnoughFunds
from orders.services import balance_adjust


class Command(BaseCommand):
    help = (
        "Print a customer's balance; with --add, adjust it first (negative to take), a ledger "
        "row saying why (--note). The last line is the balance."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--add", default=None, help="amount to add (negative to take)")
        parser.add_argument("--note", default="", help="why (required with --add)")

    def handle(self, *args, name: str, add: str | None, note: str, **options) -> None:
        customer = Customer.objects.filter(name=name).first()
        if customer is None:
            raise CommandError(f"no customer named {name!r}")
        balance = customer.balance
        if add is not None:
            try:
                balance = balance_adjust(
                    customer_id=customer.pk, amount=money.parse(add, what="--add"), note=note,
                    actor="command", now=timezone.now(),
                )  # fmt: skip
            except NotEnoughFunds:
                raise CommandError(
                    f"not enough funds: the balance is {money.text(customer.balance)}"
                ) from None
            except ValueError as exc:
                raise CommandError(str(exc)) from None
        self.stdout.write(money.text(balance))
