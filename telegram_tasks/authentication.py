"""Provider authentication: a shared token in the ``X-Provider-Token`` header."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from telegram_tasks.conf import provider_tokens


class Provider:
    """The authenticated caller of the provider API (there is one provider fleet). ``key``
    names it where callers are counted apart (long-polls waiting): a digest of the token it
    gave, so each token of a rotation counts as a caller of its own."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, key: str = "") -> None:
        self.key = key

    def __str__(self) -> str:
        return "provider"


class ProviderTokenAuthentication(BaseAuthentication):
    header = "HTTP_X_PROVIDER_TOKEN"

    def authenticate(self, request: Request) -> tuple[Provider, str] | None:
        given = request.META.get(self.header)
        if given is None:
            return None  # not ours: other authenticators may try, else 401
        tokens = provider_tokens()
        # Compare against every token, always, so timing tells nothing about which matched.
        matched = False
        for token in tokens:
            matched |= hmac.compare_digest(given.encode(), token.encode())
        if not matched:
            raise AuthenticationFailed("invalid provider token")
        return Provider(hashlib.sha256(given.encode()).hexdigest()[:16]), given

    def authenticate_header(self, request: Request) -> str:
        return 'X-Provider-Token realm="provider-api"'


class IsProvider(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.user, Provider)
