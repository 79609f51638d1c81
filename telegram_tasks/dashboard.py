"""What the operator's dashboard and the metrics show, each from a cheap query: the hourly
rollup (never the ledger's history), the live tasks' own indexes, the last passes, the orders
the last passes found short, and a snapshot of the accounts that housekeeping refreshes."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import QuerySet
from redis.exceptions import RedisError

from telegram_tasks import claims
from telegram_tasks.conf import app_settings, get_order_model
from telegram_tasks.models import ExecutionMode, GenerationPass, OrderPassStats, TaskHour
from telegram_tasks.services import sql
from telegram_tasks.services.farm import AccountCounts, account_counts
from telegram_tasks.services.liveness import pass_liveness
from telegram_tasks.services.orders import active_statuses

HOURS = 48
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
    hours: list[str] = field(default_factory=list)  # labels, local time
    done_by_action: dict[str, list[int]] = field(default_factory=dict)
    failed_by_action: dict[str, list[int]] = field(default_factory=dict)
    failed_by_reason: list[tuple[str, int]] = field(default_factory=list)
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


def dashboard(*, now: datetime) -> Dashboard:
    board = Dashboard(now=now)
    _history(board, now)
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


def _history(board: Dashboard, now: datetime) -> None:
    """Done and failed per action per hour, the last HOURS hours; failures by reason."""
    zone = ZoneInfo(settings.TIME_ZONE)
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=HOURS - 1)
    hours = [start + timedelta(hours=i) for i in range(HOURS)]
    board.hours = [h.astimezone(zone).strftime("%d %H:00") for h in hours]
    index = {h: i for i, h in enumerate(hours)}
    done: dict[str, list[int]] = defaultdict(lambda: [0] * HOURS)
    failed: dict[str, list[int]] = defaultdict(lambda: [0] * HOURS)
    reasons: dict[str, int] = defaultdict(int)
    for hour, action, outcome, reason, count in TaskHour.objects.filter(
        hour__gte=start, outcome__in=[TaskHour.Outcome.DONE, TaskHour.Outcome.FAILED]
    ).values_list("hour", "action", "outcome", "reason", "count"):
        i = index.get(hour)
        if i is None:
            continue
        if outcome == TaskHour.Outcome.DONE:
            done[action][i] += count
        else:
            failed[action][i] += count
            reasons[reason or "unknown"] += count
    for action in app_settings.ACTIONS:
        board.done_by_action[action] = done[action]
        board.failed_by_action[action] = failed[action]
    board.failed_by_reason = sorted(reasons.items(), key=lambda kv: -kv[1])


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
    """The orders the last passes found short of accounts, most starved first, with why."""
    Order = get_order_model()
    stats = list(
        short_of_accounts(now=now)
        .order_by("-starved_total")
        .values("order_id", "starved_slots", "starved_total", "refusals", "last_pass_at")[:STARVED]
    )
    orders = Order.objects.in_bulk([s["order_id"] for s in stats])
    out = []
    for s in stats:
        order = orders.get(s["order_id"])
        if order is None:
            continue
        refusals = sorted((s["refusals"] or {}).items(), key=lambda kv: -kv[1])
        out.append({**s, "order": order, "refusals": refusals})
    return out


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
