"""Provider fleets: made, given tokens and rid of them, disabled and enabled. A disabled
provider's accounts are never picked, nothing is handed out or pushed to it, and its queued work
fails (``provider_disabled``) so that its orders get tasks on other providers' accounts, as a
held account's do; what it already holds may still be reported.

The interfaces (the commands ``create_provider`` and ``provider_token``, the admin) call these;
a token is returned once, here, and never stored."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction

from telegram_tasks.conf import app_settings
from telegram_tasks.exceptions import DomainError
from telegram_tasks.failures import Reason
from telegram_tasks.models import ExecutionMode, Provider, ProviderToken
from telegram_tasks.services import settle, sql
from telegram_tasks.tokens import new_token

PROVIDERS = Provider._meta.db_table
TOKENS = ProviderToken._meta.db_table
# Names label metrics and are typed in commands: letters, digits, "-", "_", ".".
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Last-used and last-seen times are written at most this often (per process, per token).
SEEN_EVERY = timedelta(minutes=1)


class ProviderError(DomainError):
    code = "provider_error"


def check_name(name: str) -> str:
    if not NAME.match(name or ""):
        raise ProviderError(
            f"invalid provider name {name!r}: 1-64 letters, digits, '-', '_' or '.', "
            "starting with a letter or digit"
        )
    return name


def check_push_url(url: str) -> str:
    """A provider's push URL as stored ("" for none); ProviderError when it cannot be used."""
    from telegram_tasks.services.dispatch import push_url_problem

    url = (url or "").strip()
    problem = push_url_problem(url) if url else None
    if problem:
        raise ProviderError(problem)
    return url


def providers_create(*, name: str, push_url: str = "", now: datetime) -> tuple[Provider, str]:
    """A new, enabled provider and its first token: (the provider, the token). The token is
    shown to the operator once, and only its digest is kept."""
    name = check_name(name)
    push_url = check_push_url(push_url)
    try:
        with transaction.atomic():
            provider = Provider.objects.create(name=name, push_url=push_url, created_at=now)
            token = _add_token(provider.pk, now=now)
    except IntegrityError:
        raise ProviderError(f"a provider named {name!r} exists already") from None
    return provider, token


def provider_by_name(name: str) -> Provider:
    found = Provider.objects.filter(name=name).first()
    if found is None:
        raise ProviderError(f"no provider named {name!r}")
    return found


def provider_token_add(*, provider_id: int, now: datetime) -> str:
    """Another token for the provider (its other tokens stay live: a rotation adds the new
    one, the provider switches to it, then the old one is revoked). Returned once."""
    with transaction.atomic():
        if not Provider.objects.filter(pk=provider_id).exists():
            raise ProviderError(f"no provider #{provider_id}")
        return _add_token(provider_id, now=now)


def _add_token(provider_id: int, *, now: datetime) -> str:
    # A prefix is 48 random bits: a clash is improbable, and a second draw settles it.
    for _ in range(3):
        token, prefix, digest = new_token()
        try:
            with transaction.atomic():
                ProviderToken.objects.create(
                    provider_id=provider_id, prefix=prefix, digest=digest, created_at=now
                )
            return token
        except IntegrityError:
            continue
    raise ProviderError("could not draw a free token prefix")  # pragma: no cover


def provider_token_revoke(*, provider_id: int, prefix: str, now: datetime) -> int:
    """Revoke the provider's token with this prefix (the part before the dot; the whole token
    is accepted too). Each web process stops accepting it within PROVIDER_AUTH_CACHE_SECONDS.
    Returns 1, or 0 when it was revoked already; ProviderError when the provider has no such
    token."""
    prefix = prefix.strip().partition(".")[0]
    token = ProviderToken.objects.filter(provider_id=provider_id, prefix=prefix).first()
    if token is None:
        raise ProviderError(f"the provider has no token {prefix!r}")
    return ProviderToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=now)


def providers_disable(*, provider_ids: Sequence[int], now: datetime) -> int:
    """Disable providers, in two steps each committed on its own (as an account's deactivation):
    the flag first — from its commit no pass picks their accounts and no pull or dispatch hands
    out their tasks — then their queued tasks fail (``provider_disabled``) and give their locks
    back, so their orders get tasks on other providers' accounts. Handed-out tasks may still be
    reported; a lapsed lease ends at housekeeping. Returns how many were enabled."""
    with transaction.atomic():
        changed = list(
            Provider.objects.filter(pk__in=provider_ids, enabled=True).values_list("pk", flat=True)
        )
        Provider.objects.filter(pk__in=changed).update(enabled=False)
    tasks_release_for_providers(provider_ids=provider_ids, now=now)
    return len(changed)


def tasks_release_for_providers(*, provider_ids: Sequence[int], now: datetime) -> int:
    """The queued tasks of these providers fail (``provider_disabled``, their locks rolled back
    after the commit): read on the providers' own queue index."""
    if not provider_ids:
        return 0
    with transaction.atomic():
        ended = settle.end_tasks(
            where=f"provider_id = ANY(%(providers)s) AND status = {sql.QUEUED}",
            params={"providers": list(provider_ids)},
            reason=Reason.PROVIDER_DISABLED,
            now=now,
        )
    return len(ended)


def providers_enable(*, provider_ids: Sequence[int], now: datetime) -> int:
    """Enable providers again: their accounts are picked from the next generation pass."""
    return Provider.objects.filter(pk__in=provider_ids, enabled=False).update(enabled=True)


def providers_seen(*, provider_id: int, token_id: int | None, now: datetime) -> None:
    """A request of the provider (with that token: None for PROVIDER_TOKEN) authenticated at
    ``now``: its last-seen and the token's last-used times move, in one statement, unless
    another process moved them within the last minute. Called at most once a minute per
    process and token, so the hot paths gain no write per request."""
    sql.fetch(
        f"""
        WITH token AS (
            UPDATE {TOKENS} SET last_used_at = %(now)s
            WHERE id = %(token)s AND (last_used_at IS NULL OR last_used_at < %(since)s)
            RETURNING 1
        )
        UPDATE {PROVIDERS} SET last_seen_at = %(now)s
        WHERE id = %(provider)s AND (last_seen_at IS NULL OR last_seen_at < %(since)s)
        """,  # noqa: S608
        {"now": now, "since": now - SEEN_EVERY, "token": token_id, "provider": provider_id},
    )


def push_urls() -> dict[int, str]:
    """The enabled providers that take pushes, and where: their own push URL, or for the
    default provider without one, TELEGRAM_TASKS["PROVIDER_PUSH_URL"] (as before providers were
    rows)."""
    fallback = app_settings.PROVIDER_PUSH_URL
    return {
        pk: url or fallback
        for pk, url, is_default in Provider.objects.filter(enabled=True).values_list(
            "pk", "push_url", "is_default"
        )
        if url or (is_default and fallback)
    }


def routing(
    providers: Sequence[int] | None, mode: str, pushed: frozenset[int]
) -> frozenset[int] | None:
    """The providers whose accounts may take an order's tasks (None: any enabled one): those
    the order is limited to (``providers``; none: any), and of them, for a push order, those
    that take pushes (``pushed``; while none does, push tasks go anywhere and wait, as before
    providers)."""
    allowed = frozenset(providers) if providers else None
    if mode == ExecutionMode.PUSH and pushed:
        allowed = pushed if allowed is None else allowed & pushed
    return allowed
