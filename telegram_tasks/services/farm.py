"""The farm's accounts by state — active, inactive, held, cooling down, capped today — for the
dashboard, the metrics and the admin's filters.

Active, inactive and held come from the accounts table (one aggregate over the farm). Cooling
and capped are what Redis already counts: the cooldown deadlines and today's counters COMMIT
writes. Each housekeeping pass reads them for the accounts that succeeded since the last pass
(the successes since a watermark, a few seconds of overlap for transactions still committing),
and keeps the accounts cooling (with their deadlines) and those capped today in two Redis keys
beside the claims (``claims.farm_marks_…``). So a pass costs what happened since the last one,
never the day's successes, and a count is two reads. A Redis that lost them (a restart) is
counted afresh from the ledger once: today's successes, as a rebuild reads them.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from redis.exceptions import RedisError

from telegram_tasks import claims
from telegram_tasks.claims.operations import local_day
from telegram_tasks.conf import DEFAULT_TIER, app_settings
from telegram_tasks.models import Provider
from telegram_tasks.services import sql

logger = logging.getLogger(__name__)

PROVIDERS = Provider._meta.db_table

SNAPSHOT = "accounts"
SNAPSHOT_SECONDS = 300
STATES = ("active", "inactive", "held", "cooling", "capped")
# Successes read again from the last watermark on: a transaction that finished a task a moment
# before the last pass may have committed after it.
OVERLAP = timedelta(seconds=10)


@dataclass
class AccountCounts:
    """The farm's accounts by state (an account may be both cooling and capped; None: not known
    while Redis is unavailable)."""

    active: int = 0
    inactive: int = 0
    held: int = 0
    cooling: int | None = 0  # an action's (or the tier's) cooldown running
    capped: int | None = 0  # an action's (or the tier's) daily cap reached today
    at: str = ""  # when counted
    # The same per provider: {"<provider id>": {"active": n, "inactive": n, …}}.
    providers: dict[str, dict[str, int | None]] = field(default_factory=dict)


def account_counts(*, now: datetime) -> AccountCounts:
    """The snapshot housekeeping keeps (counted now if there is none yet)."""
    try:
        stored = claims.snapshot_load(SNAPSHOT)
    except RedisError:
        stored = None
    if stored:
        return AccountCounts(**stored)
    return refresh_account_counts(now=now)


def refresh_account_counts(*, now: datetime) -> AccountCounts:
    """Count the accounts by state, in all and per provider, and keep the count for the
    dashboard and the metrics (see the module's doc). With Redis unavailable, cooling and
    capped are unknown."""
    counts = AccountCounts(at=now.isoformat())
    for provider, active, inactive, held in sql.rows(
        f"SELECT provider_id, count(*) FILTER (WHERE is_active), "  # noqa: S608
        f"count(*) FILTER (WHERE NOT is_active), "
        f"count(*) FILTER (WHERE is_active AND held_until > %s) FROM {sql.ACCOUNTS} GROUP BY 1",
        [now],
    ):
        counts.providers[str(provider)] = dict.fromkeys(STATES, 0) | {
            "active": active, "inactive": inactive, "held": held,
        }  # fmt: skip
        counts.active += active
        counts.inactive += inactive
        counts.held += held
    try:
        limited = update_limited(now=now, providers=[int(p) for p in counts.providers])
        for provider, (cooling, capped) in limited.items():
            mine = counts.providers.setdefault(str(provider), dict.fromkeys(STATES, 0))
            mine["cooling"], mine["capped"] = cooling, capped
        counts.cooling = sum(c for c, _ in limited.values())
        counts.capped = sum(c for _, c in limited.values())
        claims.snapshot_store(SNAPSHOT, asdict(counts), ttl=SNAPSHOT_SECONDS)
    except RedisError as exc:
        counts.cooling = counts.capped = None
        for mine in counts.providers.values():
            mine["cooling"] = mine["capped"] = None
        logger.warning("accounts by state not kept for the dashboard (Redis unavailable): %s", exc)
    return counts


def update_limited(*, now: datetime, providers: list[int]) -> dict[int, tuple[int, int]]:
    """Bring the cooling and capped marks up to ``now`` from the successes since the last
    update; returns (cooling now, capped today) per provider (of ``providers``, and any other
    an account that succeeded belongs to)."""
    day = local_day(now)
    since = claims.farm_marks_since(day=day)
    if since is None:
        # Nothing kept (a fresh Redis, a new day): every success that can matter today, once.
        midnight = day.replace(hour=0, minute=0, second=0, microsecond=0)
        since = min(midnight, now - timedelta(seconds=_longest_cooldown()))
    else:
        since -= OVERLAP
    accounts = {
        account: (tier or DEFAULT_TIER, provider)
        for account, tier, provider in sql.rows(
            f"""
            SELECT a.id, a.tier, a.provider_id FROM {sql.ACCOUNTS} AS a
            WHERE a.is_active AND a.id IN (
                SELECT telegram_account_id FROM {sql.TASKS}
                WHERE status = {sql.DONE} AND finished_at > %s
                  AND telegram_account_id IS NOT NULL)
            """,  # noqa: S608
            [since],
        )
    }
    cooling: dict[int, dict[int, datetime]] = {}
    capped: dict[int, set[int]] = {}
    states = claims.account_states(sorted(accounts), now=now)
    for account, state in states.items():
        tier, provider = accounts[account]
        deadlines = [a.cooldown_until for a in state.actions.values() if a.cooldown_until]
        if state.account_cooldown_until:
            deadlines.append(state.account_cooldown_until)
        if deadlines:
            cooling.setdefault(provider, {})[account] = max(deadlines)
        account_cap = app_settings.tier(tier).account_daily_cap
        reached = account_cap is not None and state.today >= account_cap
        for action, a in state.actions.items():
            cap = app_settings.policy(action, tier).daily_cap
            reached = reached or (cap is not None and a.today >= cap)
        if reached:
            capped.setdefault(provider, set()).add(account)
    every = sorted(set(providers) | {p for _, p in accounts.values()})
    return claims.farm_marks_update(
        cooling=cooling, capped=capped, providers=every, day=day, now=now
    )


def limited_accounts(*, now: datetime) -> tuple[set[int], set[int]]:
    """The active accounts cooling down now and those capped today (the admin's filter),
    brought up to date first."""
    providers = _providers()
    update_limited(now=now, providers=providers)
    return claims.farm_marks_read(providers=providers, day=local_day(now), now=now)


def forget_limited(account_ids: list[int], *, now: datetime) -> None:
    """Accounts switched off are neither cooling nor capped any more (only active accounts
    count): their marks go with them (a Redis that cannot be reached keeps them until the
    day ends or their cooldowns run out)."""
    try:
        claims.farm_marks_forget(account_ids, providers=_providers(), day=local_day(now))
    except RedisError as exc:
        logger.warning("marks of deactivated accounts kept (Redis unavailable): %s", exc)


def _providers() -> list[int]:
    return [pk for (pk,) in sql.rows(f"SELECT id FROM {PROVIDERS} ORDER BY id")]  # noqa: S608


def _longest_cooldown() -> int:
    longest = [
        app_settings.policy(a, t).cooldown for a in app_settings.ACTIONS for t in app_settings.TIERS
    ] + [app_settings.tier(t).account_cooldown for t in app_settings.TIERS]
    return max(longest, default=0)
