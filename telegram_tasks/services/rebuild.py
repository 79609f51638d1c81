"""Rebuild the Redis claim state from the ledger (``manage.py rebuild_claims``, and housekeeping
when Redis has lost it)."""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from ulid import ULID

from telegram_tasks import claims
from telegram_tasks.claims import Restore, keys
from telegram_tasks.claims.operations import CAP_TTL_MARGIN_MS, local_day, ms, next_local_midnight
from telegram_tasks.conf import app_settings
from telegram_tasks.models import ClaimsCheckpoint
from telegram_tasks.services import settle, sql

logger = logging.getLogger(__name__)


@dataclass
class RebuildSummary:
    cooldowns: int = 0
    caps: int = 0
    states: int = 0
    dedupes: int = 0
    locks: int = 0
    written: int = 0

    def line(self) -> str:
        return (
            f"cooldowns={self.cooldowns} caps={self.caps} states={self.states} "
            f"dedupes={self.dedupes} locks={self.locks} written={self.written}"
        )


# A rebuild reads the ledger's recent facts; far longer than one takes.
REBUILD_LOCK_SECONDS = 600
REBUILD_WAIT_SECONDS = 60


def claims_restore_if_lost(*, now: datetime) -> RebuildSummary | None:
    """Make sure Redis holds the claim state before a pass judges eligibility against it.

    Present: nothing to do. Lost (a fresh install, a flushed or replaced Redis): the state is
    rebuilt from the ledger once, under a lock, while concurrent callers wait for it — always,
    even with no task in the ledger: open memberships and running holds are state too (and on
    a fresh install the rebuild reads empty tables). Returns the rebuild's summary when one
    ran. Raises ``ClaimsStateLost`` when another rebuild holds the lock for too long.
    """
    if claims.state_present():
        return None
    with _rebuild_lock():
        if claims.state_present():  # rebuilt by whoever held the lock
            return None
        return rebuild_from_ledger(now=now)


@contextlib.contextmanager
def _rebuild_lock() -> Iterator[None]:
    """One rebuild at a time, whoever asks (a pass, housekeeping, the command)."""
    lock = claims.pass_lock("rebuild", timeout=REBUILD_LOCK_SECONDS, wait=REBUILD_WAIT_SECONDS)
    if not lock.acquire():
        raise claims.ClaimsStateLost("a rebuild of the claim state is still running")
    try:
        yield
    finally:
        lock.release()


Restores = dict[int, list[Restore]]  # per account: the keys to write (one script call each)


def claims_rebuild(*, now: datetime) -> RebuildSummary:
    """Rebuild the whole claim state from the ledger (``manage.py rebuild_claims``; see
    ``rebuild_from_ledger``), under the rebuild lock."""
    with _rebuild_lock():
        return rebuild_from_ledger(now=now)


def rebuild_from_ledger(*, now: datetime) -> RebuildSummary:
    """Restore the claim state from the ledger: cooldowns still running and today's cap counts
    (per action and account-wide), dedupe keys within their TTL (from the one-shot ledger),
    link states and channel counts (from memberships), holds (from accounts) and the locks of
    unfinished tasks. Merged with what Redis holds (the larger or newer wins, channel counts
    included), so reports committing during a rebuild are not undone and a rebuild is safe at
    any time. Then the marker says the state is present."""
    summary = RebuildSummary()
    per_account: Restores = defaultdict(list)
    longest_cd = max(
        (
            app_settings.policy(a, tier).cooldown
            for a in app_settings.ACTIONS
            for tier in app_settings.TIERS
        ),
        default=0,
    )
    summary.cooldowns = restore_cooldowns(per_account, since=now - seconds(longest_cd), now=now)
    summary.caps = restore_caps(per_account, now=now)
    longest_acd = max(t.get("account_cooldown") or 0 for t in app_settings.TIERS.values())
    restore_account_limits(per_account, since=now - seconds(longest_acd), now=now)
    summary.states = restore_states(
        per_account, since=now - seconds(app_settings.STATE_TTL_SECONDS), now=now
    )
    # Merged like heal's (larger wins): a subscribe COMMITted whose ledger step is still on its
    # way counts in Redis but not yet in the memberships; setting the ledger's count would undo
    # it and let the account overshoot max_channels.
    restore_channels(per_account)
    summary.dedupes = restore_dedupes(
        per_account, since=now - seconds(app_settings.DEDUPE_TTL_SECONDS), now=now
    )
    restore_holds(per_account, now=now)
    locked = restore_locks(per_account, now=now)
    summary.locks = len(locked)
    summary.written = claims.rebuild_accounts(per_account)
    release_finished_locks(locked)
    claims.mark_state(str(ULID()))
    record_heartbeat(now)
    if summary.written:
        logger.warning("claims rebuilt from the ledger: %s", summary.line())
    else:
        logger.info("claim state marked present: the ledger holds nothing to restore")
    return summary


