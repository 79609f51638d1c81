"""Memberships whose time is up: an order with ``duration_days`` bought subscriptions that end.
Each due membership gets an ``unsubscribe`` task for the same account and channel (no account
selection; the same claims: gate, cooldown, caps), under the subscribe order, delivering none
of its units. A failed one is tried again after a backoff; the membership stays open until an
unsubscribe succeeds (``settle.mark_done`` closes it)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction

from telegram_tasks import claims
from telegram_tasks.claims import Claim, Target
from telegram_tasks.conf import app_settings
from telegram_tasks.models import ExecutionMode, TelegramTask, new_ulid
from telegram_tasks.services import available, done_sql, settle, sql

logger = logging.getLogger(__name__)

BACKOFF_MAX_SECONDS = 6 * 3600


@dataclass
class UnsubscribeSummary:
    due: int = 0
    created: int = 0
    refused: int = 0
    failed: int = 0  # memberships whose own data made their unsubscribe fail: skipped


def unsubscribe_action() -> str | None:
    """The action that leaves a channel (the first one gated "unsubscribe")."""
    gated = done_sql.gated_actions("unsubscribe")
    return gated[0] if gated else None


def backoff(attempts: int) -> timedelta:
    """How long after its ``attempts``-th unsubscribe a membership may get another: one
    generation tick after the first, doubling each time, at most six hours."""
    base = app_settings.GENERATION_TICK_SECONDS
    return timedelta(seconds=min(base * 2 ** max(attempts - 1, 0), BACKOFF_MAX_SECONDS))


def memberships_unsubscribe_due(*, now: datetime, most: int) -> UnsubscribeSummary:
    """Give at most ``most`` due memberships an unsubscribe task each (one transaction: the
    memberships are locked, so two passes never unsubscribe one twice). A membership whose
    subscribe order is gone still unsubscribes (its task has no order)."""
    summary = UnsubscribeSummary()
    action = unsubscribe_action()
    if action is None or most <= 0:
        return summary
    o = sql.order_table()
    with transaction.atomic():
        due = sql.fetch(
            f"""
            SELECT m.id, m.account_id, m.link_hash, m.link, m.order_id, m.attempts,
                   a.provider_account_id, a.phone, a.tier, a.provider_id,
                   COALESCE(o.{o["execution_mode"]}, %(pull)s) AS execution_mode
            FROM {sql.MEMBERSHIPS} AS m JOIN {sql.ACCOUNTS} AS a ON a.id = m.account_id
            JOIN {sql.PROVIDERS} AS p ON p.id = a.provider_id
            LEFT JOIN {o.table} AS o ON o.{o.pk} = m.order_id
            WHERE m.state = {sql.OPEN} AND m.due_at <= %(now)s AND a.is_active AND p.enabled
              AND (m.next_attempt_at IS NULL OR m.next_attempt_at <= %(now)s)
              AND NOT EXISTS (SELECT 1 FROM {sql.TASKS} AS t
                              WHERE t.membership_id = m.id AND t.status IN {sql.LIVE})
            ORDER BY m.due_at, m.id
            LIMIT %(most)s
            FOR UPDATE OF m SKIP LOCKED
            """,  # noqa: S608
            {"now": now, "most": most, "pull": ExecutionMode.PULL.value},
        )
        summary.due = len(due)
        if due:
            _serve(due, action=action, now=now, summary=summary)
    return summary


def _serve(due: list[dict], *, action: str, now: datetime, summary: UnsubscribeSummary) -> None:
    """Unsubscribe these (locked) memberships. One whose data makes it fail is logged, counted
    and tried again after its backoff; the others are served (``sql.isolating_bad_rows``)."""

    def run(batch: list[dict]) -> None:
        created = _unsubscribe(batch, action=action, now=now)
        summary.created += created
        summary.refused += len(batch) - created

    def skip(membership: dict) -> None:
        summary.failed += 1
        logger.exception("automatic unsubscribe of membership %s failed", membership["id"])
        _postpone(membership, now=now)

    sql.isolating_bad_rows(due, run, skip)


def _postpone(membership: dict, *, now: datetime) -> None:
    sql.fetch(
        f"UPDATE {sql.MEMBERSHIPS} SET attempts = attempts + 1, next_attempt_at = %s "  # noqa: S608
        "WHERE id = %s",
        [now + backoff(membership["attempts"] + 1), membership["id"]],
    )


def _unsubscribe(due: list[dict], *, action: str, now: datetime) -> int:
    """RESERVE each membership's account for an unsubscribe, store the tasks of those reserved,
    and move every membership's next attempt (soon when refused: a cooldown, a cap); the
    reservations are given back if anything fails. Returns how many tasks were made."""
    until = now + timedelta(seconds=app_settings.RESERVE_LOCK_SECONDS)
    tokens = [new_ulid() for _ in due]
    wanted = [
        Claim(m["account_id"], action, Target(m["link_hash"], None), token, m["tier"])
        for m, token in zip(due, tokens, strict=True)
    ]
    refusals = claims.reserve_many(wanted, now=now, until=settle.queued_lock_until(until))
    reserved = [
        (m, token)
        for m, token, refusal in zip(due, tokens, refusals, strict=True)
        if refusal is None
    ]
    try:
        _store(reserved, now=now, until=until, action=action)
        retry_at = now + timedelta(seconds=app_settings.GENERATION_TICK_SECONDS)
        sql.fetch(
            f"""
            UPDATE {sql.MEMBERSHIPS} AS m
            SET attempts = m.attempts + v.tried, next_attempt_at = v.next_at
            FROM jsonb_to_recordset(%(rows)s::jsonb)
                 AS v(id bigint, tried int, next_at timestamptz)
            WHERE m.id = v.id
            """,  # noqa: S608
            {
                "rows": json.dumps(
                    [
                        {
                            "id": m["id"],
                            "tried": 1 if refusal is None else 0,
                            "next_at": (
                                now + backoff(m["attempts"] + 1)
                                if refusal is None
                                else retry_at  # refused for now (cooldown, cap…): soon
                            ).isoformat(),
                        }
                        for m, refusal in zip(due, refusals, strict=True)
                    ]
                )
            },
        )
    except BaseException:
        claims.rollback_many([c for c, r in zip(wanted, refusals, strict=True) if r is None])
        raise
    return len(reserved)


def _store(
    reserved: list[tuple[dict, str]], *, now: datetime, until: datetime, action: str
) -> None:
    queued = TelegramTask.Status.QUEUED.value
    rows = []
    for m, token in reserved:
        payload = {
            "order_id": m["order_id"],
            "action": action,
            "link": m["link"],
            "post_id": None,
            "link_hash": m["link_hash"],
            "per_call": 1,
            "membership_id": m["id"],
            "account": {
                "id": m["account_id"],
                "provider_account_id": m["provider_account_id"],
                "phone": m["phone"],
                "tier": m["tier"],
            },
        }
        rows.append(
            (
                token, m["order_id"], action, m["link_hash"], m["account_id"],
                m["provider_account_id"], queued, 1, now, until, 0, json.dumps(payload), "", "",
                now, now, m["execution_mode"], m["provider_id"], m["id"],
            )
        )  # fmt: skip
    sql.copy_tasks(rows)
    available.announce(
        (now, m["provider_id"], m["provider_account_id"], m["execution_mode"]) for m, _ in reserved
    )


def memberships_left(left: list[tuple[int, str]], *, now: datetime) -> int:
    """(account, link_hash) pairs not in their channel any more though no unsubscribe of ours
    succeeded (USER_NOT_PARTICIPANT, a channel gone): their open memberships close now, in the
    caller's transaction. Returns how many closed."""
    closed = sql.fetch(
        f"""
        UPDATE {sql.MEMBERSHIPS} AS m SET state = {sql.CLOSED}, unsubscribed_at = %(now)s
        FROM jsonb_to_recordset(%(pairs)s::jsonb) AS p(account bigint, link_hash varchar)
        WHERE m.account_id = p.account AND m.link_hash = p.link_hash AND m.state = {sql.OPEN}
        RETURNING m.id
        """,  # noqa: S608
        {
            "now": now,
            "pairs": json.dumps([{"account": a, "link_hash": h} for a, h in left]),
        },
    )
    return len(closed)
