"""The farm's accounts by state — active, inactive, held, cooling down, capped today — for the
dashboard, the metrics and the admin's filters. Housekeeping refreshes the counts every pass and
leaves them in Redis (a single Redis or a cluster alike) for every process; reading them costs
one GET. Counted from PostgreSQL alone, so a Redis outage costs the snapshot, not the answer."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from redis.exceptions import RedisError

from telegram_tasks import claims
from telegram_tasks.claims.operations import local_day
from telegram_tasks.conf import DEFAULT_TIER, app_settings
from telegram_tasks.models import AccountDay, RollupMark
from telegram_tasks.services import sql

logger = logging.getLogger(__name__)

DAYS = AccountDay._meta.db_table
SNAPSHOT = "accounts"
SNAPSHOT_SECONDS = 300
STATES = ("active", "inactive", "held", "cooling", "capped")


@dataclass
class AccountCounts:
    """The farm's accounts by state (an account may be both cooling and capped)."""

    active: int = 0
    inactive: int = 0
    held: int = 0
    cooling: int = 0  # an action's (or the tier's) cooldown running
    capped: int = 0  # an action's (or the tier's) daily cap reached today
    at: str = ""  # when counted
    # The same per provider: {"<provider id>": {"active": n, "inactive": n, …}}.
    providers: dict[str, dict[str, int]] = field(default_factory=dict)


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
    Active, inactive and held from the accounts table; cooling from the successes of the last
    cooldown; capped from the day's counts the rollup keeps (see ``limited_accounts``)."""
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
    cooling, capped = limited_accounts(now=now)
    counts.cooling, counts.capped = len(cooling), len(capped)
    if cooling or capped:
        limited = sorted(cooling | capped)
        for account, provider in sql.rows(
            f"SELECT id, provider_id FROM {sql.ACCOUNTS} WHERE id = ANY(%s)",  # noqa: S608
            [limited],
        ):
            mine = counts.providers.setdefault(str(provider), dict.fromkeys(STATES, 0))
            mine["cooling"] += account in cooling
            mine["capped"] += account in capped
    try:
        claims.snapshot_store(SNAPSHOT, asdict(counts), ttl=SNAPSHOT_SECONDS)
    except RedisError as exc:
        logger.warning("accounts by state not kept for the dashboard (Redis unavailable): %s", exc)
    return counts


def limited_accounts(*, now: datetime) -> tuple[set[int], set[int]]:
    """The active accounts cooling down now (an action's or their tier's cooldown running after
    a success) and those capped today (an action's or their tier's daily cap reached). Neither
    reads a day of tasks: cooling reads the successes of the longest cooldown, capped the
    per-account counts of the day the rollup keeps (``AccountDay``) and the few minutes of
    successes since it last ran."""
    return _cooling(now), _capped(now)


def _cooling(now: datetime) -> set[int]:
    longest = [
        app_settings.policy(a, t).cooldown for a in app_settings.ACTIONS for t in app_settings.TIERS
    ] + [app_settings.tier(t).account_cooldown for t in app_settings.TIERS]
    window = max(longest, default=0)
    if window <= 0:
        return set()
    cooling: set[int] = set()
    for account, tier, action, last in sql.rows(
        f"""
        SELECT s.account, a.tier, s.action, s.last
        FROM (
            SELECT telegram_account_id AS account, action, max(finished_at) AS last
            FROM {sql.TASKS}
            WHERE status = {sql.DONE} AND finished_at > %(since)s
              AND telegram_account_id IS NOT NULL
            GROUP BY 1, 2
        ) AS s
        JOIN {sql.ACCOUNTS} AS a ON a.id = s.account
        WHERE a.is_active
        """,  # noqa: S608
        {"since": now - timedelta(seconds=window)},
    ):
        tier = tier or DEFAULT_TIER
        cooldown = app_settings.tier(tier).account_cooldown
        if action in app_settings.ACTIONS:
            cooldown = max(cooldown, app_settings.policy(action, tier).cooldown)
        if cooldown and last + timedelta(seconds=cooldown) > now:
            cooling.add(account)
    return cooling


def _capped(now: datetime) -> set[int]:
    """The active accounts whose count today reached an action's cap or their tier's day cap,
    judged in one statement against the caps of each tier (an unknown tier: the default's):
    the day's counts the rollup keeps, plus the successes since its mark."""
    tiers = list(app_settings.TIERS)
    caps = [
        {"tier": t, "action": a, "cap": app_settings.policy(a, t).daily_cap}
        for t in tiers
        for a in app_settings.ACTIONS
        if app_settings.policy(a, t).daily_cap is not None
    ]
    account_caps = [
        {"tier": t, "cap": app_settings.tier(t).account_daily_cap}
        for t in tiers
        if app_settings.tier(t).account_daily_cap is not None
    ]
    if not caps and not account_caps:
        return set()
    # The rollup counted today's successes up to its mark; the few minutes since are read from
    # the tasks (an index range): exact, whatever the day's volume.
    midnight = local_day(now).replace(hour=0, minute=0, second=0, microsecond=0)
    counted_until = RollupMark.objects.filter(pk=1).values_list("finished_until", flat=True).first()
    return {
        account
        for (account,) in sql.rows(
            f"""
            WITH counted AS (
                SELECT account_id, action, done FROM {DAYS} WHERE day = %(day)s
                UNION ALL
                SELECT telegram_account_id, action, count(*) FROM {sql.TASKS}
                WHERE status = {sql.DONE} AND finished_at >= %(tail)s
                  AND telegram_account_id IS NOT NULL
                GROUP BY 1, 2
            ), today AS (
                SELECT c.account_id, c.action, sum(c.done) AS done,
                       CASE WHEN a.tier = ANY(%(tiers)s) THEN a.tier ELSE %(default)s END AS tier
                FROM counted AS c JOIN {sql.ACCOUNTS} AS a ON a.id = c.account_id
                WHERE a.is_active
                GROUP BY c.account_id, c.action, a.tier
            ), caps AS (
                SELECT * FROM jsonb_to_recordset(%(caps)s::jsonb)
                    AS c(tier varchar, action varchar, cap int)
            ), account_caps AS (
                SELECT * FROM jsonb_to_recordset(%(account_caps)s::jsonb)
                    AS c(tier varchar, cap int)
            )
            SELECT t.account_id FROM today AS t
            JOIN caps AS c ON c.tier = t.tier AND c.action = t.action
            WHERE t.done >= c.cap
            UNION
            SELECT t.account_id FROM today AS t JOIN account_caps AS c ON c.tier = t.tier
            GROUP BY t.account_id, c.cap HAVING sum(t.done) >= c.cap
            """,  # noqa: S608
            {
                "tiers": tiers,
                "default": DEFAULT_TIER,
                "day": local_day(now).date(),
                "tail": max(midnight, counted_until or midnight),
                "caps": json.dumps(caps),
                "account_caps": json.dumps(account_caps),
            },
        )
    }