def record_heartbeat(now: datetime, *, nodes: dict[str, str] | None = None) -> None:
    """Redis and the ledger agree the state is whole as of ``now``, on these Redis servers'
    runs (see ``services.heal``): Redis first, so a failure between the two only makes the
    next pass heal once more."""
    claims.set_heartbeat(now)
    ClaimsCheckpoint.objects.update_or_create(
        pk=1,
        defaults={
            "heartbeat_at": now,
            "nodes": claims.node_identities() if nodes is None else nodes,
        },
    )


def release_finished_locks(locked: list[dict]) -> int:
    """A rebuild or heal read the live tasks, then wrote their locks: a task that finished in
    between (its ROLLBACK or COMMIT already ran) would keep its account locked until the lock
    lapsed. ROLLBACK those now (only a lock its own token holds is released). Its own ROLLBACK
    runs after its commit, so whichever comes second releases the lock."""
    if not locked:
        return 0
    finished = sql.fetch(
        f"SELECT {settle.CLAIM_COLUMNS} FROM {sql.TASKS} "  # noqa: S608
        f"WHERE id = ANY(%s) AND status IN {sql.FINISHED} AND telegram_account_id IS NOT NULL",
        [[r["id"] for r in locked]],
    )
    return sum(claims.rollback_many([settle.claim_of(r) for r in finished]))


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def restore_cooldowns(per_account: Restores, *, since: datetime, now: datetime) -> int:
    """Cooldowns of the successes since ``since`` that are still running (larger wins)."""
    n = 0
    now_ms = ms(now)
    # The tier looked up per group by key: a join would read every account.
    for account, tier, action, last in sql.rows(
        f"SELECT s.account, (SELECT a.tier FROM {sql.ACCOUNTS} AS a WHERE a.id = s.account), "  # noqa: S608
        "s.action, s.last FROM ("
        "SELECT telegram_account_id AS account, action, max(finished_at) AS last "
        f"FROM {sql.TASKS} WHERE status = {sql.DONE} AND finished_at > %s "
        "AND telegram_account_id IS NOT NULL GROUP BY 1, 2) AS s",
        [since],
    ):
        if action not in app_settings.ACTIONS:
            continue
        cooldown = app_settings.policy(action, tier).cooldown
        if not cooldown:
            continue
        deadline = ms(last) + cooldown * 1000
        if deadline > now_ms:
            key = keys.cooldown(account, action)
            per_account[account].append(Restore(key, "max", str(deadline), deadline - now_ms))
            n += 1
    return n


def restore_caps(
    per_account: Restores, *, now: datetime, only: set[tuple[int, str]] | None = None
) -> int:
    """Today's success counts (larger wins), for every (account, action) or ``only`` these."""
    n = 0
    day = local_day(now)
    midnight = day.replace(hour=0, minute=0, second=0, microsecond=0)
    cap_ttl = ms(next_local_midnight(now)) - ms(now) + CAP_TTL_MARGIN_MS
    accounts = None if only is None else sorted({a for a, _ in only})
    for account, action, count in sql.rows(
        f"SELECT telegram_account_id, action, count(*) FROM {sql.TASKS} "  # noqa: S608
        f"WHERE status = {sql.DONE} AND telegram_account_id IS NOT NULL AND finished_at >= %s "
        "AND (%s::bigint[] IS NULL OR telegram_account_id = ANY(%s)) GROUP BY 1, 2",
        [midnight, accounts, accounts],
    ):
        if only is not None and (account, action) not in only:
            continue
        key = keys.cap(account, action, day)
        per_account[account].append(Restore(key, "max", str(count), cap_ttl))
        n += 1
    return n


def restore_states(
    per_account: Restores, *, since: datetime, now: datetime, changed_only: bool = False
) -> int:
    """Link states from the memberships, the ledger of who is in which channel: subscribed
    since it opened, unsubscribed since it closed (the newer of stored and restored wins). With
    ``changed_only``, only the memberships opened or closed since ``since``; else every open one
    and those closed since ``since``."""
    n = 0
    state_ttl, now_ms = app_settings.STATE_TTL_SECONDS * 1000, ms(now)
    opened = "subscribed_at > %(since)s" if changed_only else f"state = {sql.OPEN}"
    for account, link_hash, subscribed_at, unsubscribed_at in sql.rows(
        f"""
        SELECT account_id, link_hash, subscribed_at, unsubscribed_at FROM {sql.MEMBERSHIPS}
        WHERE {opened} OR unsubscribed_at > %(since)s
        """,  # noqa: S608
        {"since": since},
    ):
        at = unsubscribed_at or subscribed_at
        word = "subscribed" if unsubscribed_at is None else "unsubscribed"
        # An open membership is subscribed for as long as it stays open.
        ttl = None if unsubscribed_at is None else ms(at) + state_ttl - now_ms
        key = keys.state(account, link_hash)
        per_account[account].append(Restore(key, "newer", f"{word}@{ms(at)}", ttl))
        n += 1
    return n


def restore_channels(per_account: Restores, *, accounts: list[int] | None = None) -> int:
    """The channels each account is in: its open memberships, merged (the larger wins: a
    subscribe counted in Redis whose ledger step is on its way is never undone)."""
    n = 0
    for account, count in sql.rows(
        f"SELECT account_id, count(*) FROM {sql.MEMBERSHIPS} WHERE state = {sql.OPEN} "  # noqa: S608
        "AND (%(accounts)s::bigint[] IS NULL OR account_id = ANY(%(accounts)s)) GROUP BY 1",
        {"accounts": accounts},
    ):
        per_account[account].append(Restore(keys.channels(account), "max", str(count), None))
        n += 1
    return n


