"""What every command of this app does with an outage: a clear message and a non-zero exit."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from django.core.management.base import CommandError
from django.db import DatabaseError
from redis.exceptions import RedisError

from telegram_tasks.claims import ClaimsStateLost

T = TypeVar("T")


def run_service(call: Callable[[], T]) -> T:
    try:
        return call()
    except ClaimsStateLost as exc:
        raise CommandError(str(exc)) from exc
    except DatabaseError as exc:
        raise CommandError(f"PostgreSQL is unavailable: {exc}".strip()) from exc
    except RedisError as exc:
        raise CommandError(f"Redis is unavailable: {exc}".strip()) from exc
