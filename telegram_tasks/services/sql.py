"""The raw-SQL vocabulary of the services: one fetch helper, the table names, the status
fragments (built from the model's constants), the order model's columns, and the batch-size
check. Every SQL string in ``services`` takes its statuses and names from here."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

from django.db import DataError, IntegrityError, connection, transaction

from telegram_tasks.conf import get_order_model
from telegram_tasks.exceptions import BatchTooLarge
from telegram_tasks.models import (
    ExecutionMode,
    Membership,
    OneShot,
    OrderPassStats,
    OrderTurn,
    Provider,
    TelegramAccount,
    TelegramTask,
)

S = TelegramTask.Status
TASKS = TelegramTask._meta.db_table
ACCOUNTS = TelegramAccount._meta.db_table
MEMBERSHIPS = Membership._meta.db_table
ONE_SHOTS = OneShot._meta.db_table
ORDER_STATS = OrderPassStats._meta.db_table
ORDER_TURNS = OrderTurn._meta.db_table
PROVIDERS = Provider._meta.db_table


def literal(value: str) -> str:
    """A status as an SQL literal. Only for the model's own constants, never for input."""
    return "'" + str(value).replace("'", "''") + "'"


def literals(values: Sequence[str]) -> str:
    return "(" + ", ".join(literal(v) for v in values) + ")"


QUEUED = literal(S.QUEUED)
LEASED = literal(S.LEASED)
PENDING = literal(S.PENDING)
DONE = literal(S.DONE)
FAILED = literal(S.FAILED)
# Unfinished: queued, leased or pending (``status IN {LIVE}``).
LIVE = literals(TelegramTask.IN_FLIGHT)
# Handed out and not finished: leased or pending.
HANDED_OUT = literals((S.LEASED, S.PENDING))
FINISHED = literals(TelegramTask.FINAL)
OPEN = literal(Membership.State.OPEN)
CLOSED = literal(Membership.State.CLOSED)
# A task that delivers its order's units (not an automatic unsubscribe).
ORDER_UNITS = "membership_id IS NULL"


