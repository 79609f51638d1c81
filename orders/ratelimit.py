"""The panel API's rate limit per API key (``PANEL_RATE_LIMIT``, e.g. "600/minute"): a sliding
window counter of the ``limits`` library, kept in the claims' Redis — REDIS_URL, one server or
a Redis Cluster (limits speaks both; its two keys per window share a hash tag) — under the
claims' key prefix. Not Django's cache: on a cluster that is per-process memory, and every web
worker would count on its own. While Redis cannot answer, requests are let through (the API's
work is in PostgreSQL; a limit is not worth refusing orders for) and a warning is logged."""

from __future__ import annotations

import logging
import math
import time
from functools import cache

from django.conf import settings
from django.core.signals import setting_changed
from limits import RateLimitItem, parse, storage, strategies
from redis.exceptions import RedisError

from telegram_tasks.conf import app_settings

logger = logging.getLogger(__name__)


def storage_uri(url: str) -> str:
    """REDIS_URL in limits' notation (a unix socket is ``redis+unix://``)."""
    return "redis+" + url if url.startswith("unix://") else url


@cache
def _limiter(url: str, prefix: str) -> strategies.SlidingWindowCounterRateLimiter:
    store = storage.storage_from_string(
        storage_uri(url), key_prefix=f"{prefix}:panel-limit", socket_timeout=2,
        socket_connect_timeout=2,
    )  # fmt: skip
    return strategies.SlidingWindowCounterRateLimiter(store)


@cache
def _rate(text: str) -> RateLimitItem:
    return parse(text)


def retry_after(identity: str) -> int | None:
    """Count one request of ``identity`` (an API key); None when it may go on, else the seconds
    until it may."""
    rate = settings.PANEL_RATE_LIMIT
    if not rate:
        return None
    item = _rate(rate)
    limiter = _limiter(settings.REDIS_URL, app_settings.KEY_PREFIX)
    try:
        if limiter.hit(item, "key", identity):
            return None
        reset = limiter.get_window_stats(item, "key", identity).reset_time
    except RedisError:
        logger.warning("panel rate limit not counted: Redis unavailable", exc_info=True)
        return None
    return max(1, math.ceil(reset - time.time()))


def _reload(*, setting: str, **kwargs: object) -> None:
    if setting in ("REDIS_URL", "PANEL_RATE_LIMIT"):
        _limiter.cache_clear()


setting_changed.connect(_reload)
