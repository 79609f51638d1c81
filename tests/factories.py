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
        # The task's provider is its account's (the default provider's without one).
        **({"provider_id": account.provider_id} if account else {}),
        "per_call": order.per_call,
        "payload": {"link": order.link, "post_id": order.post_id, "action": order.action},
    }
    fields.update(kwargs)
    return TelegramTask.objects.create(**fields)


def push_target(provider: Any = None, *, url: str = "https://provider.example/push") -> Any:
    """Where a fake transport's pushes go: a provider's (the default provider's unless given)
    push target, for ``tasks_push(targets=[…])``."""
    from telegram_tasks.models import Provider, default_provider_id
    from telegram_tasks.providers import ProviderRef
    from telegram_tasks.services.dispatch import PushTarget

    row = Provider.objects.get(pk=provider.pk if provider else default_provider_id())
    return PushTarget(ProviderRef(row.pk, row.name, row.enabled), url, "signing-secret")
