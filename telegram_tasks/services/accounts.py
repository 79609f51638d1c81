"""Accounts: the provider's sync, deactivation, and releasing the queued tasks of accounts that
can no longer run them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction

from telegram_tasks import claims
from telegram_tasks.conf import app_settings
from telegram_tasks.failures import Reason
from telegram_tasks.models import TelegramAccount, default_provider_id
from telegram_tasks.services import settle, sql
from telegram_tasks.services.farm import forget_limited

SYNC_FIELDS = ("phone", "is_active", "tier", "meta")


@dataclass(frozen=True)
class SyncResult:
    synced: int


def accounts_sync(
    *, items: list[dict[str, Any]], now: datetime, provider_id: int | None = None
) -> SyncResult:
    """Upsert the provider's accounts by provider_account_id: only its own (another provider's
    account with the same id is another account, never touched).

    ``items`` are validated dicts holding ``provider_account_id`` and any of ``phone``,
    ``is_active``, ``meta``; a field an item leaves out keeps its stored value (new accounts
    get the model default). One INSERT … ON CONFLICT per combination of fields present, so the
    number of queries does not grow with the batch. Accounts switched off here stop being
    picked, and their queued tasks are released for other accounts. ``provider_id`` None: the
    default provider (tools and tests; the API always names the caller).
    """
    sql.check_batch(items, most=app_settings.SYNC_MAX_BATCH, what="accounts")
    if provider_id is None:
        provider_id = default_provider_id()
    claims.ping()
    # Sorted, and existing rows locked first in that order: two syncs of overlapping accounts
    # queue behind each other instead of deadlocking.
    items = sorted(items, key=lambda i: i["provider_account_id"])
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for item in items:
        present = tuple(sorted(k for k in SYNC_FIELDS if k in item))
        groups.setdefault(present, []).append(item)
    turned_off = [i["provider_account_id"] for i in items if i.get("is_active") is False]
    # The accounts first, committed on their own; their tasks after (the same two steps as a
    # deactivation): no transaction holds account rows while it waits for task rows.
    mine = TelegramAccount.objects.filter(provider_id=provider_id)
    with transaction.atomic():
        list(
            mine.select_for_update()
            .filter(provider_account_id__in=[i["provider_account_id"] for i in items])
            .order_by("provider_account_id")
            .values_list("id", flat=True)
        )
        was_active = set(
            mine.filter(provider_account_id__in=turned_off, is_active=True).values_list(
                "id", flat=True
            )
        )
        for present, group in groups.items():
            TelegramAccount.objects.bulk_create(
                [
                    TelegramAccount(
                        provider_id=provider_id,
                        provider_account_id=i["provider_account_id"],
                        **{k: i[k] for k in present},
                        created_at=now,
                        updated_at=now,
                    )
                    for i in group
                ],
                update_conflicts=True,
                unique_fields=["provider", "provider_account_id"],
                update_fields=[*present, "updated_at"],
            )
    tasks_release_for_accounts(account_ids=sorted(was_active), now=now)
    forget_limited(sorted(was_active), now=now)
    return SyncResult(synced=len(items))


def tasks_release_for_accounts(
    *, account_ids: Sequence[int], now: datetime, reason: Reason = Reason.ACCOUNT_INACTIVE
) -> int:
    """Queued tasks of these accounts fail and give back their locks, so their orders get tasks
    on other accounts. Leased and pending tasks are left to finish."""
    if not account_ids:
        return 0
    with transaction.atomic():
        ended = settle.end_tasks(
            where=f"telegram_account_id = ANY(%(accounts)s) AND status = {sql.QUEUED}",
            params={"accounts": list(account_ids)},
            reason=reason,
            now=now,
        )
    return len(ended)


def accounts_deactivate(*, account_ids: Sequence[int], now: datetime) -> int:
    """An account that is gone (banned, session revoked): never picked again and never handed a
    task again (pulls check the account), then its queued tasks are released for other
    accounts."""
    with transaction.atomic():
        changed = TelegramAccount.objects.filter(id__in=account_ids, is_active=True).update(
            is_active=False, updated_at=now
        )
    tasks_release_for_accounts(account_ids=account_ids, now=now)
    forget_limited(list(account_ids), now=now)
    return changed


def accounts_reactivate(*, account_ids: Sequence[int], now: datetime) -> int:
    """Accounts back in service (the operator's call): picked again from the next pass."""
    return TelegramAccount.objects.filter(id__in=account_ids, is_active=False).update(
        is_active=True, updated_at=now
    )


def accounts_clear_hold(*, account_ids: Sequence[int], now: datetime) -> int:
    """Lift the flood holds of these accounts (the operator knows better): in the ledger, then
    in Redis once that is committed (a rebuild or heal restores holds from the ledger only)."""
    with transaction.atomic():
        cleared = list(
            TelegramAccount.objects.filter(id__in=account_ids, held_until__isnull=False)
            .order_by("id")
            .values_list("id", flat=True)
        )
        TelegramAccount.objects.filter(id__in=cleared).update(
            held_until=None, hold_reason="", held_since=None, updated_at=now
        )
        settle.after_commit(lambda: claims.unhold_many(cleared))
    return len(cleared)


def accounts_hold(holds: Sequence[tuple[int, datetime, str]], *, now: datetime) -> None:
    """Record flood holds in the ledger — (account, until, reason), the later deadline kept, with
    its reason; since when, kept while a hold runs on — inside the caller's transaction (after
    its task locks: tasks before accounts). Pulls skip a held account's tasks; ``rebuild``
    restores the hold from here."""
    if not holds:
        return
    latest: dict[int, tuple[datetime, str]] = {}
    for account_id, until, reason in holds:
        if account_id not in latest or until > latest[account_id][0]:
            latest[account_id] = (until, reason)
    sql.fetch(
        f"""
        UPDATE {sql.ACCOUNTS} AS a
        SET held_until = GREATEST(COALESCE(a.held_until, v.until), v.until),
            hold_reason = CASE WHEN a.held_until > v.until THEN a.hold_reason ELSE v.reason END,
            held_since = CASE WHEN a.held_until > %(now)s THEN a.held_since ELSE %(now)s END,
            updated_at = %(now)s
        FROM jsonb_to_recordset(%(rows)s::jsonb)
             AS v(id bigint, until timestamptz, reason varchar)
        WHERE a.id = v.id
        """,  # noqa: S608
        {
            "now": now,
            "rows": json.dumps(
                [
                    {"id": i, "until": u.isoformat(), "reason": r}
                    for i, (u, r) in sorted(latest.items())
                ]
            ),
        },
    )


def tasks_release_outlasted(*, account_ids: Sequence[int], now: datetime) -> int:
    """Queued tasks of held accounts whose reservation ends before the hold does could only
    expire: they fail (``account_held``) now, so their orders move to other accounts."""
    if not account_ids:
        return 0
    with transaction.atomic():
        ended = settle.end_tasks(
            where=f"telegram_account_id = ANY(%(accounts)s) AND status = {sql.QUEUED} "  # noqa: S608
            f"AND reserved_until < (SELECT held_until FROM {sql.ACCOUNTS} AS a "
            "WHERE a.id = telegram_account_id)",
            params={"accounts": list(account_ids)},
            reason=Reason.ACCOUNT_HELD,
            now=now,
        )
    return len(ended)
