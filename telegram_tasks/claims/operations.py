"""RESERVE, COMMIT, ROLLBACK, EXTEND and HOLD over the Lua scripts, singly or batched."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime, time, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from django.conf import settings

from telegram_tasks.claims import keys
from telegram_tasks.claims.scripts import (
    Call,
    connection,
    on_cluster,
    run_many,
    state_lost,
)
from telegram_tasks.conf import DEFAULT_TIER, app_settings

# Commit markers outlive any report retry; the ledger (task status) guards beyond that.
# COMMIT's answer when it was given the marker key and the marker is gone.
COMMIT_STATE_LOST = 2
DONE_TTL_MS = 7 * 86400 * 1000
# Cap counters live a little past the local midnight that ends their day.
CAP_TTL_MARGIN_MS = 3600 * 1000


class Refusal(enum.StrEnum):
    """Why RESERVE refused an account. Account-wide reasons rule it out for every target."""

    LOCKED = "locked"
    COOLDOWN = "cooldown"
    CAP = "cap"
    GATE = "gate"
    DEDUPE = "dedupe"
    HOLD = "hold"
    FULL = "full"  # CHANNELS_TOO_MUCH: no subscribe until the account unsubscribes somewhere
    COMMITTED = "committed"  # the token's own task already succeeded (re-arming found it)
    ACCOUNT_COOLDOWN = "account_cooldown"  # the tier's cooldown across actions, or busy
    ACCOUNT_CAP = "account_cap"  # the tier's successes per day across actions
    CHANNELS = "channels"  # the tier's max_channels reached (subscribes in flight included)

    @property
    def account_wide(self) -> bool:
        return self not in (Refusal.GATE, Refusal.DEDUPE, Refusal.COMMITTED)


_RESERVE_CODES = {
    1: Refusal.LOCKED,
    2: Refusal.COOLDOWN,
    3: Refusal.CAP,
    4: Refusal.GATE,
    5: Refusal.DEDUPE,
    6: Refusal.HOLD,
    7: Refusal.FULL,
    8: Refusal.COMMITTED,
    9: Refusal.ACCOUNT_COOLDOWN,
    10: Refusal.ACCOUNT_CAP,
    11: Refusal.CHANNELS,
}


class ExtendResult(enum.StrEnum):
    REARMED = "rearmed"
    LOST = "lost"  # the lock lapsed: nobody holds it
    TAKEN = "taken"  # another task holds it


_EXTEND_CODES = {0: ExtendResult.REARMED, 1: ExtendResult.LOST, 2: ExtendResult.TAKEN}


class Target(NamedTuple):
    """What an action is aimed at: link state is per link, one-shot dedupe per link and post."""

    link_hash: str
    post_id: int | None = None


class Claim(NamedTuple):
    """One task's claim on one account: the token is the task id; the account's tier says which
    limits apply. (Tuples, not dataclasses: a pull or a pass builds thousands of them.)"""

    account_id: int
    action: str
    target: Target
    token: str
    tier: str = DEFAULT_TIER


def ping() -> None:
    """Raise a RedisError unless Redis answers (a pass checks this before it starts)."""
    connection().ping()


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def local_day(now: datetime) -> datetime:
    return now.astimezone(ZoneInfo(settings.TIME_ZONE))


def next_local_midnight(now: datetime) -> datetime:
    """The next midnight in TIME_ZONE; wall-clock arithmetic, so a 23- or 25-hour day is right."""
    zone = ZoneInfo(settings.TIME_ZONE)
    tomorrow = now.astimezone(zone).date() + timedelta(days=1)
    return datetime.combine(tomorrow, time(0), tzinfo=zone)


def verify_reservations(claims: Sequence[Claim], *, now: datetime) -> list[Refusal | None]:
    """Whether each live task's reservation would still be granted against the claim state as
    it is now, as if its token did not hold its lock yet (None: it would). After a repair of
    lost writes, a refusal means the task was reserved against state Redis had lost."""
    return check_many(claims, now=now, verify=True)


# RESERVE's answer when the account's marker is gone (see reserve.lua).
RESERVE_STATE_LOST = 12


def check_many(
    claims: Sequence[Claim], *, now: datetime, verify: bool = False
) -> list[Refusal | None]:
    """What RESERVE would answer for each claim, writing nothing (one round trip). ``verify``:
    judge each claim as if its token did not hold its lock yet — whether a live reservation
    would still be granted against the state as it is now (heal's check after a repair)."""
    calls = reserve_calls(claims, now, [now] * len(claims), check="2" if verify else "1")
    codes = [int(code) for code in run_many(calls)]
    if RESERVE_STATE_LOST in codes:
        raise _lost_state()
    return [_RESERVE_CODES.get(code) for code in codes]


def reserve_many(
    claims: Sequence[Claim], *, now: datetime, until: Sequence[datetime] | datetime | None = None
) -> list[Refusal | None]:
    """RESERVE each claim (one round trip); ``None`` where the lock was taken, else the refusal.

    ``until`` is when each lock lapses unless re-armed: one moment for all, one per claim, or
    by default ``now + RESERVE_LOCK_SECONDS``.
    """
    if until is None:
        until = now + timedelta(seconds=app_settings.RESERVE_LOCK_SECONDS)
    untils = [until] * len(claims) if isinstance(until, datetime) else list(until)
    codes = [int(code) for code in run_many(reserve_calls(claims, now, untils))]
    if RESERVE_STATE_LOST in codes:
        # Redis (or one node of a cluster) came back empty: give back what this batch took
        # before the others answered lost; nothing is reserved against a lost state.
        rollback_many([c for c, code in zip(claims, codes, strict=True) if code == 0])
        raise _lost_state()
    return [_RESERVE_CODES.get(code) for code in codes]


def _lost_state() -> Exception:
    """A script found its marker gone. On a cluster that may be one node only (it restarted
    empty, or a replica without the data took over): the one marker everyone asks is removed
    too, so every pass and request knows, and the next pass rebuilds the whole state."""
    if on_cluster():
        connection().delete(keys.marker())
    return state_lost()


def reserve_calls(
    claims: Sequence[Claim], now: datetime, untils: Sequence[datetime], *, check: str = "0"
) -> list[Call]:
    """The EVALSHA calls of RESERVE for these claims (also the benchmarks' baseline);
    ``check`` is reserve.lua's ARGV 7 ("0" reserve, "1" check, "2" verify)."""
    # Per-batch constants first: this runs once per task of a generation pass.
    now_ms, day = ms(now), keys.day_stamp(local_day(now))
    per_kind: dict[tuple[str, str], tuple[tuple[Any, ...], tuple[str, ...], tuple[str, ...]]] = {}
    cluster = on_cluster()
    marker = None if cluster else keys.marker()
    calls = []
    for c, u in zip(claims, untils, strict=True):
        kind = per_kind.get((c.action, c.tier))
        if kind is None:
            kind = per_kind[(c.action, c.tier)] = _reserve_policy(c.action, c.tier, check)
        args, account_keys, others = kind
        calls.append(
            (
                "reserve",
                keys.reserve_keys(
                    c.account_id, c.action, day, c.target.link_hash, c.target.post_id, c.token,
                    marker or keys.state_marker(c.account_id, cluster=True),
                    account_keys, others,
                ),
                [c.token, now_ms, ms(u), *args],
            )
        )  # fmt: skip
    return calls


def _reserve_policy(
    action: str, tier: str, check: str
) -> tuple[tuple[Any, ...], tuple[str, ...], tuple[str, ...]]:
    """RESERVE's policy arguments for an action on accounts of a tier (ARGV 4…11), the
    account-wide keys its limits need, and the other actions whose live locks count against
    them (the optional KEYS, in reserve.lua's order)."""
    policy = app_settings.policy(action, tier)
    limits = app_settings.tier(tier)
    account_keys = tuple(
        name
        for name, needed in (
            ("acd", limits.account_cooldown > 0),
            ("acap", limits.account_daily_cap is not None),
            ("channels", policy.gate == "subscribe" and limits.max_channels is not None),
        )
        if needed
    )
    gates = {a: app_settings.policy(a, tier).gate for a in app_settings.ACTIONS if a != action}
    if limits.account_cooldown > 0 or limits.account_daily_cap is not None:
        others = tuple(gates)
    elif policy.gate == "subscribe" and limits.max_channels is not None:
        others = tuple(a for a, gate in gates.items() if gate == "subscribe")
    else:
        others = ()
    args = (
        -1 if policy.daily_cap is None else policy.daily_cap,
        policy.gate or "",
        "1" if policy.one_shot else "0",
        check,
        "1" if limits.account_cooldown > 0 else "0",
        -1 if limits.account_daily_cap is None else limits.account_daily_cap,
        -1 if limits.max_channels is None else limits.max_channels,
        "".join("s" if gates[a] == "subscribe" else "x" for a in others),
    )
    return args, account_keys, others


def reserve(claim: Claim, *, now: datetime, until: datetime | None = None) -> Refusal | None:
    return reserve_many([claim], now=now, until=until)[0]


def _commit_call(claim: Claim, now: datetime) -> Call:
    policy = app_settings.policy(claim.action, claim.tier)
    limits = app_settings.tier(claim.tier)
    account, action, target = claim.account_id, claim.action, claim.target
    day = local_day(now)
    cap_ttl = ms(next_local_midnight(now)) - ms(now) + CAP_TTL_MARGIN_MS
    return (
        "commit",
        [
            keys.lock(account, action),
            keys.cooldown(account, action),
            keys.cap(account, action, day),
            keys.state(account, target.link_hash),
            keys.dedupe(account, action, target.link_hash, target.post_id),
            keys.done(account, claim.token),
            keys.full(account),
            keys.account_cooldown(account),
            keys.account_cap(account, day),
            keys.channels(account),
        ],
        [
            claim.token,
            ms(now),
            policy.cooldown * 1000,
            cap_ttl,
            policy.gate or "",
            "1" if policy.one_shot else "0",
            app_settings.STATE_TTL_SECONDS * 1000,
            app_settings.DEDUPE_TTL_SECONDS * 1000,
            DONE_TTL_MS,
            limits.account_cooldown * 1000,
        ],
    )


def commit_many_at(
    claims: Sequence[Claim], *, now: datetime, require_state: bool = False
) -> list[tuple[bool, datetime]]:
    """COMMIT each claim: (committed now?, when it was committed). A repeated COMMIT of a task
    changes nothing and tells when the first one happened (the moment the success counts).

    ``require_state``: nothing is counted into a Redis that lost its state (a rebuild's merge
    would undo it); ClaimsStateLost instead. Each COMMIT checks the marker itself, in the same
    script: the one marker on a single Redis, its slot's on a cluster (one round trip)."""
    calls = [_commit_call(c, now) for c in claims]
    if require_state:
        cluster = on_cluster()
        calls = [
            (name, [*keys_, keys.state_marker(c.account_id, cluster=cluster)], args)
            for c, (name, keys_, args) in zip(claims, calls, strict=True)
        ]
    results = run_many(calls)
    if any(int(code) == COMMIT_STATE_LOST for code, _ in results):
        raise _lost_state()
    return [
        (int(code) == 0, datetime.fromtimestamp(int(at) / 1000, tz=now.tzinfo))
        for code, at in results
    ]


def commit_many(claims: Sequence[Claim], *, now: datetime) -> list[bool]:
    """COMMIT each claim; True where it was committed now, False where it already had been."""
    return [newly for newly, _ in commit_many_at(claims, now=now)]


def committed_many(claims: Sequence[Claim]) -> list[bool]:
    """Whether each claim's task was COMMITted (its success counted), in one round trip."""
    if not claims:
        return []
    pipe = connection().pipeline(transaction=False)
    for c in claims:
        pipe.exists(keys.done(c.account_id, c.token))
    return [bool(n) for n in pipe.execute()]


def commit(claim: Claim, *, now: datetime) -> bool:
    return commit_many([claim], now=now)[0]


def rollback_many(claims: Sequence[Claim]) -> list[bool]:
    """ROLLBACK: release each lock the claim's token holds. True where one was released."""
    calls = [("rollback", [keys.lock(c.account_id, c.action)], [c.token]) for c in claims]
    return [bool(int(r)) for r in run_many(calls)]


def rollback(claim: Claim) -> bool:
    return rollback_many([claim])[0]


def extend_many(
    claims: Sequence[Claim],
    *,
    now: datetime,
    until: Sequence[datetime] | datetime,
    require_state: bool = False,
) -> list[ExtendResult]:
    """Re-arm the locks of live tasks until ``until`` (never lowering a deadline). With
    ``require_state``, the same round trip makes sure the claim state is present (an EXTEND
    on a lost state renews nothing, so asking alongside is enough)."""
    untils = [until] * len(claims) if isinstance(until, datetime) else list(until)
    calls = [
        ("extend", [keys.lock(c.account_id, c.action)], [c.token, ms(now), ms(u)])
        for c, u in zip(claims, untils, strict=True)
    ]
    if require_state:
        return [_EXTEND_CODES[int(r)] for r in run_many(calls, require=keys.marker())]
    return [_EXTEND_CODES[int(r)] for r in run_many(calls)]


def extend(claim: Claim, *, now: datetime, until: datetime) -> ExtendResult:
    return extend_many([claim], now=now, until=until)[0]


def hold_many(holds: Sequence[tuple[int, float]], *, now: datetime) -> list[datetime]:
    """Hold each (account, seconds) off every action that long (a flood wait); one round trip.
    Returns each hold's deadline (a later hold already in place is kept)."""
    now_ms = ms(now)
    calls = [
        ("hold", [keys.hold(account_id)], [now_ms, now_ms + int(seconds * 1000)])
        for account_id, seconds in holds
    ]
    return [
        datetime.fromtimestamp(int(d) / 1000, tz=now.tzinfo) if int(d) else now
        for d in run_many(calls)
    ]


def unhold_many(account_ids: Sequence[int]) -> None:
    """Lift the holds of these accounts (an operator's decision); one round trip."""
    if not account_ids:
        return
    pipe = connection().pipeline(transaction=False)
    for account_id in account_ids:
        pipe.delete(keys.hold(account_id))
    pipe.execute()


def hold(account_id: int, *, now: datetime, seconds: float) -> datetime:
    """Hold an account off every action for ``seconds`` (a flood wait); returns the deadline."""
    return hold_many([(account_id, seconds)], now=now)[0]


def lock_holders(locks: Sequence[tuple[int, str]]) -> list[str | None]:
    """The token holding each (account, action) lock, or None; one round trip."""
    if not locks:
        return []
    pipe = connection().pipeline(transaction=False)
    for account_id, action in locks:
        pipe.hget(keys.lock(account_id, action), "token")
    return [None if t is None else t.decode() for t in pipe.execute()]


def leave_many(left: Sequence[tuple[int, str]], *, now: datetime) -> list[bool]:
    """(account, link_hash) pairs no longer in their channel though no unsubscribe of ours
    succeeded: unsubscribed, one channel less each (one round trip)."""
    calls = [
        (
            "leave",
            [keys.state(account, link_hash), keys.channels(account)],
            [ms(now), app_settings.STATE_TTL_SECONDS * 1000],
        )
        for account, link_hash in left
    ]
    return [bool(int(r)) for r in run_many(calls)]


def mark_full(account_ids: Sequence[int], *, ttl_seconds: int) -> None:
    """CHANNELS_TOO_MUCH: keep these accounts off subscribe until one of their unsubscribes
    commits (or the flag expires)."""
    if not account_ids:
        return
    pipe = connection().pipeline(transaction=False)
    for account_id in account_ids:
        pipe.set(keys.full(account_id), "1", ex=ttl_seconds)
    pipe.execute()
