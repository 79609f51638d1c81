"""The statements that mark tasks done (``settle.mark_done``): the ledger's update with the
one-shot actions' dedupe rows, and the memberships each done subscribe opens and each done
unsubscribe closes, in the same transaction as their tasks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from typing import Any

from telegram_tasks.conf import app_settings
from telegram_tasks.services import handouts, orders, sql


@cache
def done_statement(*, durable: bool, handed_out: bool, scoped: bool = False) -> str:
    """One statement: the tasks done, their units off their orders (an automatic unsubscribe
    delivers none), and each one-shot success recorded where a rebuild finds it after the task
    is gone. (Built once per shape: the text is the same on every call.)"""
    deliver = orders.deliver_sql("delivered")
    relaxed = "" if durable else ", (SELECT set_config('synchronous_commit', 'off', true)) AS r"
    # An order model with a start count takes it from the reports' data (nothing otherwise).
    counted = sql.order_table().has("start_count")
    data = "(r.result::jsonb->'data')"
    start_count = f", {sql.start_count_sql(data)} AS start_count" if counted else ""
    return f"""
        WITH r AS (
            SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb)
                          AS r(id varchar, result text, ptid varchar, at timestamptz)
        ), finished_now AS (
            UPDATE {sql.TASKS} AS t
            SET status = {sql.DONE}, result = COALESCE(r.result::jsonb, t.result),
                provider_task_id = COALESCE(r.ptid, t.provider_task_id),
                finished_at = r.at, updated_at = %(now)s, leased_until = NULL,
                {handouts.ended(handouts.DONE, col="t.handouts", at="r.at")}
            FROM r
            WHERE t.id = r.id AND t.status IN {sql.LIVE}
              {"AND t.lease_id IS NOT NULL" if handed_out else ""}
              {"AND t.provider_id = %(provider)s" if scoped else ""}
            RETURNING t.id, t.order_id, t.per_call, t.membership_id, t.action,
                      t.telegram_account_id, t.link_hash, t.finished_at,
                      t.payload->>'link' AS link, (t.payload->>'post_id')::bigint AS post_id,
                      t.payload->'account'->>'tier' AS tier{start_count}
        ), delivered AS (
            SELECT order_id, per_call{", id, start_count" if counted else ""}
            FROM finished_now WHERE {sql.ORDER_UNITS}
        ), {deliver}, one_shot AS (
            INSERT INTO {sql.ONE_SHOTS} AS d (account_id, action, link_hash, post_id, done_at)
            SELECT f.telegram_account_id, f.action, f.link_hash, f.post_id, f.finished_at
            FROM finished_now AS f
            WHERE f.action = ANY(%(one_shot)s) AND f.telegram_account_id IS NOT NULL
            ON CONFLICT ON CONSTRAINT tg_one_shot_unique
            DO UPDATE SET done_at = GREATEST(d.done_at, EXCLUDED.done_at)
            RETURNING 1
        )
        SELECT id, order_id, telegram_account_id, action, link_hash, post_id, tier,
               finished_at, link
        FROM finished_now {relaxed}
        """  # noqa: S608


def move_memberships(finished: Sequence[dict[str, Any]]) -> None:
    """A membership opened by each done subscribe and closed by each done unsubscribe (in the
    same transaction as their tasks), so the channels an account is in are always the
    ledger's. A statement of its own, only when such tasks are among them: most are not."""
    o = sql.order_table()
    rows = json.dumps(
        [
            {"id": r["id"], "order_id": r["order_id"], "account": r["telegram_account_id"],
             "action": r["action"], "link_hash": r["link_hash"], "link": r["link"],
             "at": r["finished_at"].isoformat()}
            for r in finished
            if r["telegram_account_id"] is not None
        ]
    )  # fmt: skip
    sql.fetch(
        f"""
        WITH f AS (
            SELECT * FROM jsonb_to_recordset(%(rows)s::jsonb)
                AS f(id varchar, order_id bigint, account bigint, action varchar,
                     link_hash varchar, link text, at timestamptz)
        ), opened AS (
            INSERT INTO {sql.MEMBERSHIPS} (account_id, link_hash, link, order_id, subscribed_at,
                                          due_at, state, subscribe_task_id, attempts)
            SELECT f.account, f.link_hash, COALESCE(f.link, ''), f.order_id, f.at,
                   f.at + make_interval(days => o.{o["duration_days"]}), {sql.OPEN}, f.id, 0
            FROM f JOIN {o.table} AS o ON o.{o.pk} = f.order_id
            WHERE f.action = ANY(%(subscribing)s)
            ON CONFLICT (account_id, link_hash) WHERE state = {sql.OPEN} DO NOTHING
            RETURNING 1
        ), closed AS (
            UPDATE {sql.MEMBERSHIPS} AS m
            SET state = {sql.CLOSED}, unsubscribed_at = f.at, unsubscribe_task_id = f.id
            FROM f
            WHERE f.action = ANY(%(unsubscribing)s) AND m.account_id = f.account
              AND m.link_hash = f.link_hash AND m.state = {sql.OPEN}
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM opened), (SELECT count(*) FROM closed)
        """,  # noqa: S608
        {
            "rows": rows,
            "subscribing": gated_actions("subscribe"),
            "unsubscribing": gated_actions("unsubscribe"),
        },
    )


def one_shot_actions() -> list[str]:
    """The configured actions that succeed once per account and target (a dedupe key)."""
    return [a for a in app_settings.ACTIONS if app_settings.policy(a).one_shot]


def gated_actions(gate: str) -> list[str]:
    """The configured actions with this gate ("subscribe" takes a channel, "unsubscribe" leaves
    one)."""
    return [a for a in app_settings.ACTIONS if app_settings.policy(a).gate == gate]