def restore_account_limits(
    per_account: Restores, *, since: datetime, now: datetime, accounts: list[int] | None = None
) -> int:
    """Account-wide limits: the tier's cooldown after an account's last success (larger wins)
    and the account's successes today over every action (larger wins)."""
    n = 0
    now_ms = ms(now)
    day = local_day(now)
    midnight = day.replace(hour=0, minute=0, second=0, microsecond=0)
    cap_ttl = ms(next_local_midnight(now)) - now_ms + CAP_TTL_MARGIN_MS
    for account, tier, last, today in sql.rows(
        f"""
        SELECT s.account, (SELECT a.tier FROM {sql.ACCOUNTS} AS a WHERE a.id = s.account),
               s.last, s.today
        FROM (
            SELECT t.telegram_account_id AS account, max(t.finished_at) AS last,
                   count(*) FILTER (WHERE t.finished_at >= %(midnight)s) AS today
            FROM {sql.TASKS} AS t
            WHERE t.status = {sql.DONE} AND t.finished_at > LEAST(%(since)s, %(midnight)s)
              AND t.telegram_account_id IS NOT NULL
              AND (%(accounts)s::bigint[] IS NULL OR t.telegram_account_id = ANY(%(accounts)s))
            GROUP BY 1
        ) AS s
        """,  # noqa: S608
        {"since": since, "midnight": midnight, "accounts": accounts},
    ):
        cooldown = app_settings.tier(tier).account_cooldown
        deadline = ms(last) + cooldown * 1000
        if cooldown and deadline > now_ms:
            key = keys.account_cooldown(account)
            per_account[account].append(Restore(key, "max", str(deadline), deadline - now_ms))
        if today:
            key = keys.account_cap(account, day)
            per_account[account].append(Restore(key, "max", str(today), cap_ttl))
        n += 1
    return n


def restore_dedupes(per_account: Restores, *, since: datetime, now: datetime) -> int:
    """One-shot markers of the successes since ``since``, from their compact ledger (one row
    per account and target, not one per task)."""
    one_shot = [a for a in app_settings.ACTIONS if app_settings.policy(a).one_shot]
    if not one_shot:
        return 0
    n = 0
    dedupe_ttl, now_ms = app_settings.DEDUPE_TTL_SECONDS * 1000, ms(now)
    for account, action, link_hash, post, last in sql.rows(
        f"SELECT account_id, action, link_hash, post_id, done_at FROM {sql.ONE_SHOTS} "  # noqa: S608
        "WHERE action = ANY(%s) AND done_at > %s",
        [one_shot, since],
    ):
        key = keys.dedupe(account, action, link_hash, post)
        per_account[account].append(Restore(key, "set", "1", ms(last) + dedupe_ttl - now_ms))
        n += 1
    return n


def restore_holds(per_account: Restores, *, now: datetime) -> int:
    """Flood holds still running, from the accounts' ``held_until`` (later wins)."""
    n = 0
    now_ms = ms(now)
    for account, until in sql.rows(
        f"SELECT id, held_until FROM {sql.ACCOUNTS} WHERE held_until > %s",  # noqa: S608
        [now],
    ):
        deadline = ms(until)
        per_account[account].append(
            Restore(keys.hold(account), "max", str(deadline), deadline - now_ms)
        )
        n += 1
    return n


def restore_locks(
    per_account: Restores, *, now: datetime, queued_since: datetime | None = None
) -> list[dict]:
    """Locks of unfinished tasks (set where no live lock is): every one, or — with
    ``queued_since`` — only queued tasks due since then (those whose reservation was written
    since: a slot is never before the moment it was reserved). Returns the tasks whose lock
    is to be written ({"id"})."""
    locked: list[dict] = []
    now_ms = ms(now)
    grace_ms = app_settings.RESERVE_LOCK_SECONDS * 1000
    columns = "id, telegram_account_id, action, status, reserved_until, leased_until"
    if queued_since is None:
        query = (
            f"SELECT {columns} FROM {sql.TASKS} "  # noqa: S608
            f"WHERE status IN {sql.LIVE} AND telegram_account_id IS NOT NULL"
        )
    else:
        query = sql.queued_since(columns)
    for task_id, account, action, status, reserved_until, leased_until in sql.rows(
        query + " ORDER BY id", {"since": queued_since}
    ):
        if status == sql.S.QUEUED:
            until = ms(settle.queued_lock_until(reserved_until)) if reserved_until else 0
        else:
            # A lapsed lease waiting to be pulled again keeps its account too.
            until = max(ms(leased_until) if leased_until else 0, now_ms) + grace_ms
        if until > now_ms:
            per_account[account].append(
                Restore(keys.lock(account, action), "lock", f"{task_id}|{until}", until - now_ms)
            )
            locked.append({"id": task_id})
    return locked
