"""Shared fixtures. Tests use the real PostgreSQL and Redis of DATABASE_URL / REDIS_URL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime

import pytest
from django.utils import timezone


@pytest.fixture
def redis_client():
    from telegram_tasks.claims.scripts import connection

    return connection()


@pytest.fixture(autouse=True)
def redis_prefix(settings, redis_client) -> Iterator[str]:
    """Each test gets its own Redis key prefix, removed afterwards (no FLUSHALL)."""
    prefix = f"tgtest:{uuid.uuid4().hex[:12]}"
    settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, "KEY_PREFIX": prefix}
    from telegram_tasks import claims

    claims.mark_state("test")  # the claim state is present (see rebuild)
    yield prefix
    keys = list(redis_client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        # One pipeline (a round trip per node of a cluster, whose slot markers are 16,384 keys).
        pipe = redis_client.pipeline(transaction=False)
        for key in keys:
            pipe.delete(key)
        pipe.execute()


@pytest.fixture
def cut_redis(settings):
    """Call it to make Redis unreachable from then on in this test (a closed port, short
    timeouts): the claims' client, the cache and, on a cluster, the cluster client."""

    def cut() -> None:
        if settings.TELEGRAM_TASKS.get("REDIS_CLUSTER_URL"):
            cut = {"REDIS_CLUSTER_URL": "redis+cluster://127.0.0.1:1"}
            settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, **cut}
        settings.CACHES = {
            "default": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": "redis://127.0.0.1:1/0",
                "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.5, "SOCKET_TIMEOUT": 0.5},
            }
        }

    return cut


@pytest.fixture
def now() -> datetime:
    return timezone.now().replace(microsecond=0)


@pytest.fixture(scope="session", autouse=True)
def _stop_long_poll_listener(django_db_setup, django_db_blocker) -> Iterator[None]:
    """The long-poll listener holds a connection to the test database: closed before the
    database is dropped."""
    yield
    from telegram_tasks.api import waiting

    with django_db_blocker.unblock():
        waiting.LISTENER.stop()
