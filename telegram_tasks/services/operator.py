"""What an operator (the admin, the orders app) does to tasks and orders: fail, requeue, and
cancel, pause, resume or stop orders. Each ends or re-arms tasks through the kernel
(``settle``) and writes orders through ``orders``.

Stopping an order happens in two steps, each committed on its own: first the order's state
(waiting for a generation pass that holds the row to commit), then its tasks. Once the first
step has committed no pass creates a task for the order and no pull hands one out (pulls check
the order), so the second step ends every task the order will ever have; and neither step
holds an order lock while it waits for a task lock, so none deadlocks a report (which locks
tasks, then orders)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.db import transaction

from telegram_tasks import signals
from telegram_tasks.conf import app_settings, get_order_model
from telegram_tasks.failures import Reason
from telegram_tasks.models import TelegramTask
from telegram_tasks.services import available, handouts, orders, settle, sql

S = TelegramTask.Status


def tasks_fail(
    *,
    reason: str,
    now: datetime,
    task_ids: Sequence[str] | None = None,
    order_ids: Sequence[int] | None = None,
    statuses: Sequence[str] = TelegramTask.IN_FLIGHT,
) -> int:
    """End unfinished tasks (by id or by order) as failed with ``reason`` (see
    ``settle.end_tasks``); a late ``done`` for them is then a duplicate. By order: the tasks
    delivering its units (its memberships' automatic unsubscribes go on)."""
    where = ["status = ANY(%(statuses)s)"]
    if task_ids is not None:
        where.append("id = ANY(%(ids)s)")
    if order_ids is not None:
        where.append(f"order_id = ANY(%(orders)s) AND {sql.ORDER_UNITS}")
    with transaction.atomic():
        ended = settle.end_tasks(
            where=" AND ".join(where),
            params={
                "statuses": [str(s) for s in statuses],
                "ids": list(task_ids or ()),
                "orders": list(order_ids or ()),
            },
            reason=reason,
            now=now,
        )
    return len(ended)


def tasks_requeue(*, task_ids: Sequence[str], now: datetime) -> tuple[int, int]:
    """Put stuck unfinished tasks back in the queue at once, on the same account, with a fresh
    reservation (see ``settle.rearm``). A task whose order or account can no longer run it ends
    instead. Returns (requeued, not requeued); finished tasks are left alone (their orders get
    new tasks from generation)."""
    until = now + timedelta(seconds=app_settings.RESERVE_LOCK_SECONDS)
    with transaction.atomic():
        rows = sql.fetch(
            f"SELECT {settle.CLAIM_COLUMNS} FROM {sql.TASKS} "  # noqa: S608
            f"WHERE id = ANY(%s) AND status IN {sql.LIVE} "
            "AND telegram_account_id IS NOT NULL ORDER BY id FOR UPDATE",
            [list(task_ids)],
        )
        if not rows:
            return 0, 0
        runnable, _ = settle.fail_blocked(rows, now=now)
        lock_until = settle.queued_lock_until(until)
        ok = [r["id"] for r in settle.rearm(runnable, until=lock_until, now=now)]
        if ok:
            requeued = sql.fetch(
                f"""
                UPDATE {sql.TASKS} SET status = {sql.QUEUED}, available_at = %(now)s,
                       reserved_until = %(until)s, leased_until = NULL, updated_at = %(now)s,
                       {handouts.ended(handouts.REQUEUED)}
                WHERE id = ANY(%(ids)s) AND status IN {sql.LIVE}
                RETURNING provider_id, provider_account_id, execution_mode
                """,  # noqa: S608
                {"now": now, "until": until, "ids": ok},
            )
            available.announce(
                (now, r["provider_id"], r["provider_account_id"], r["execution_mode"])
                for r in requeued
            )
    return len(ok), len(rows) - len(ok)


def orders_stop(*, order_ids: Sequence[int], reason: str, now: datetime) -> int:
    """The target is unusable: active orders end PARTIAL (something was delivered) or CANCELED,
    then their unfinished tasks are failed and rolled back."""
    with transaction.atomic():
        stopped = orders.orders_mark_stopped(order_ids, now=now)
    _end_deliveries(stopped, reason=reason, now=now)
    return len(stopped)


def orders_drop_reactions(*, refused: Sequence[tuple[int, str]], now: datetime) -> int:
    """The channel refuses these emoji (REACTION_INVALID): each order's mix goes on without its
    refused one, and its queued tasks carrying it fail (their orders get new tasks with the other
    emoji); an order whose only emoji was refused ends as a target the broker stops
    (``orders_stop``). In the same two steps as a stop: the orders first, then their tasks.
    Returns how many orders stopped."""
    with transaction.atomic():
        dropped, emptied = orders.orders_drop_reactions(refused, now=now)
    if dropped:
        queued = sql.rows(
            f"SELECT t.id FROM {sql.TASKS} AS t "  # noqa: S608
            "JOIN jsonb_to_recordset(%s::jsonb) AS r(order_id bigint, emoji text) "
            "ON t.order_id = r.order_id AND t.payload->'params'->>'reaction' = r.emoji "
            f"WHERE t.status = {sql.QUEUED} AND t.{sql.ORDER_UNITS}",
            [json.dumps([{"order_id": pk, "emoji": e} for pk, e in dropped])],
        )
        if queued:
            tasks_fail(
                reason=Reason.REACTION_INVALID,
                now=now,
                task_ids=[r[0] for r in queued],
                statuses=[S.QUEUED],
            )
    return orders_stop(order_ids=emptied, reason=Reason.REACTION_INVALID, now=now) if emptied else 0


def orders_cancel(*, order_ids: Sequence[int], now: datetime) -> int:
    """Cancel: the order ends CANCELED, then every unfinished task is failed and its lock rolled
    back."""
    with transaction.atomic():
        canceled = orders.orders_mark_canceled(order_ids, now=now)
    _end_deliveries(canceled, reason=Reason.ORDER_CANCELED, now=now)
    return len(canceled)


def _end_deliveries(order_ids: Sequence[int], *, reason: str, now: datetime) -> None:
    """The second step of an end: fail the orders' unfinished tasks and, in the same
    transaction, tell the order model's app (``signals.orders_ended``). Its receivers then see
    each order's final ``remains``: no unit is in flight any more and none can be added (the
    orders are no longer active), so a refund taken there is exact, and it commits with the
    tasks' end or not at all."""
    with transaction.atomic():
        tasks_fail(reason=reason, now=now, order_ids=order_ids)
        if order_ids:
            signals.orders_ended.send(
                sender=get_order_model(), order_ids=list(order_ids), reason=str(reason), now=now
            )


def orders_pause(*, order_ids: Sequence[int], now: datetime) -> int:
    """Pause: no new tasks and no hand-outs; queued tasks are released. Handed-out ones may
    still finish, but none is queued or handed out again while the order is paused."""
    with transaction.atomic():
        paused = orders.orders_mark_paused(order_ids, now=now)
    tasks_fail(reason=Reason.ORDER_PAUSED, now=now, order_ids=paused, statuses=[S.QUEUED])
    return len(paused)


def orders_resume(*, order_ids: Sequence[int], now: datetime) -> int:
    """Resume a paused order: due again at once."""
    return len(orders.orders_mark_resumed(order_ids, now=now))
