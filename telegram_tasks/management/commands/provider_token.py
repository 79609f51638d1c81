from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from telegram_tasks.api import authentication
from telegram_tasks.management.outages import run_service
from telegram_tasks.services.providers import (
    ProviderError,
    provider_by_name,
    provider_token_add,
    provider_token_revoke,
    providers_disable,
    providers_enable,
)


class Command(BaseCommand):
    help = (
        "A provider's tokens and state: --add prints a new token (the last line; shown only "
        "now), --revoke TOKEN_PREFIX refuses a token from then on (each web process within "
        "PROVIDER_AUTH_CACHE_SECONDS), --disable moves its queued work to other providers and "
        "hands it nothing more, --enable undoes that."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        what = parser.add_mutually_exclusive_group(required=True)
        what.add_argument("--add", action="store_true", help="make a new token and print it")
        what.add_argument("--revoke", metavar="TOKEN_PREFIX", help="revoke the token")
        what.add_argument("--disable", action="store_true")
        what.add_argument("--enable", action="store_true")

    def handle(self, *args, name: str, add: bool, revoke: str | None, disable: bool,
               enable: bool, **options) -> None:  # fmt: skip
        now = timezone.now()
        try:
            provider = run_service(lambda: provider_by_name(name))
            if add:
                token = run_service(lambda: provider_token_add(provider_id=provider.pk, now=now))
                self.stderr.write(f"a new token of {provider.name!r} (shown once):")
                self.stdout.write(token)
            elif revoke is not None:
                done = run_service(
                    lambda: provider_token_revoke(provider_id=provider.pk, prefix=revoke, now=now)
                )
                authentication.forget_cached()
                self.stdout.write(f"revoked {revoke}" if done else f"{revoke} was revoked already")
            elif disable:
                run_service(lambda: providers_disable(provider_ids=[provider.pk], now=now))
                self.stdout.write(f"{provider.name} disabled")
            else:
                run_service(lambda: providers_enable(provider_ids=[provider.pk], now=now))
                self.stdout.write(f"{provider.name} enabled")
        except ProviderError as exc:
            raise CommandError(exc.message) from None
