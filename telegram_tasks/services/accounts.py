"""Accounts: the provider's sync, deactivation, and releasing the queued tasks of accounts that
can no longer run them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction

from telegram_tasks import claims
from telegram_tasks.conf import app_settings
from telegram_tasks.models import TelegramAccount
from telegram_tasks.services import settle, sql

SYNC_FIELDS = ("phone", "is_active", "meta")


@dataclass(frozen=True)
class SyncResult:
    synced: int


def accounts_sync(*, items: list[dict[str, Any]], now: datetime) -> SyncResult:
    """Upsert accounts by provider_account_id.

    ``items`` are validated dicts holding ``provider_account_id`` and any of ``phone``,
    ``is_active``, ``meta``; a field an item leaves out keeps its stored value (new accounts
    get the model default). One INSERT … ON CONFLICT per combination of fields present, so the
    number of queries does not grow with the batch. Accounts switched off here stop being
    picked, and their queued tasks are released for other accounts.
    """
    sql.check_batch(items, most=app_settings.SYNC_MAX_BATCH, what="accounts")
    claims.ping()
    # Sorted, and existing rows locked first in that order: two syncs of overlapping accounts
    # queue behind each other instead of deadlocking.
    items = sorted(items, key=lambda i: i["provider_account_id"])
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for item in items:
        present = tuple(sorted(k for k in SYNC_FIELDS if k in item))
        groups.setdefault(present, []).append(item)
    turned_off = [i["provider_account_id"] for i in items if i.get("is_active") is False]
    with transaction.atomic():
        list(
            TelegramAccount.objects.select_for_update()
            .filter(provider_account_id__in=[i["provider_account_id"] for i in items])
            .order_by("provider_account_id")
            .values_list("id", flat=True)
        )
        was_active = set(
            TelegramAccount.objects.filter(
                provider_account_id__in=turned_off, is_active=True
            ).values_list("id", flat=True)
        )
        for present, group in groups.items():
            TelegramAccount.objects.bulk_create(
                [
                    TelegramAccount(
                        provider_account_id=i["provider_account_id"],
                        **{k: i[k] for k in present},
                        created_at=now,
                        updated_at=now,
                    )
                    for i in group
                ],
                update_conflicts=True,
                unique_fields=["provider_account_id"],
                update_fields=[*present, "updated_at"],
            )
        tasks_release_for_accounts(account_ids=sorted(was_active), now=now)
    return SyncResult(synced=len(items))


def tasks_release_for_accounts(*, account_ids: Sequence[int], now: datetime) -> int:
    """Queued tasks of these accounts fail (``account_inactive``) and give back their locks, so
    their orders get tasks on other accounts. Leased and pending tasks are left to finish."""
    if not account_ids:
        return 0
    ended = settle.end_tasks(
        where=f"telegram_account_id = ANY(%(accounts)s) AND status = {sql.QUEUED}",
        params={"accounts": list(account_ids)},
        reason="account_inactive",
        now=now,
    )
    return len(ended)


def accounts_deactivate(*, account_ids: Sequence[int], now: datetime) -> int:
    """An account that is gone (banned, session revoked): never picked again, and its queued
    tasks are released for other accounts."""
    with transaction.atomic():
        tasks_release_for_accounts(account_ids=account_ids, now=now)
        changed = TelegramAccount.objects.filter(id__in=account_ids, is_active=True).update(
            is_active=False, updated_at=now
        )
    return changed
