"""Provider authentication: the ``X-Provider-Token`` header names the provider fleet calling.

A token the broker issued is ``<prefix>.<secret>``: one indexed lookup by its prefix finds the
row, and the SHA-256 digest of the whole token is compared with the row's in constant time —
with a dummy digest when no row has the prefix, so a wrong token and a revoked one take the same
query and the same comparison (the revoked flag is read after it). The tokens of the
``PROVIDER_TOKEN`` setting are the default provider's (every one compared, always).

The lookup by prefix is kept PROVIDER_AUTH_CACHE_SECONDS per process (found or not, at most
``CACHE_MOST`` prefixes): a revocation or a new token takes that long to reach every web
process; a prefix looked up recently answers faster than one never seen, which tells nothing
of a token's secret part nor of whether it is revoked. Last-used and last-seen times are
written at most once a minute per process and token (``services.providers_seen``): the hot
paths gain no write per request.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from typing import Any, NamedTuple

from django.conf import settings
from django.core.signals import setting_changed
from django.db import DatabaseError
from django.utils import timezone
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from telegram_tasks.conf import app_settings, provider_tokens
from telegram_tasks.models import Provider, ProviderToken, default_provider_id
from telegram_tasks.providers import ProviderRef
from telegram_tasks.tokens import token_digest, token_prefix

logger = logging.getLogger(__name__)

# Compared when no token has the prefix: the same work as a real comparison.
DUMMY_DIGEST = hashlib.sha256(b"no token has this prefix").hexdigest()
CACHE_MOST = 4096
SEEN_SECONDS = 60.0


class ProviderCaller(ProviderRef):
    """The authenticated caller of the provider API: a provider fleet (``id``, ``name``,
    ``enabled``). ``key`` counts its long-polls apart from other providers'."""

    is_authenticated = True
    is_anonymous = False

    @property
    def key(self) -> int:
        return self.id

    def __str__(self) -> str:
        return f"provider {self.name}"


class _Row(NamedTuple):
    token_id: int
    digest: str
    revoked: bool
    provider_id: int
    name: str
    enabled: bool


class _Cache:
    """Lookups kept a few seconds per process: prefix → row (or None), the default provider,
    the digests of PROVIDER_TOKEN, and when each token last had its use written."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows: dict[str, tuple[float, _Row | None]] = {}
        self.default: tuple[float, ProviderCaller] | None = None
        self.env: tuple[str, tuple[str, ...]] | None = None  # (the setting, its digests)
        self.seen: dict[tuple[int, int | None], float] = {}

    def clear(self, **kwargs: Any) -> None:
        with self.lock:
            self.rows.clear()
            self.default = None
            self.env = None
            self.seen.clear()


CACHE = _Cache()
setting_changed.connect(CACHE.clear)  # (tests: a fresh database, other tokens)


def forget_cached() -> None:
    """Drop what this process keeps (a token revoked or made here takes effect at once)."""
    CACHE.clear()


def _env_digests() -> tuple[str, ...]:
    raw = getattr(settings, "PROVIDER_TOKEN", "") or ""
    kept = CACHE.env
    if kept is None or kept[0] != raw:
        kept = (raw, tuple(token_digest(t) for t in provider_tokens()))
        CACHE.env = kept
    return kept[1]


def _lookup(prefix: str) -> _Row | None:
    """The token row with this prefix and its provider (one indexed lookup), kept a few
    seconds whether found or not."""
    keep = float(app_settings.PROVIDER_AUTH_CACHE_SECONDS)
    now = time.monotonic()
    kept = CACHE.rows.get(prefix)
    if kept is not None and kept[0] > now:
        return kept[1]
    found = (
        ProviderToken.objects.filter(prefix=prefix)
        .values_list(
            "id", "digest", "revoked_at", "provider_id", "provider__name", "provider__enabled"
        )
        .first()
    )
    row = None
    if found is not None:
        token_id, digest, revoked_at, provider_id, name, enabled = found
        row = _Row(token_id, digest, revoked_at is not None, provider_id, name, enabled)
    if keep > 0:
        with CACHE.lock:
            if len(CACHE.rows) >= CACHE_MOST:
                CACHE.rows.clear()
            CACHE.rows[prefix] = (now + keep, row)
    return row


def _default_caller() -> ProviderCaller:
    now = time.monotonic()
    kept = CACHE.default
    if kept is not None and kept[0] > now:
        return kept[1]
    pk = default_provider_id()
    name, enabled = Provider.objects.filter(pk=pk).values_list("name", "enabled").get()
    caller = ProviderCaller(pk, name, enabled)
    CACHE.default = (now + float(app_settings.PROVIDER_AUTH_CACHE_SECONDS), caller)
    return caller


def authenticate_token(given: str) -> ProviderCaller | None:
    """The provider ``given`` authenticates, or None. Constant time in the token's secret: the
    PROVIDER_TOKEN digests are all compared, then (unless one matched) the one row with the
    token's prefix, or the dummy digest."""
    digest = token_digest(given)
    from_env = False
    for expected in _env_digests():  # every one, always
        from_env |= hmac.compare_digest(digest, expected)
    if from_env:
        caller, token_id = _default_caller(), None
    else:
        row = _lookup(token_prefix(given))
        matched = hmac.compare_digest(digest, row.digest if row is not None else DUMMY_DIGEST)
        if not matched or row is None or row.revoked:
            return None
        caller = ProviderCaller(row.provider_id, row.name, row.enabled)
        token_id = row.token_id
    _note_seen(caller.id, token_id)
    return caller


def _note_seen(provider_id: int, token_id: int | None) -> None:
    """Write the last-used time at most once a minute per process and token."""
    now = time.monotonic()
    key = (provider_id, token_id)
    if CACHE.seen.get(key, -SEEN_SECONDS) > now - SEEN_SECONDS:
        return
    CACHE.seen[key] = now
    from telegram_tasks.services.providers import providers_seen

    try:
        providers_seen(provider_id=provider_id, token_id=token_id, now=timezone.now())
    except DatabaseError:
        # A record of use, not the request: the next minute tries again.
        logger.warning("provider %s: last-used time not written", provider_id, exc_info=True)


class ProviderTokenAuthentication(BaseAuthentication):
    header = "HTTP_X_PROVIDER_TOKEN"

    def authenticate(self, request: Request) -> tuple[ProviderCaller, str] | None:
        given = request.META.get(self.header)
        if given is None:
            return None  # not ours: other authenticators may try, else 401
        caller = authenticate_token(given)
        if caller is None:
            raise AuthenticationFailed("invalid provider token")
        return caller, given

    def authenticate_header(self, request: Request) -> str:
        return 'X-Provider-Token realm="provider-api"'


class IsProvider(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, ProviderCaller)
