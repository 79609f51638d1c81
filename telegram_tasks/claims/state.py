"""The claim state itself: whether Redis holds it (the marker, per node on a cluster), which
servers hold it, housekeeping's heartbeat, and writing it back from the ledger (rebuild)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from telegram_tasks.claims import keys
from telegram_tasks.claims.operations import ms
from telegram_tasks.claims.scripts import Call, connection, on_cluster, run_many, state_lost


def state_present() -> bool:
    """Whether Redis holds the claim state: its marker, and on a cluster the marker of one slot
    of every primary too (a node that restarted empty, or a replica that took over without the
    data, has lost its part even while the marker on another node survives). One round trip
    per node."""
    conn = connection()
    if not on_cluster():
        return bool(conn.exists(keys.marker()))
    pipe = conn.pipeline(transaction=False)
    pipe.exists(keys.marker())
    for slot in _one_slot_per_primary(conn):
        pipe.exists(keys.slot_marker(slot))
    return all(pipe.execute())


def node_identities() -> dict[str, str]:
    """Each Redis server holding the claims (each primary of a cluster), by address, with the
    id of its current run. A restart, or another server taking over the address or the slots
    (a failover), changes it: the moments when the last writes may have been lost. One round
    trip per server."""
    conn = connection()
    if not on_cluster():
        return {"redis": str(conn.info("server").get("run_id", ""))}
    from redis.cluster import RedisCluster

    answers = conn.info("server", target_nodes=RedisCluster.PRIMARIES)
    if "run_id" in answers:  # (a cluster of one primary answers as one server)
        answers = {"primary": answers}
    return {name: str(info.get("run_id", "")) for name, info in sorted(answers.items())}


def _one_slot_per_primary(conn: Any) -> list[int]:
    """A slot of each primary, from the client's map of the cluster's slots."""
    seen: dict[str, int] = {}
    for slot, nodes in sorted(conn.nodes_manager.slots_cache.items()):
        if nodes:
            seen.setdefault(nodes[0].name, slot)
    return sorted(seen.values())


def ensure_state() -> None:
    """Raise ClaimsStateLost (or a RedisError when Redis is down) unless the state is there."""
    if not state_present():
        raise state_lost()


def heartbeat(*, tz: Any = None) -> datetime | None:
    """When housekeeping last wrote its heartbeat to this Redis (None: never)."""
    value = connection().get(keys.heartbeat())
    return None if value is None else datetime.fromtimestamp(int(value) / 1000, tz=tz)


def set_heartbeat(now: datetime) -> None:
    connection().set(keys.heartbeat(), ms(now))


def mark_state(instance: str) -> None:
    """The claim state is present (a rebuild finished, or there was nothing to rebuild): the
    marker, and on a cluster the marker of every slot (16,384 keys, one pipeline per node)."""
    conn = connection()
    if on_cluster():
        pipe = conn.pipeline(transaction=False)
        for slot in range(keys.SLOTS):
            pipe.set(keys.slot_marker(slot), instance)
        pipe.execute()
    conn.set(keys.marker(), instance)


@dataclass(frozen=True, slots=True)
class Restore:
    """One key to restore for an account: mode "max", "set", "newer" or "lock" (see
    rebuild.lua); ``ttl_ms`` None keeps it without expiry, and one already past is skipped."""

    key: str
    mode: str
    value: str
    ttl_ms: int | None


def rebuild_accounts(per_account: dict[int, list[Restore]], *, chunk: int = 500) -> int:
    """Write restored keys, one script call per account, pipelined by ``chunk`` accounts."""
    written = 0
    items = list(per_account.items())
    for start in range(0, len(items), chunk):
        calls: list[Call] = []
        for _account_id, restores in items[start : start + chunk]:
            args: list[Any] = []
            for r in restores:
                ttl = 0 if r.ttl_ms is None else (int(r.ttl_ms) if r.ttl_ms > 0 else -1)
                args.extend([r.mode, r.value, ttl])
            calls.append(("rebuild", [r.key for r in restores], args))
        written += sum(int(n) for n in run_many(calls))
    return written
