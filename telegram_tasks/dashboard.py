"""What the operator's dashboard and the metrics show, each from a cheap query: the rollup
(``activity``: never the ledger's history), the live tasks' own indexes, the last passes, the
orders the last passes found short, and a snapshot of the accounts that housekeeping refreshes.

Every count here is one the admin's lists can show filtered (the page links each to its list):
a queue per action and mode, leases running or run out, pending tasks, done and failed in a
window, held, cooling or capped accounts. A breakdown by another key (a provider) adds that key
to the grouping of ``queues`` and to the rollup's rows, and a filter of the same name to the
lists."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import QuerySet
from redis.exceptions import RedisError

from telegram_tasks import claims
from telegram_tasks.activity import Activity, activity, default_range
from telegram_tasks.conf import app_settings, get_order_model
from telegram_tasks.models import ExecutionMode, GenerationPass, OrderPassStats
from telegram_tasks.services import sql
from telegram_tasks.services.farm import AccountCounts, account_counts
from telegram_tasks.services.generation import (
    STARVED_BUCKET_SECONDS,
    STARVED_BUCKETS,
    starved_bucket,
)
from telegram_tasks.services.liveness import pass_liveness
from telegram_tasks.services.orders import active_statuses

PASSES = 120
STARVED = 10
# An order the passes have not found short of accounts for this long is not shown as starved:
# a completed, canceled or paused order (or one whose every unit is in flight) is no longer
# looked at, so its last record would otherwise stay forever.
STARVED_WINDOW = timedelta(minutes=10)


@dataclass
class Queue:
    action: str
    mode: str
    queued: int  # queued tasks, due or not
    due: int  # of them available now
    oldest_seconds: float | None  # the oldest due one has waited this long


@dataclass
class Dashboard:
    now: datetime
    activity: Activity  # done and failed over the chosen range
    queues: list[Queue] = field(default_factory=list)
    leases_live: int = 0
    leases_expired: int = 0
    pending: int = 0
    passes: list[dict[str, Any]] = field(default_factory=list)  # oldest first
    starved_orders: list[dict[str, Any]] = field(default_factory=list)
    accounts: AccountCounts = field(default_factory=AccountCounts)
    circuit: str = "closed"
    # The periodic passes: when each last succeeded, and whether that is too long ago.
    liveness: list[PassState] = field(default_factory=list)
    # Why push work is not moving, when it is not: not set up, or no dispatcher running.
    push_problem: str = ""


@dataclass
class PassState:
    name: str
    period_seconds: int
    age_seconds: float | None  # since the last success; None: never succeeded
    late: bool  # no success for LATE_PERIODS periods
    last_error: str  # of the last run ("" when it succeeded)
    last_seconds: float | None

    @property
    def ago(self) -> str:
        """The last success as an operator reads it: "12 s ago", "5 min ago", "never"."""
        if self.age_seconds is None:
            return "never"
        age = int(self.age_seconds)
        for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
            if age >= 2 * size:
                return f"{age // size} {unit} ago"
        return f"{age} s ago"


def dashboard(*, now: datetime, range_key: str | None = None) -> Dashboard:
    """Everything the page shows; ``range_key`` (``activity.RANGES``): the range of the charts,
    by default the one that shows the recent work (``activity.default_range``)."""
    board = Dashboard(now=now, activity=activity(range_key=range_key or default_range(now=now),
                                                 now=now))  # fmt: skip
    board.queues = queues(now=now)
    _leases(board, now)
    _passes(board)
    board.starved_orders = starved_orders(now=now)
    board.accounts = account_counts(now=now)
    board.circuit = circuit(now=now)
    board.liveness = liveness(now=now)
    board.push_problem = push_problem(board, now=now)
    return board


def liveness(*, now: datetime) -> list[PassState]:
    """Each periodic pass: how long since it last succeeded (red past three periods)."""
    return [
        PassState(
            name=p.name,
            period_seconds=p.period_seconds,
            age_seconds=p.age(now),
            late=p.late(now),
            last_error=p.last_error,
            last_seconds=p.last_seconds,
        )
        for p in pass_liveness(now=now)
    ]


def push_problem(board: Dashboard, *, now: datetime) -> str:
    """Why push tasks wait, if they do and something is wrong: push is not set up, or no
    dispatch pass ran lately (no beat, no worker, or beat cannot send it)."""
    waiting = sum(q.queued for q in board.queues if q.mode == ExecutionMode.PUSH)
    if not waiting:
        return ""
    from telegram_tasks.push import check_push_url

    problem = check_push_url(app_settings.PROVIDER_PUSH_URL)
    if problem:
        return f"push is not set up: {problem}"
    state = next((p for p in board.liveness if p.name == "push"), None)
    if state is not None and state.late:
        return (
            "dispatcher not running: push tasks wait and no push pass ran lately "
            "(is beat running, and a Celery worker?)"
        )
    return ""


def queues(*, now: datetime) -> list[Queue]:
    """Queued tasks per action and mode: how many, how many due, the oldest due one's age
    (one aggregate over the queued tasks' own index)."""
    rows = sql.rows(
        f"""
        SELECT action, execution_mode, count(*),
               count(*) FILTER (WHERE available_at <= %(now)s),
               min(available_at) FILTER (WHERE available_at <= %(now)s)
        FROM {sql.TASKS} WHERE status = {sql.QUEUED}
        GROUP BY 1, 2 ORDER BY 1, 2
        """,  # noqa: S608
        {"now": now},
    )
    return [
        Queue(action, mode, queued, due, (now - oldest).total_seconds() if oldest else None)
        for action, mode, queued, due, oldest in rows
    ]


def _leases(board: Dashboard, now: datetime) -> None:
    [(live, expired)] = sql.rows(
        f"SELECT count(*) FILTER (WHERE leased_until > %(now)s), "  # noqa: S608
        f"count(*) FILTER (WHERE leased_until <= %(now)s) "
        f"FROM {sql.TASKS} WHERE status = {sql.LEASED}",
        {"now": now},
    )
    [(pending,)] = sql.rows(
        f"SELECT count(*) FROM {sql.TASKS} WHERE status = {sql.PENDING}"  # noqa: S608
    )
    board.leases_live, board.leases_expired, board.pending = live, expired, pending


def _passes(board: Dashboard) -> None:
    zone = ZoneInfo(settings.TIME_ZONE)
    recent = list(
        GenerationPass.objects.order_by("-started_at").values(
            "started_at", "created", "starved_slots", "starved_orders", "seconds", "unsubscribes"
        )[:PASSES]
    )
    for p in reversed(recent):
        board.passes.append({**p, "label": p["started_at"].astimezone(zone).strftime("%H:%M:%S")})


def short_of_accounts(*, now: datetime) -> QuerySet[OrderPassStats]:
    """The pass records of orders short of accounts now: found so by a recent pass, and still
    able to get tasks (active, not paused)."""
    return OrderPassStats.objects.filter(
        troubled=True,
        last_pass_at__gte=now - STARVED_WINDOW,
        order__status__in=active_statuses(),
        order__paused_at__isnull=True,
    )


def starved_orders(*, now: datetime) -> list[dict[str, Any]]:
    """The orders the last passes found short of accounts, most starved in the last pass first,
    with why, and their slots starved in the last hour against the hour before (the trend),
    per ten minutes over two hours (oldest first)."""
    Order = get_order_model()
    stats = list(
        short_of_accounts(now=now)
        .order_by("-starved_slots", "-starved_total")
        .values(
            "order_id", "starved_slots", "starved_total", "refusals", "last_pass_at",
            "starved_recent",
        )[:STARVED]
    )  # fmt: skip
    orders = Order.objects.in_bulk([s["order_id"] for s in stats])
    out = []
    for s in stats:
        order = orders.get(s["order_id"])
        if order is None:
            continue
        refusals = sorted((s["refusals"] or {}).items(), key=lambda kv: -kv[1])
        tens = starved_per_ten_minutes(s["starved_recent"], now=now)
        half = len(tens) // 2
        out.append(
            {**s, "order": order, "refusals": refusals, "per_ten_minutes": tens,
             "last_hour": sum(tens[half:]), "hour_before": sum(tens[:half])}
        )  # fmt: skip
    return out


def starved_per_ten_minutes(recent: dict[str, int] | None, *, now: datetime) -> list[int]:
    """Slots starved in each of the last STARVED_BUCKETS ten minutes, oldest first (the current
    ten minutes last)."""
    current = starved_bucket(now)
    return [
        int((recent or {}).get(str(current - STARVED_BUCKET_SECONDS * back), 0))
        for back in range(STARVED_BUCKETS - 1, -1, -1)
    ]


def circuit(*, now: datetime) -> str:
    """The push dispatchers' circuit breaker, as they share it ("unknown" without Redis)."""
    from telegram_tasks.services.push import BREAKER

    try:
        state = claims.breaker(BREAKER, "peek", now=now)
    except RedisError:
        return "unknown (Redis unavailable)"
    if state.until and state.state != "closed":
        return (
            f"{state.label} until {state.until.astimezone(ZoneInfo(settings.TIME_ZONE)):%H:%M:%S}"
        )
    return state.label
