from __future__ import annotations

import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from orders import money
from orders.models import Service
from telegram_tasks.models import ExecutionMode


class Command(BaseCommand):
    help = "Add a service to the panel API's catalogue; prints its id."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--action", required=True, help="a configured action (subscribe, …)")
        parser.add_argument("--rate", required=True, help="price per 1000 units, e.g. 0.90")
        parser.add_argument("--min", type=int, required=True, dest="min_quantity")
        parser.add_argument("--max", type=int, required=True, dest="max_quantity")
        parser.add_argument("--category", default="")
        parser.add_argument("--dripfeed", action="store_true", help="allow runs and interval")
        parser.add_argument("--cancel", action="store_true", help="customers may cancel")
        parser.add_argument("--refill-days", type=int, default=None)
        parser.add_argument("--duration-days", type=int, default=None)
        parser.add_argument("--priority", type=int, default=0)
        parser.add_argument(
            "--execution-mode", choices=ExecutionMode.values, default=None, help="pull or push"
        )
        parser.add_argument("--params", default="{}", help="the action's params, JSON")

    def handle(self, *args, **o) -> None:
        try:
            rate = money.parse(o["rate"], quantum=money.RATE, what="--rate")
            params = json.loads(o["params"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        flags = {"min_quantity": "--min", "max_quantity": "--max",
                 "refill_days": "--refill-days", "duration_days": "--duration-days"}  # fmt: skip
        for name, flag in flags.items():
            if o[name] is not None and o[name] < 1:
                raise CommandError(f"{flag} must be at least 1")
        service = Service(
            name=o["name"], category=o["category"], action=o["action"], rate=rate,
            min_quantity=o["min_quantity"], max_quantity=o["max_quantity"],
            dripfeed=o["dripfeed"], cancel=o["cancel"], refill_days=o["refill_days"],
            duration_days=o["duration_days"], priority=o["priority"], params=params,
        )  # fmt: skip
        if o["execution_mode"]:
            service.execution_mode = o["execution_mode"]
        try:
            service.full_clean()
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
            ) from None
        service.save()
        self.stdout.write(str(service.pk))
