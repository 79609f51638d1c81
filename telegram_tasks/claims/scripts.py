"""The Redis connection of the claims, and the Lua scripts shipped as package data: read once,
run by EVALSHA, reloaded on NOSCRIPT.

The claims use a single Redis through the client django-redis manages for the cache named by
``TELEGRAM_TASKS["REDIS_CACHE"]`` (``"default"``), or a Redis Cluster when
``TELEGRAM_TASKS["REDIS_CLUSTER_URL"]`` names one (``redis+cluster://host:port``, or
``redis://``, ``rediss://``, ``rediss+cluster://``; any node as the seed). Both are settings of
the app: it reads no project-level Redis setting. On a cluster every script call touches one
account's keys, one hash tag, so one slot: it goes straight to the node that owns it, and a
pipeline of them is one round trip per node.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django_redis import get_redis_connection
from redis import Redis
from redis.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisClusterException, ResponseError

from telegram_tasks.conf import app_settings

Call = tuple[str, Sequence[str], Sequence[Any]]  # (script name, keys, args)


class ClaimsStateLost(RuntimeError):
    """Redis answers but holds no claim state (flushed, restarted without persistence, or
    another server): cooldowns, caps and locks would be wrong until ``rebuild_claims`` runs."""


def state_lost() -> ClaimsStateLost:
    return ClaimsStateLost(
        "Redis has lost the claim state (no marker key): run `manage.py rebuild_claims` "
        "(housekeeping does it by itself within a minute)"
    )


CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def on_cluster() -> bool:
    return bool(app_settings.REDIS_CLUSTER_URL)


def connection() -> Redis | RedisCluster:
    """The client of the claim state: django-redis's for a single Redis, one RedisCluster per
    process for a cluster (both thread-safe, both pooled)."""
    if on_cluster():
        return _cluster(app_settings.REDIS_CLUSTER_URL)
    return get_redis_connection(app_settings.REDIS_CACHE)


@cache
def _cluster(url: str) -> RedisCluster:
    parts = urlsplit(url)
    plain = urlunsplit((CLUSTER_SCHEMES.get(parts.scheme, parts.scheme), *parts[1:]))
    try:
        return RedisCluster.from_url(
            plain, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30
        )
    except RedisClusterException as exc:  # no node answered: an outage like any other
        raise RedisConnectionError(f"Redis Cluster unavailable: {exc}") from exc


@cache
def source(name: str) -> str:
    return resources.files("telegram_tasks.claims").joinpath("lua", f"{name}.lua").read_text()


@cache
def sha(name: str) -> str:
    """The SHA the server knows a script by (what EVALSHA sends)."""
    return hashlib.sha1(source(name).encode()).hexdigest()  # noqa: S324 (Redis's script id)


def run_many(calls: Sequence[Call], *, require: str | None = None) -> list[Any]:
    """Run many script calls in one round trip per server (a non-transactional pipeline of
    EVALSHA). With ``require`` (the marker key), the same round trip first asks whether the
    claim state is present and raises ClaimsStateLost if not (the calls ran all the same: only
    for calls whose effect on a lost state is harmless, like re-arming a lock).

    redis-py's pipeline would ask SCRIPT EXISTS before every execute; instead the SHAs are sent
    blind and, only if a server answers NOSCRIPT (a restart, a flush, a new primary), the
    scripts are loaded (on every primary of a cluster) and the calls that failed are sent again.
    Each script is atomic on its own; a batch is not.
    """
    if not calls and require is None:
        return []
    conn = connection()
    results = _send(conn, calls, require)
    if require is not None:
        present = results.pop(0)
        if isinstance(present, Exception):
            raise present
        if not present:
            raise state_lost()
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


def _send(
    conn: Redis | RedisCluster, calls: Sequence[Call], require: str | None = None
) -> list[Any]:
    pipe = conn.pipeline(transaction=False)
    if require is not None:
        pipe.exists(require)
    if isinstance(conn, RedisCluster):
        # A cluster pipeline refuses evalsha(); sent as a plain command with the node that owns
        # the call's keys named, it goes there directly (no COMMAND GETKEYS round trip).
        for name, keys, args in calls:
            node = conn.get_node_from_key(keys[0])
            pipe.execute_command("EVALSHA", sha(name), len(keys), *keys, *args, target_nodes=node)
    else:
        for name, keys, args in calls:
            pipe.evalsha(sha(name), len(keys), *keys, *args)
    return pipe.execute(raise_on_error=False)
