"""Read-only queries for the admin and the dashboard: what an order's memberships and passes
look like, what an account's limits look like right now. No writes here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import connection
from django.db.models import Count, Q, Sum

from telegram_tasks import claims
from telegram_tasks.conf import app_settings
from telegram_tasks.models import (
    LIVE_STATUSES,
    Membership,
    OneShot,
    OrderPassStats,
    TaskStatus,
    TelegramAccount,
    TelegramTask,
)


@dataclass(frozen=True)
class MembershipCounts:
    subscribed: int  # open
    unsubscribed: int  # closed
    due: int  # open, and their time is up


def order_memberships(order_id: int, *, now: datetime) -> MembershipCounts:
    """How an order's subscriptions stand (one aggregate over its memberships)."""
    counts = Membership.objects.filter(order_id=order_id).aggregate(
        subscribed=Count("pk", filter=Q(state=Membership.State.OPEN)),
        unsubscribed=Count("pk", filter=Q(state=Membership.State.CLOSED)),
        due=Count("pk", filter=Q(state=Membership.State.OPEN, due_at__lte=now)),
    )
    return MembershipCounts(**counts)


def order_units_in_flight(order_id: int) -> int:
    """Units of the order's unfinished tasks (its live tasks' index)."""
    return (
        TelegramTask.objects.filter(
            order_id=order_id, status__in=LIVE_STATUSES, membership__isnull=True
        ).aggregate(units=Sum("per_call"))["units"]
        or 0
    )


def order_pass_stats(order_id: int) -> OrderPassStats | None:
    return OrderPassStats.objects.filter(order_id=order_id).first()


@dataclass(frozen=True)
class ActionLimits:
    action: str
    today: int
    daily_cap: int | None
    cooldown: int  # seconds, the policy
    cooldown_left: float  # seconds
    lock_token: str | None
    lock_until: datetime | None


@dataclass(frozen=True)
class AccountLimits:
    """An account as RESERVE sees it now, beside its tier's limits."""

    tier: str
    hold_left: float
    account_cooldown: int
    account_cooldown_left: float
    today: int
    account_daily_cap: int | None
    channels: int
    max_channels: int | None
    channels_too_much: bool
    actions: list[ActionLimits]


def account_limits(accounts: list[TelegramAccount], *, now: datetime) -> dict[int, AccountLimits]:
    """Limits and what is left of them for these accounts: Redis read in one pipeline."""
    states = claims.account_states([a.pk for a in accounts], now=now)

    def left(until: datetime | None) -> float:
        return max(0.0, (until - now).total_seconds()) if until else 0.0

    out = {}
    for account in accounts:
        state = states[account.pk]
        tier = app_settings.tier(account.tier)
        actions = []
        for action, a in state.actions.items():
            policy = app_settings.policy(action, account.tier)
            actions.append(
                ActionLimits(
                    action=action,
                    today=a.today,
                    daily_cap=policy.daily_cap,
                    cooldown=policy.cooldown,
                    cooldown_left=left(a.cooldown_until),
                    lock_token=a.lock_token,
                    lock_until=a.lock_until,
                )
            )
        out[account.pk] = AccountLimits(
            tier=account.tier,
            hold_left=left(state.hold_until),
            account_cooldown=tier.account_cooldown,
            account_cooldown_left=left(state.account_cooldown_until),
            today=state.today,
            account_daily_cap=tier.account_daily_cap,
            channels=state.channels,
            max_channels=tier.max_channels,
            channels_too_much=state.channels_too_much,
            actions=actions,
        )
    return out


@dataclass(frozen=True)
class Handout:
    """One hand-out of a task, as ``TelegramTask.handouts`` keeps it (``services.handouts``)."""

    number: int  # 1 for the first kept
    lease_id: str
    leased_at: datetime
    end: str  # how it ended (``handouts.ENDS``); "" while it runs
    ended_at: datetime | None
    pending_at: datetime | None
    error: str


def task_handouts(task: TelegramTask) -> list[Handout]:
    """The task's hand-outs, oldest first (none for a task never handed out, or made before
    the history was kept)."""

    def moment(value: object) -> datetime | None:
        return datetime.fromtimestamp(float(value), tz=UTC) if value is not None else None

    out = []
    for n, entry in enumerate(task.handouts or [], start=1):
        if not isinstance(entry, dict) or entry.get("at") is None:
            continue
        out.append(
            Handout(
                number=n,
                lease_id=str(entry.get("lease") or ""),
                leased_at=moment(entry["at"]),
                end=str(entry.get("end") or ""),
                ended_at=moment(entry.get("ended")),
                pending_at=moment(entry.get("pending")),
                error=str(entry.get("error") or ""),
            )
        )
    return out


# The most failed tasks counted per order (the order list shows "1000+" past it).
FAILED_COUNT_CAP = 1000


def orders_failed_tasks(order_ids: Sequence[int]) -> dict[int, int]:
    """How many tasks of each order failed, at most FAILED_COUNT_CAP each: one statement for a
    page of orders, each count an index range of the order's failed tasks."""
    if not order_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT o.id, (SELECT count(*) FROM (SELECT 1 FROM {TelegramTask._meta.db_table} "  # noqa: S608
            "AS t WHERE t.order_id = o.id AND t.status = %s LIMIT %s) AS f) "
            "FROM unnest(%s::bigint[]) AS o(id)",
            [TaskStatus.FAILED.value, FAILED_COUNT_CAP, list(order_ids)],
        )
        return {pk: n for pk, n in cursor.fetchall() if n}


def eligible_accounts(*, action: str, link_hash: str, post_id: int | None) -> int | None:
    """How many active accounts could ever do ``action`` on this target: those that have not
    done a one-shot action on it yet, have not joined the channel (a subscribe), or are in it
    (an unsubscribe). None: the action sets no such bound."""
    policy = app_settings.policy(action)
    active = TelegramAccount.objects.filter(is_active=True)
    if policy.one_shot:
        done = OneShot.objects.filter(
            action=action, link_hash=link_hash, post_id=post_id, account__is_active=True
        )
        return active.count() - done.count()
    inside = Membership.objects.filter(
        link_hash=link_hash, state=Membership.State.OPEN, account__is_active=True
    )
    if policy.gate == "subscribe":
        return active.count() - inside.count()
    if policy.gate == "unsubscribe":
        return inside.count()
    return None
