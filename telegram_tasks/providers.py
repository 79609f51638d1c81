"""Provider fleets and their API tokens. A farm buys accounts from several providers; each runs
its own fleet and workers, authenticates with tokens of its own, sees only its own accounts and
tasks, and receives pushes at its own URL. Registered with the app's models through
``telegram_tasks.models``.

A token is ``<prefix>.<secret>``: the prefix (12 hex characters) is public and finds the row by
an index; the table keeps only the SHA-256 digest of the whole token, compared in constant time
(``telegram_tasks.api.authentication``). The ``PROVIDER_TOKEN`` setting keeps working: its tokens
are the default provider's, the one migration 0019 made to own every existing account.
"""

from __future__ import annotations

import threading
import time
from typing import Any, NamedTuple

from django.core.signals import setting_changed
from django.db import models
from django.db.models import Q

DEFAULT_NAME = "default"


class ProviderRef(NamedTuple):
    """The provider a request or a pass acts for, as the services take it: everything after
    authentication is scoped to ``id``; ``name`` labels its metrics."""

    id: int
    name: str
    enabled: bool = True


class Provider(models.Model):
    """One provider fleet: its accounts, its tasks, its tokens, its push endpoint."""

    name = models.CharField(max_length=64, unique=True)
    # Disabled: none of its accounts is picked, nothing is handed out or pushed to it, and its
    # queued work goes to other providers; reports of what it already holds still count.
    enabled = models.BooleanField(default=True)
    # The provider that PROVIDER_TOKEN (the environment) authenticates and PUSH_SIGNING_SECRET
    # signs for: the one provider of an install from before providers were rows.
    is_default = models.BooleanField(default=False, editable=False)
    # Where the push dispatcher POSTs its push tasks ("": none; the default provider falls
    # back on TELEGRAM_TASKS["PROVIDER_PUSH_URL"]).
    push_url = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    # When one of its tokens last authenticated a request (written at most once a minute).
    last_seen_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        db_table = "telegram_providers"
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="tg_provider_one_default"
            )
        ]
        permissions = [("manage_provider", "Can add and revoke tokens, disable and enable")]

    def __str__(self) -> str:
        return self.name


class ProviderToken(models.Model):
    """One API token of a provider, stored hashed; several may be live at once (a rotation)."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="tokens")
    prefix = models.CharField(max_length=16, unique=True)  # the token's public part
    digest = models.CharField(max_length=64)  # SHA-256 hex of the whole token
    created_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)  # at most a minute behind
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "telegram_provider_tokens"
        ordering = ["provider_id", "id"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({'revoked' if self.revoked_at else 'live'})"


# The default provider's id, kept a minute per process: model defaults ask for it per row.
_DEFAULT_LOCK = threading.Lock()
_DEFAULT: dict[str, Any] = {"id": None, "until": 0.0}
DEFAULT_KEPT_SECONDS = 60.0


def default_provider_id() -> int:
    """The default provider's id (made if it is missing: a fresh database, a test's flush).
    The default of an account's and a task's provider when none is given (the ORM, tests,
    the host project); the services always name one."""
    with _DEFAULT_LOCK:
        if _DEFAULT["id"] is not None and time.monotonic() < _DEFAULT["until"]:
            return _DEFAULT["id"]
    found = Provider.objects.filter(is_default=True).values_list("id", flat=True).first()
    if found is None:
        found = Provider.objects.get_or_create(is_default=True, defaults={"name": DEFAULT_NAME})[
            0
        ].pk
    with _DEFAULT_LOCK:
        _DEFAULT.update(id=found, until=time.monotonic() + DEFAULT_KEPT_SECONDS)
    return found


def forget_default_provider(**kwargs: Any) -> None:
    with _DEFAULT_LOCK:
        _DEFAULT.update(id=None, until=0.0)


# A changed setting (tests) may come with a fresh database.
setting_changed.connect(forget_default_provider)
