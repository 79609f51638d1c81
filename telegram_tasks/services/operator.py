"""What an operator (the admin, the orders app) does to tasks and orders: fail, requeue, and
cancel, pause, resume or stop orders. Each ends or re-arms tasks through the kernel
(``settle``) and writes orders through ``orders``; tasks are locked before orders."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from django.db import transaction

from telegram_tasks.conf import app_settings
from telegram_tasks.models import TelegramTask
from telegram_tasks.services import orders, settle, sql

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
    ``settle.end_tasks``); a late ``done`` for them is then a duplicate."""
    with transaction.atomic():
        ended = settle.end_tasks(
            where="status = ANY(%(statuses)s) "
            "AND (%(ids)s::varchar[] IS NULL OR id = ANY(%(ids)s)) "
            "AND (%(orders)s::bigint[] IS NULL OR order_id = ANY(%(orders)s))",
            params={
                "statuses": [str(s) for s in statuses],
                "ids": None if task_ids is None else list(task_ids),
                "orders": None if order_ids is None else list(order_ids),
            },
            reason=reason,
            now=now,
        )
    return len(ended)


def tasks_requeue(*, task_ids: Sequence[str], now: datetime) -> tuple[int, int]:
    """Put stuck unfinished tasks back in the queue at once, on the same account, with a fresh
    reservation (see ``settle.rearm``). Returns (requeued, not requeued); finished tasks are
    left alone (their orders get new tasks from generation)."""
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
        ok = [r["id"] for r in settle.rearm(rows, until=until, now=now)]
        if ok:
            sql.fetch(
                f"""
                UPDATE {sql.TASKS} SET status = {sql.QUEUED}, available_at = %(now)s,
                       reserved_until = %(until)s, leased_until = NULL, updated_at = %(now)s
                WHERE id = ANY(%(ids)s) AND status IN {sql.LIVE}
                """,  # noqa: S608
                {"now": now, "until": until, "ids": ok},
            )
    return len(ok), len(rows) - len(ok)


def orders_stop(*, order_ids: Sequence[int], reason: str, now: datetime) -> int:
    """The target is unusable: active orders end PARTIAL (something was delivered) or CANCELED,
    and their unfinished tasks are failed and rolled back."""
    with transaction.atomic():
        tasks_fail(reason=reason, now=now, order_ids=list(order_ids))
        return len(orders.orders_mark_stopped(order_ids, now=now))


def orders_cancel(*, order_ids: Sequence[int], now: datetime) -> int:
    """Cancel: no more tasks, and every unfinished task is failed and its lock rolled back."""
    with transaction.atomic():
        tasks_fail(reason="order_canceled", now=now, order_ids=list(order_ids))
        return len(orders.orders_mark_canceled(order_ids, now=now))


def orders_pause(*, order_ids: Sequence[int], now: datetime) -> int:
    """Pause: no new tasks; queued ones are released, handed-out ones may still finish."""
    with transaction.atomic():
        tasks_fail(reason="order_paused", now=now, order_ids=list(order_ids), statuses=[S.QUEUED])
        return len(orders.orders_mark_paused(order_ids, now=now))


def orders_resume(*, order_ids: Sequence[int], now: datetime) -> int:
    """Resume a paused order: due again at once."""
    return len(orders.orders_mark_resumed(order_ids, now=now))
