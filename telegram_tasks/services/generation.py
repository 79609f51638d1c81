"""The generation pass: due orders become tasks, each with an account RESERVEd for it.

Everything that generates tasks (Celery beat, ``manage.py generate_telegram_tasks``, tests, the
benchmark) calls ``tasks_generate``.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import zip_longest

from django.db import connection, transaction

from telegram_tasks import claims
from telegram_tasks.claims import Claim, Demand, Refusal, Target
from telegram_tasks.conf import app_settings
from telegram_tasks.logs import log_fields
from telegram_tasks.models import TelegramTask, new_ulid
from telegram_tasks.params import InvalidParams, TaskParams, task_params
from telegram_tasks.services import available, orders, settle, sql
from telegram_tasks.services.due_orders import DueOrder, OrderKey, due_orders, order_slots
from telegram_tasks.services.liveness import records_pass
from telegram_tasks.services.memberships import memberships_unsubscribe_due
from telegram_tasks.services.pass_stats import OrderStats, record_pass_stats
from telegram_tasks.services.providers import push_urls, routing
from telegram_tasks.services.rebuild import claims_restore_if_lost
from telegram_tasks.services.rollup import record_pass
from telegram_tasks.services.turns import take_turns

logger = logging.getLogger(__name__)

PAGE_SIZE = 1000
# interval 0 orders are due again right after this pass, never within it.
EPSILON = timedelta(microseconds=1)


@dataclass
class GenerationSummary:
    examined: int = 0
    created: int = 0
    starved_orders: int = 0
    starved_slots: int = 0
    unsubscribes: int = 0  # automatic unsubscribes of memberships whose time was up
    # Orders (and memberships) whose own data made their part of the pass fail: skipped, the
    # rest of the pass served (see ``_serve``).
    failed: int = 0
    seconds: float = 0.0
    refusals: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def line(self) -> str:
        refusals = ",".join(f"{k}:{v}" for k, v in sorted(self.refusals.items())) or "-"
        failed = f" failed={self.failed}" if self.failed else ""
        return (
            f"examined={self.examined} created={self.created} starved={self.starved_orders} "
            f"starved_slots={self.starved_slots} unsubscribes={self.unsubscribes}{failed} "
            f"refusals={refusals} seconds={self.seconds:.3f}"
        )

    def add(self, part: GenerationSummary) -> None:
        """What one part of the pass (a page, or a piece of one) did."""
        self.created += part.created
        self.starved_orders += part.starved_orders
        self.starved_slots += part.starved_slots
        self.failed += part.failed
        for reason, n in part.refusals.items():
            self.refusals[reason] += n


@dataclass
class _Slot:
    order: DueOrder
    at: datetime
    units: int  # what this task delivers: per_call, or the rest for the order's last task
    params: TaskParams  # how the order's tasks take its params
    token: str = field(default_factory=new_ulid)


def _relax_commit() -> None:
    """A pass's commit need not wait for the WAL flush: if PostgreSQL crashes right after, the
    lost tasks' reservations lapse by their deadline (``settle.queued_lock_until``) and their
    orders, whose
    next_run_at rolled back with them, are generated again. Nothing is counted twice."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit = off")


