"""What the operator's dashboard and the metrics show, each from a cheap query: the rollup
(``activity``: never the ledger's history), the live tasks' own indexes, the last passes, the
orders the last passes found short, and a snapshot of the accounts that housekeeping refreshes.

Every count here is one the admin's lists can show filtered (the page links each to its list):
a queue per action and mode, leases running or run out, pending tasks, done and failed in a
window, held, cooling or capped accounts. A breakdown by another key (a provider) adds that key
to the grouping of ``queues`` and to the rollup's rows, and a filter of the same name to the
lists."""

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
from telegram_tasks.conf import get_order_model
from telegram_tasks.models import ExecutionMode, GenerationPass, OrderPassStats, Provider
from telegram_tasks.monitoring.activity import Activity, activity, default_range
from telegram_tasks.services import sql
from telegram_tasks.services.dispatch import breaker_name, push_targets, target_problem
from telegram_tasks.services.farm import STATES, AccountCounts, account_counts
from telegram_tasks.services.liveness import pass_liveness
from telegram_tasks.services.orders import active_statuses
from telegram_tasks.services.pass_stats import (
    STARVED_BUCKET_SECONDS,
    STARVED_BUCKETS,
    starved_bucket,
)
from telegram_tasks.services.providers import push_urls

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
class ProviderRow:
    """One provider fleet as the dashboard shows it."""

    id: int
    name: str
    enabled: bool
    is_default: bool
    last_seen_at: datetime | None
    accounts: dict[str, int]  # by state (the accounts snapshot)
    tasks: dict[str, int]  # live ones by status ("queued", "leased", "pending", "push_queued")
    circuit: str  # its push circuit
    pushes: bool  # it takes pushes (a push URL)


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
    providers: list[ProviderRow] = field(default_factory=list)


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
    _passes(board)
    board.starved_orders = starved_orders(now=now)
    board.accounts = account_counts(now=now)
    board.providers = providers(board.accounts, now=now)
    _leases(board)
    board.circuit = circuit(board.providers)
    board.liveness = liveness(now=now)
    board.push_problem = push_problem(board, now=now)
    return board


def providers(accounts: AccountCounts, *, now: datetime) -> list[ProviderRow]:
    """Each provider: its accounts by state (the snapshot), its live tasks (one aggregate over
    the live tasks: by status, push tasks queued, leases run out), its push circuit (Redis:
    one call per provider)."""
    live: dict[int, dict[str, int]] = defaultdict(dict)
    for provider, status, mode, n, expired in sql.rows(
        f"SELECT provider_id, status, execution_mode, count(*), "  # noqa: S608
        f"count(*) FILTER (WHERE status = {sql.LEASED} AND leased_until <= %s) "
        f"FROM {sql.TASKS} WHERE status IN {sql.LIVE} GROUP BY 1, 2, 3",
        [now],
    ):
        mine = live[provider]
        mine[status] = mine.get(status, 0) + n
        mine["expired"] = mine.get("expired", 0) + expired
        if status == sql.S.QUEUED and mode == ExecutionMode.PUSH:
            mine["push_queued"] = n
    pushed = set(push_urls())
    rows = []
    for pk, name, enabled, is_default, seen in Provider.objects.values_list(
        "pk", "name", "enabled", "is_default", "last_seen_at"
    ):
        try:
            state = _label(claims.breaker(breaker_name(pk), "peek", now=now))
        except RedisError:
            state = "unknown (Redis unavailable)"
        counts = accounts.providers.get(str(pk)) or dict.fromkeys(STATES, 0)
        rows.append(
            ProviderRow(pk, name, enabled, is_default, seen, counts, live[pk], state, pk in pushed)
        )
    return rows


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
    """Why push tasks wait, if they do and something is wrong: push is not set up for their
    provider, or no dispatch pass ran lately (no beat, no worker, or beat cannot send it)."""
    waiting = {p.id: p for p in board.providers if p.tasks.get("push_queued")}
    if not waiting:
        return ""
    targets = {t.provider.id: t for t in push_targets()}
    problems = []
    for pk, row in sorted(waiting.items()):
        target = targets.get(pk)
        problem = (
            target_problem(target)
            if target is not None
            else f"provider {row.name}: "
            + ("it is disabled" if not row.enabled else "no push URL is set")
        )
        if problem:
            problems.append(problem)
    if problems:
        return "push is not set up: " + "; ".join(problems)
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


def _leases(board: Dashboard) -> None:
    """Hand-outs in all: the providers' live tasks added up."""
    tasks = [p.tasks for p in board.providers]
    expired = sum(t.get("expired", 0) for t in tasks)
    board.leases_live = sum(t.get(sql.S.LEASED, 0) for t in tasks) - expired
    board.leases_expired = expired
    board.pending = sum(t.get(sql.S.PENDING, 0) for t in tasks)


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


def circuit(rows: list[ProviderRow]) -> str:
    """The push circuits in a word: "closed" when every provider's that takes pushes is (every
    provider's when none does), else each one that is not ("unknown" without Redis)."""
    states = [(r.name, r.circuit) for r in rows if r.pushes] or [(r.name, r.circuit) for r in rows]
    if not states:
        return "closed"
    if len(states) == 1:
        return states[0][1]
    troubled = [f"{name}: {state}" for name, state in states if state != "closed"]
    return "; ".join(troubled) or "closed"


def _label(state: claims.Breaker) -> str:
    if state.until and state.state != "closed":
        return (
            f"{state.label} until {state.until.astimezone(ZoneInfo(settings.TIME_ZONE)):%H:%M:%S}"
        )
    return state.label
