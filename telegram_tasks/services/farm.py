"""The farm's accounts by state — active, inactive, held, cooling down, capped today — for the
dashboard, the metrics and the admin's filters. Housekeeping refreshes the counts every pass and
leaves them in Redis (a single Redis or a cluster alike) for every process; reading them costs
one GET. Counted from PostgreSQL alone, so a Redis outage costs the snapshot, not the answer."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from redis.exceptions import RedisError

from telegram_tasks import claims
from telegram_tasks.claims.operations import local_day
from telegram_tasks.conf import app_settings
from telegram_tasks.services import sql

logger = logging.getLogger(__name__)

SNAPSHOT = "accounts"
SNAPSHOT_SECONDS = 300


@dataclass
class AccountCounts:
    """The farm's accounts by state (an account may be both cooling and capped)."""

    active: int = 0
    inactive: int = 0
    held: int = 0
    cooling: int = 0  # an action's (or the tier's) cooldown running
    capped: int = 0  # an action's (or the tier's) daily cap reached today
    at: str = ""  # when counted


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
    """Count the accounts by state and keep the count for the dashboard and the metrics.
    Active, inactive and held from the accounts table; cooling and capped from the ledger's
    successes of the last cooldown and of today (bounded by a day's work, not the history),
    judged against each account's tier."""
    counts = AccountCounts(at=now.isoformat())
    [(active, inactive, held)] = sql.rows(
        f"SELECT count(*) FILTER (WHERE is_active), count(*) FILTER (WHERE NOT is_active), "  # noqa: S608
        f"count(*) FILTER (WHERE is_active AND held_until > %s) FROM {sql.ACCOUNTS}",
        [now],
    )
    counts.active, counts.inactive, counts.held = active, inactive, held
    cooling, capped = limited_accounts(now=now)
    counts.cooling, counts.capped = len(cooling), len(capped)
    try:
        claims.snapshot_store(SNAPSHOT, asdict(counts), ttl=SNAPSHOT_SECONDS)
    except RedisError as exc:
        logger.warning("accounts by state not kept for the dashboard (Redis unavailable): %s", exc)
    return counts


def limited_accounts(*, now: datetime) -> tuple[set[int], set[int]]:
    """The active accounts cooling down now (an action's or their tier's cooldown running after
    a success) and those capped today (an action's or their tier's daily cap reached), as the
    ledger's successes say: one aggregate over today's and the last cooldown's successes."""
    midnight = local_day(now).replace(hour=0, minute=0, second=0, microsecond=0)
    longest = [
        app_settings.policy(a, t).cooldown for a in app_settings.ACTIONS for t in app_settings.TIERS
    ] + [app_settings.tier(t).account_cooldown for t in app_settings.TIERS]
    since = min(midnight, now - timedelta(seconds=max(longest, default=0)))
    cooling: set[int] = set()
    capped: set[int] = set()
    per_account: dict[int, int] = defaultdict(int)
    tiers: dict[int, str] = {}
    for account, tier, action, last, today in sql.rows(
        f"""
        SELECT s.account, a.tier, s.action, s.last, s.today
        FROM (
            SELECT telegram_account_id AS account, action, max(finished_at) AS last,
                   count(*) FILTER (WHERE finished_at >= %(midnight)s) AS today
            FROM {sql.TASKS}
            WHERE status = {sql.DONE} AND finished_at > %(since)s
              AND telegram_account_id IS NOT NULL
            GROUP BY 1, 2
        ) AS s
        JOIN {sql.ACCOUNTS} AS a ON a.id = s.account
        WHERE a.is_active
        """,  # noqa: S608
        {"midnight": midnight, "since": since},
    ):
        tier = tier or "default"
        tiers[account] = tier
        per_account[account] += today
        limits = app_settings.tier(tier)
        cooldown = limits.account_cooldown
        cap = None
        if action in app_settings.ACTIONS:
            policy = app_settings.policy(action, tier)
            cooldown, cap = max(cooldown, policy.cooldown), policy.daily_cap
        if cooldown and last + timedelta(seconds=cooldown) > now:
            cooling.add(account)
        if cap is not None and today >= cap:
            capped.add(account)
    for account, today in per_account.items():
        cap = app_settings.tier(tiers[account]).account_daily_cap
        if cap is not None and today >= cap:
            capped.add(account)
    return cooling, capped
