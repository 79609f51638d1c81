from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from telegram_tasks import roles


class Command(BaseCommand):
    help = (
        "Make the groups of the operators' roles, or bring them up to date: viewer (sees "
        "everything, changes nothing), operator (also orders, and every action on orders, tasks "
        "and accounts), admin (also accounts' settings and the install's set-up: the panel's "
        "services, customers, balances and keys). Each group gets exactly its role's permissions; "
        "run it again after an upgrade. Then put staff users in the groups."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        for role in roles.ROLES:
            parser.add_argument(
                f"--{role}", metavar="NAME", default=role, help=f"the {role} group's name"
            )

    def handle(self, *args, **options) -> None:
        names = {role: options[role] for role in roles.ROLES}
        try:
            made = roles.create_groups(names=names)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        for name, count in made.items():
            self.stdout.write(f"group {name}: {count} permissions")
