from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from telegram_tasks.management.outages import run_service
from telegram_tasks.services.providers import ProviderError, providers_create


class Command(BaseCommand):
    help = (
        "Create a provider fleet with its first API token; prints the token as the last line "
        "(shown only now: only its prefix and a digest are kept)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="letters, digits, '-', '_', '.' (at most 64)")
        parser.add_argument(
            "--push-url", default="", help="where its push tasks are POSTed (https://)"
        )

    def handle(self, *args, name: str, push_url: str, **options) -> None:
        try:
            provider, token = run_service(
                lambda: providers_create(name=name, push_url=push_url, now=timezone.now())
            )
        except ProviderError as exc:
            raise CommandError(exc.message) from None
        push = f", pushes to {provider.push_url}" if provider.push_url else ""
        self.stderr.write(f"provider {provider.pk} {provider.name!r}{push}; its token (once):")
        self.stdout.write(token)
