"""Factories for the tests: plain functions over the ORM, one place for defaults."""

from __future__ import annotations

import itertools
from typing import Any

from orders.models import Order
from telegram_tasks.models import TelegramAccount, TelegramTask

_seq = itertools.count(1)


# What an order of each action takes by default here (its params must suit its action).
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "reaction": {"reactions": ["👍"]},
    "poll_vote": {"option": 1},
}


def make_order(**kwargs: Any) -> Order:
    n = next(_seq)
    fields: dict[str, Any] = {"action": "subscribe", "link": f"t.me/channel{n:05d}", "quantity": 10}
    fields.update(kwargs)
    fields.setdefault("params", DEFAULT_PARAMS.get(fields["action"], {}))
    return Order.objects.create(**fields)


def make_account(**kwargs: Any) -> TelegramAccount:
    n = next(_seq)
    fields: dict[str, Any] = {"provider_account_id": f"ext_{n}", "phone": f"+1555{n:07d}"}
    fields.update(kwargs)
    return TelegramAccount.objects.create(**fields)


def make_accounts(count: int, **kwargs: Any) -> list[TelegramAccount]:
    start = next(_seq) * 100_000
    TelegramAccount.objects.bulk_create(
        TelegramAccount(provider_account_id=f"ext_{start + i}", phone=f"+1{start + i}", **kwargs)
        for i in range(count)
    )
    return list(
        TelegramAccount.objects.filter(provider_account_id__startswith="ext_").order_by("id")
    )


def make_task(order: Order, account: TelegramAccount | None = None, **kwargs: Any) -> TelegramTask:
    fields: dict[str, Any] = {
        "order": order,
        "action": order.action,
        "link_hash": order.link_hash,
        "telegram_account": account,
        "provider_account_id": account.provider_account_id if account else None,
        "per_call": order.per_call,
        "payload": {"link": order.link, "post_id": order.post_id, "action": order.action},
    }
    fields.update(kwargs)
    return TelegramTask.objects.create(**fields)