@records_pass("generation")
def tasks_generate(
    *, limit: int, now: datetime, clock: Callable[[], float] = time.monotonic
) -> GenerationSummary:
    """One generation pass: at most ``limit`` tasks created over the orders due at ``now``.

    The budget counts tasks created, never slots planned: an order no account can take costs
    the pass nothing but its scan, stops no order behind it, and is pushed behind the orders
    waiting longer than it. Each page schedules from the moment it starts (``now`` plus the
    time the pass has run, by ``clock``), so a long pass never creates a task whose
    reservation window has already passed.
    """
    started = clock()
    claims_restore_if_lost(now=now)
    summary = GenerationSummary()
    # Subscriptions whose time is up come first, but never take more than half the pass.
    unsubscribed = memberships_unsubscribe_due(now=now, most=limit // 2 if limit > 1 else limit)
    summary.unsubscribes = unsubscribed.created
    summary.created += unsubscribed.created
    summary.failed += unsubscribed.failed
    after: OrderKey | None = None
    exhausted_actions: set[str] = set()
    # The providers that take pushes: a push order's tasks go to their accounts (any
    # provider's while none does: they wait until push is set up, as before providers).
    pushed = frozenset(push_urls())
    while summary.created < limit:
        # Whole seconds: a pass shorter than a second schedules at exactly ``now``.
        page_now = now + timedelta(seconds=int(max(0.0, clock() - started)))
        with transaction.atomic():
            _relax_commit()
            page = due_orders(now, after, PAGE_SIZE)
            if not page:
                break
            after = (page[-1].priority, page[-1].next_run_at, page[-1].pk)
            summary.examined += len(page)
            _serve(page, limit, page_now, summary, exhausted_actions, pushed)
        if len(page) < PAGE_SIZE:
            break
    summary.seconds = clock() - started
    record_pass(summary, started_at=now)
    logger.info("generation pass: %s", summary.line(), extra=log_fields("generation_pass", summary))
    return summary


def fair_order(slots: list[_Slot]) -> list[_Slot]:
    """Higher priority first; within a priority, round-robin over orders: every order's first
    slot, then every order's second, …, so when accounts run short each competing order gets
    its share instead of the first ones taking all."""
    by_priority: dict[int, dict[int, list[_Slot]]] = defaultdict(lambda: defaultdict(list))
    for slot in slots:
        by_priority[slot.order.priority][slot.order.pk].append(slot)
    fair = []
    for priority in sorted(by_priority, reverse=True):
        rounds = zip_longest(*by_priority[priority].values())
        fair += [slot for round_ in rounds for slot in round_ if slot is not None]
    return fair


def _serve(
    page: list[DueOrder],
    limit: int,
    now: datetime,
    summary: GenerationSummary,
    exhausted_actions: set[str],
    pushed: frozenset[int],
) -> None:
    """Generate for the page's (locked) orders. If one order's data makes it fail, that order
    is logged, counted and skipped, and the others are served (``sql.isolating_bad_rows``)."""

    def run(orders_: list[DueOrder]) -> None:
        if summary.created >= limit:
            return
        part = GenerationSummary()
        _generate_page(orders_, limit - summary.created, now, part, exhausted_actions, pushed)
        summary.add(part)

    def skip(order: DueOrder) -> None:
        summary.failed += 1
        logger.exception("generation: order %s skipped, its data fails the pass", order.pk)

    sql.isolating_bad_rows(page, run, skip)


def _generate_page(
    page: list[DueOrder],
    budget: int,
    now: datetime,
    summary: GenerationSummary,
    exhausted_actions: set[str],
    pushed: frozenset[int],
) -> None:
    # Counted after the rows are locked, in a statement of its own: every task of an order is
    # created under its row lock, so this count cannot miss a concurrent pass's tasks.
    in_flight = dict(
        sql.rows(
            f"SELECT order_id, SUM(per_call) FROM {sql.TASKS} "  # noqa: S608
            f"WHERE order_id = ANY(%s) AND status IN {sql.LIVE} AND {sql.ORDER_UNITS} "
            "GROUP BY order_id",
            [[o.pk for o in page]],
        )
    )
    slots_by_action: dict[str, list[_Slot]] = defaultdict(list)
    stats: dict[int, OrderStats] = {}
    starved_orders: set[int] = set()
    for order in page:
        open_units = order.remains - in_flight.get(order.pk, 0)
        if open_units <= 0 or order.action not in app_settings.ACTIONS:
            continue
        try:
            params = task_params(order.action, json.loads(order.params))
        except InvalidParams:  # written around Order.clean and save: no task, and stats say why
            starved_orders.add(order.pk)
            stats[order.pk] = OrderStats(starved=1, refusals=Counter(invalid_params=1))
            summary.refusals["invalid_params"] += 1
            continue
        times = order_slots(
            next_run_at=order.next_run_at,
            interval=order.interval_seconds,
            open_units=open_units,
            per_call=order.per_call,
            now=now,
        )
        for i, at in enumerate(times):
            # Never deliver more than the order still needs: the last task may carry less.
            units = min(order.per_call, open_units - i * order.per_call)
            slots_by_action[order.action].append(_Slot(order, at, units, params))

    lock_for = timedelta(seconds=app_settings.RESERVE_LOCK_SECONDS)
    served: list[tuple[_Slot, claims.AccountRef]] = []
    served_orders: set[int] = set()
    try:
        for action, planned in slots_by_action.items():
            if budget - len(served) <= 0:
                break
            slots = fair_order(planned)
            if action in exhausted_actions:
                starved_orders.update(s.order.pk for s in slots)
                summary.starved_slots += len(slots)
                for s in slots:
                    stats.setdefault(s.order.pk, OrderStats()).starved += 1
                continue
            demands = [
                Demand(
                    Target(s.order.link_hash, s.order.post_id),
                    s.token,
                    settle.queued_lock_until(s.at + lock_for),
                    routing(s.order.providers, s.order.execution_mode, pushed),
                )
                for s in slots
            ]
            routed = any(d.providers is not None for d in demands)
            results = claims.select_accounts(
                action=action, demands=demands, now=now, most=budget - len(served)
            )
            for slot, result in zip(slots, results, strict=True):
                if result.skipped:
                    continue  # the budget ran out before this slot's turn: not tried
                if result.account is None and not result.tally and routed:
                    # No account of the providers it may go to was there to try.
                    result.tally["no_provider"] += 1
                order_stats = stats.setdefault(slot.order.pk, OrderStats())
                for reason, count in result.tally.items():
                    summary.refusals[reason] += count
                    order_stats.refusals[reason] += count
                if result.account is not None:
                    served.append((slot, result.account))
                    served_orders.add(slot.order.pk)
                    order_stats.created += 1
                else:
                    summary.starved_slots += 1
                    starved_orders.add(slot.order.pk)
                    order_stats.starved += 1
            if (
                results.scanned_all
                and not routed
                and all(r.account is None and not r.skipped for r in results)
                and all(all(Refusal(reason).account_wide for reason in r.tally) for r in results)
            ):
                # Every account is out for this action whatever the target: later pages of
                # this pass would only scan them again.
                exhausted_actions.add(action)
        starved = starved_orders - served_orders
        _store(served, [o for o in page if o.pk in starved], now)
        # Only orders this pass found short of accounts, and those the last recorded pass did
        # (now fine again): a healthy order costs the pass no write.
        troubled_before = {o.pk for o in page if o.troubled}
        record_pass_stats(
            {pk: s for pk, s in stats.items() if s.starved or pk in troubled_before},
            now=now,
        )
    except BaseException:
        # The tasks were not stored: give their reservations back before the error goes on.
        # (A crash of the process itself leaves them to lapse by their deadline.)
        claims.rollback_many(
            [
                Claim(
                    acc.id,
                    s.order.action,
                    Target(s.order.link_hash, s.order.post_id),
                    s.token,
                    acc.tier,
                )
                for s, acc in served
            ]
        )
        raise
    summary.created += len(served)
    summary.starved_orders += len(starved)


def _store(
    served: list[tuple[_Slot, claims.AccountRef]], starved: list[DueOrder], now: datetime
) -> None:
    """Insert the page's tasks with COPY and advance its orders with one UPDATE: a served order
    to its next slot, a starved one behind the orders waiting longer than it."""
    if not served and not starved:
        return
    lock_for = timedelta(seconds=app_settings.RESERVE_LOCK_SECONDS)
    queued = TelegramTask.Status.QUEUED.value
    last_slot: dict[int, datetime] = {}
    by_pk: dict[int, DueOrder] = {}
    # The payload snapshot, as JSON text put together from each order's part and each
    # account's part (encoded once each, not once per task: a page makes a thousand).
    order_json: dict[int, str] = {}
    params_json: dict[int, str] = {}  # an order's params when they do not rotate
    # A mix of emoji is taken in turn, over every pass: each task's turn.
    turns = take_turns((s.order.pk, s.token) for s, _ in served if s.params.rotates)
    rows = []
    for slot, account in served:
        order = slot.order
        if order.pk not in order_json:
            by_pk[order.pk] = order
            order_json[order.pk] = json.dumps(
                {"order_id": order.pk, "action": order.action, "link": order.link,
                 "post_id": order.post_id, "link_hash": order.link_hash}
            )[:-1]  # fmt: skip
            params_json[order.pk] = json.dumps(slot.params.of_turn(0))
        last_slot[order.pk] = max(last_slot.get(order.pk, slot.at), slot.at)
        snapshot = json.dumps(
            {"id": account.id, "provider_account_id": account.provider_account_id,
             "phone": account.phone, "tier": account.tier}
        )  # fmt: skip
        turn = turns.get(slot.token)
        params = params_json[order.pk] if turn is None else json.dumps(slot.params.of_turn(turn))
        payload = (
            f'{order_json[order.pk]}, "per_call": {slot.units}, "params": {params}, '
            f'"account": {snapshot}}}'
        )
        rows.append(
            (
                slot.token, order.pk, order.action, order.link_hash, account.id,
                account.provider_account_id, queued, slot.units, slot.at,
                slot.at + lock_for, 0, payload, "", "", now, now,
                order.execution_mode, account.provider_id,
            )
        )  # fmt: skip
    updates = []
    started = orders.started_statuses()
    for pk, order in by_pk.items():
        interval = timedelta(seconds=order.interval_seconds)
        updates.append(
            {
                "id": pk,
                "next_run_at": (
                    last_slot[pk] + interval if interval else now + EPSILON
                ).isoformat(),
                "status": started.get(order.status, order.status),
            }
        )
    updates += [
        {"id": o.pk, "next_run_at": (now + EPSILON).isoformat(), "status": o.status}
        for o in starved
    ]
    sql.copy_tasks(rows)
    orders.orders_advance(updates, now=now)
    available.announce(
        (slot.at, account.provider_id, account.provider_account_id, slot.order.execution_mode)
        for slot, account in served
    )
