"""Lua scripts shipped as package data, read once, run by EVALSHA; reloaded on NOSCRIPT."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

from django_redis import get_redis_connection
from redis import Redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError, ResponseError

Call = tuple[str, Sequence[str], Sequence[Any]]  # (script name, keys, args)


def connection() -> Redis:
    """The Redis client that django-redis manages for the default cache."""
    return get_redis_connection("default")


@cache
def source(name: str) -> str:
    return resources.files("telegram_tasks.claims").joinpath("lua", f"{name}.lua").read_text()


@cache
def script(name: str) -> Script:
    # redis-py's Script computes the SHA the server will know the text by (run_many sends it).
    return Script(connection(), source(name))


def run_many(calls: Sequence[Call]) -> list[Any]:
    """Run many script calls in one round trip (a non-transactional pipeline of EVALSHA).

    redis-py's pipeline would ask SCRIPT EXISTS before every execute; instead the SHAs are sent
    blind and, only if the server answers NOSCRIPT (a restart, a flush), the scripts are loaded
    and the calls that failed are sent again. Each script is atomic on its own; a batch is not.
    """
    if not calls:
        return []
    conn = connection()
    results = _send(conn, calls)
    missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
    if missing:
        for name in {calls[i][0] for i in missing}:
            conn.script_load(source(name))
        for i, result in zip(missing, _send(conn, [calls[i] for i in missing]), strict=True):
            results[i] = result
    for result in results:
        if isinstance(result, ResponseError):
            raise result
    return results


def _send(conn: Redis, calls: Sequence[Call]) -> list[Any]:
    pipe = conn.pipeline(transaction=False)
    for name, keys, args in calls:
        pipe.evalsha(script(name).sha, len(keys), *keys, *args)
    return pipe.execute(raise_on_error=False)
