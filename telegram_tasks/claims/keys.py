"""The one place that builds Redis keys. See the key scheme in ``telegram_tasks.claims``."""

from __future__ import annotations

from binascii import crc_hqx
from datetime import datetime
from functools import cache

from telegram_tasks.conf import app_settings

# Redis Cluster's key space: a key's slot is CRC16 (XMODEM, which crc_hqx computes) of its hash
# tag, modulo this.
SLOTS = 16384


def _prefix() -> str:
    return app_settings.KEY_PREFIX


def account_tag(account_id: int) -> str:
    # The part in braces is the Redis Cluster hash tag: all of one account's keys share a slot.
    return f"{_prefix()}:{{a{account_id}}}"


def lock(account_id: int, action: str) -> str:
    return f"{account_tag(account_id)}:lock:{action}"


def cooldown(account_id: int, action: str) -> str:
    return f"{account_tag(account_id)}:cd:{action}"


def cap(account_id: int, action: str, local_day: datetime) -> str:
    return f"{account_tag(account_id)}:cap:{action}:{day_stamp(local_day)}"


def state(account_id: int, link_hash: str) -> str:
    return f"{account_tag(account_id)}:state:{link_hash}"


def dedupe(account_id: int, action: str, link_hash: str, post_id: int | None) -> str:
    post = "-" if post_id is None else str(post_id)
    return f"{account_tag(account_id)}:dedupe:{action}:{link_hash}:{post}"


def account_cooldown(account_id: int) -> str:
    return f"{account_tag(account_id)}:acd"


def account_cap(account_id: int, local_day: datetime) -> str:
    return f"{account_tag(account_id)}:acap:{day_stamp(local_day)}"


def channels(account_id: int) -> str:
    return f"{account_tag(account_id)}:channels"


def full(account_id: int) -> str:
    return f"{account_tag(account_id)}:full"


def hold(account_id: int) -> str:
    return f"{account_tag(account_id)}:hold"


def done(account_id: int, token: str) -> str:
    return f"{account_tag(account_id)}:done:{token}"


def cursor(action: str) -> str:
    return f"{_prefix()}:cursor:{action}"


def pull_replay(provider_id: int, request_id: str) -> str:
    """A pull's replay: each provider's request ids are its own."""
    return f"{_prefix()}:pull:{provider_id}:{request_id}"


def breaker(name: str) -> str:
    """A circuit breaker every dispatcher process shares."""
    return f"{_prefix()}:breaker:{name}"


def snapshot(name: str) -> str:
    """A snapshot a periodic pass computed for every process to read (e.g. accounts by state)."""
    return f"{_prefix()}:snapshot:{name}"


def farm_cooling(provider_id: int) -> str:
    """A provider's accounts cooling down, scored by when their cooldown ends (ms)."""
    return f"{_prefix()}:farm:cooling:{provider_id}"


def farm_capped(provider_id: int, local_day: datetime) -> str:
    """A provider's accounts capped that local day: a set."""
    return f"{_prefix()}:farm:capped:{provider_id}:{day_stamp(local_day)}"


def farm_mark(local_day: datetime) -> str:
    """Up to when (ms) the successes of that local day were read into the two above."""
    return f"{_prefix()}:farm:mark:{day_stamp(local_day)}"


def heartbeat() -> str:
    """When housekeeping last wrote to this Redis (ms): see ``services.heal``."""
    return f"{_prefix()}:heartbeat"


def pass_lock(name: str) -> str:
    """The lock a periodic pass (Celery) holds while it runs, so it never overlaps itself."""
    return f"{_prefix()}:celery-lock:{name}"


def marker() -> str:
    """Present while Redis holds the claim state rebuilt from (or grown with) the ledger."""
    return f"{_prefix()}:marker"


def account_slot(account_id: int) -> int:
    """The Redis Cluster slot of every key of this account."""
    return crc_hqx(f"a{account_id}".encode(), 0) % SLOTS


@cache
def _slot_tags() -> tuple[str, ...]:
    """For each slot, a short hash tag that lands in it (found once per process, ~0.1 s)."""
    tags: list[str | None] = [None] * SLOTS
    missing, i = SLOTS, 0
    while missing:
        tag = f"m{i}"
        slot = crc_hqx(tag.encode(), 0) % SLOTS
        if tags[slot] is None:
            tags[slot] = tag
            missing -= 1
        i += 1
    return tuple(t for t in tags if t is not None)


def slot_marker(slot: int) -> str:
    """On a cluster, the marker of one slot: present while the node owning it holds the claim
    state. A script on an account's keys can only read keys of the account's own slot, so each
    slot has its marker (a node that restarts empty loses the markers of its slots)."""
    return f"{_prefix()}:{{{_slot_tags()[slot]}}}:marker"


def state_marker(account_id: int, *, cluster: bool) -> str:
    """The marker RESERVE and COMMIT check for this account: the one marker on a single Redis,
    the marker of the account's slot on a cluster."""
    return slot_marker(account_slot(account_id)) if cluster else marker()


def day_stamp(local_day: datetime) -> str:
    return f"{local_day:%Y%m%d}"


def reserve_keys(
    account_id: int,
    action: str,
    day: str,
    link_hash: str,
    post_id: int | None,
    token: str,
    marker_key: str,
    account_keys: tuple[str, ...] = (),
    other_actions: tuple[str, ...] = (),
) -> list[str]:
    """KEYS of reserve.lua in order (``day`` from ``day_stamp``), built in one go: this runs
    once per task of a generation pass. ``marker_key``: ``state_marker`` of the account;
    ``account_keys``: which of "acd", "acap", "channels" the tier's limits need;
    ``other_actions``: the actions whose live locks count against them."""
    tag = f"{app_settings.KEY_PREFIX}:{{a{account_id}}}:"
    post = "-" if post_id is None else post_id
    found = [
        f"{tag}lock:{action}",
        f"{tag}cd:{action}",
        f"{tag}cap:{action}:{day}",
        f"{tag}state:{link_hash}",
        f"{tag}dedupe:{action}:{link_hash}:{post}",
        f"{tag}hold",
        f"{tag}full",
        f"{tag}done:{token}",
        marker_key,
    ]
    # (Most tiers need neither: no generator built for nothing.)
    if account_keys:
        found += [f"{tag}acap:{day}" if name == "acap" else tag + name for name in account_keys]
    if other_actions:
        found += [f"{tag}lock:{other}" for other in other_actions]
    return found