def fetch(sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
    """Run one statement; its rows as dicts (a ``payload`` column decoded from JSON)."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if cursor.description is None:
            return []
        names = [c.name for c in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    # Django has psycopg hand jsonb over as text (it decodes JSON itself in the ORM).
    for row in rows:
        if isinstance(row.get("payload"), str):
            row["payload"] = json.loads(row["payload"])
    return rows


def rows(sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[tuple[Any, ...]]:
    """Run one statement; its rows as tuples (aggregates read in bulk)."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description is not None else []


@dataclass(frozen=True)
class OrderTable:
    """The order model's table and the columns the services write (it is a swappable model:
    its column names are read from its fields, never assumed)."""

    table: str
    pk: str
    columns: dict[str, str]

    def __getitem__(self, field: str) -> str:
        return self.columns[field]

    def has(self, field: str) -> bool:
        """Whether the model has this column (the optional ones: ``OPTIONAL_ORDER_FIELDS``)."""
        return field in self.columns


ORDER_FIELDS = (
    "action", "link", "post_id", "link_hash", "quantity", "remains", "per_call",
    "interval_seconds", "next_run_at", "status", "paused_at", "updated_at", "priority",
    "duration_days", "execution_mode", "params",
)  # fmt: skip


# Columns an order model may have; the services fill them when it does, in the statements
# they run anyway (nothing more is run when it does not). ``start_count``: the first start count
# a provider's report carried for the order (``data.start_count``).
OPTIONAL_ORDER_FIELDS = ("start_count",)


@dataclass(frozen=True)
class OrderProviders:
    """An order model's optional ``providers`` (a many-to-many to ``Provider``: the fleets its
    tasks may go to; none: any), as generation reads it: the link table and its columns."""

    table: str
    order: str
    provider: str


@cache
def order_providers() -> OrderProviders | None:
    """The order model's routing, or None when it has no ``providers`` field."""
    meta = get_order_model()._meta
    try:
        field = meta.get_field("providers")
    except Exception:  # FieldDoesNotExist: the model routes nothing
        return None
    if not field.many_to_many or field.related_model is not Provider:
        return None
    through = field.remote_field.through._meta.db_table
    return OrderProviders(through, field.m2m_column_name(), field.m2m_reverse_name())


@cache
def order_table() -> OrderTable:
    meta = get_order_model()._meta
    present = {f.name for f in meta.get_fields()}
    columns = {f: meta.get_field(f).column for f in ORDER_FIELDS}
    columns.update({f: meta.get_field(f).column for f in OPTIONAL_ORDER_FIELDS if f in present})
    return OrderTable(table=meta.db_table, pk=meta.pk.column, columns=columns)


def start_count_sql(data: str) -> str:
    """The start count a report's ``data`` (a jsonb expression) carries: ``start_count`` as a
    non-negative integer or its digits in a string, else NULL (anything else is ignored)."""
    value = f"({data}->>'start_count')"
    return f"(CASE WHEN {value} ~ '^[0-9]{{1,18}}$' THEN {value}::bigint END)"


# The columns generation writes for a new task, in the order ``copy_tasks`` takes them.
NEW_TASK_COLUMNS = (
    "id", "order_id", "action", "link_hash", "telegram_account_id", "provider_account_id",
    "status", "per_call", "available_at", "reserved_until", "attempt", "payload",
    "failure_reason", "last_error", "created_at", "updated_at", "execution_mode",
    "provider_id", "membership_id",
)  # fmt: skip


def copy_tasks(rows: Sequence[Sequence[Any]]) -> None:
    """Insert new tasks (tuples of ``NEW_TASK_COLUMNS``; ``membership_id`` may be left out) with
    COPY: the cheapest way to write a batch of rows (psycopg's cursor under Django's)."""
    if not rows:
        return
    columns = NEW_TASK_COLUMNS[: len(rows[0])]
    statement = f"COPY {TASKS} ({', '.join(columns)}) FROM STDIN"
    with (
        connection.cursor() as cursor,
        connection.wrap_database_errors,
        cursor.cursor.copy(statement) as copy,
    ):
        for row in rows:
            copy.write_row(row)


def check_batch(items: Sequence[Any], *, most: int, what: str) -> None:
    """413 before anything is done: a batch larger than the setting allows."""
    if len(items) > most:
        raise BatchTooLarge(
            f"{what}: at most {most} items per request", {"max": most, "got": len(items)}
        )


def queued_since(columns: str) -> str:
    """Queued tasks due after ``%(since)s`` (with an account), one query per queue and
    provider, each a range of that queue's partial index (which leads with the provider; a list
    of modes would match neither): providers are few, queues may be long."""
    return " UNION ALL ".join(
        f"(SELECT t.* FROM {PROVIDERS} AS p CROSS JOIN LATERAL ("  # noqa: S608
        f"SELECT {columns} FROM {TASKS} WHERE provider_id = p.id AND status = {QUEUED} "
        f"AND execution_mode = {literal(mode)} AND available_at > %(since)s "
        "AND telegram_account_id IS NOT NULL) AS t)"
        for mode in ExecutionMode
    )


T = TypeVar("T")

# What one row's own data can make a batch fail with: a constraint, a value the database
# refuses, a payload that cannot be built. An outage (OperationalError, a RedisError,
# ClaimsStateLost) is not among them: it stops the whole batch, as it should.
DATA_ERRORS = (IntegrityError, DataError, ValueError, TypeError, KeyError)


def isolating_bad_rows(
    items: list[T], run: Callable[[list[T]], None], skip: Callable[[T], None]
) -> None:
    """``run(items)`` in a savepoint. If their data makes it fail (``DATA_ERRORS``), nothing of
    that attempt stays (``run`` gives back its Redis effects itself) and each half is tried
    on its own, down to the item at fault, which ``skip`` is told about: one bad row never
    stops a periodic pass for the others. (A batch of n with one bad row costs about
    2·log2(n) more attempts.)"""
    try:
        with transaction.atomic():
            run(items)
    except DATA_ERRORS:
        if len(items) == 1:
            skip(items[0])
            return
        half = len(items) // 2
        isolating_bad_rows(items[:half], run, skip)
        isolating_bad_rows(items[half:], run, skip)
