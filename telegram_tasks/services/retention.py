"""Retention: finished tasks older than TASK_RETENTION_DAYS are deleted, in bounded batches,
by housekeeping; closed memberships and expired one-shot successes likewise. What a rebuild
needs outlives the tasks in compact tables: a one-shot success (the dedupe key) is a row of
``telegram_one_shots`` kept for DEDUPE_TTL_SECONDS, a link state is a membership (open ones are
never deleted, closed ones are kept at least STATE_TTL_SECONDS), and the channels an account is
in are its open memberships. From the tasks themselves a rebuild reads only the last days
(running cooldowns, today's cap counts), so its cost follows those facts, not the history. The
retention itself is never below the longest claim TTL (the contract; a system check refuses a
shorter one): a task's history stays while any claim it made can be in force.

Batches of a few thousand rows by their time column (an index range): each is a short
transaction that locks nothing a live task needs, and autovacuum keeps up with the dead rows.
(Monthly partitions dropped whole would cost less per row but would make the task id, a ULID
primary key, unable to be unique across partitions without the partition key in it.)"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction

from telegram_tasks.conf import app_settings
from telegram_tasks.models import GenerationPass, TaskHour
from telegram_tasks.services import sql

BATCH = 5000
PASS_DAYS = 7  # generation pass records kept (the dashboard charts the last hours)


@dataclass
class RetentionSummary:
    cutoff: datetime  # finished tasks before this go
    tasks: int = 0
    memberships: int = 0
    one_shots: int = 0
    hours: int = 0  # hourly rollup rows (the dashboard's history)
    passes: int = 0  # generation pass records (kept PASS_DAYS)
    oldest: datetime | None = None  # the oldest finished task left to delete (preview)

    def line(self) -> str:
        oldest = f" oldest={self.oldest:%Y-%m-%d}" if self.oldest else ""
        return (
            f"cutoff={self.cutoff:%Y-%m-%d %H:%M} tasks={self.tasks} "
            f"memberships={self.memberships} one_shots={self.one_shots} hours={self.hours} "
            f"passes={self.passes}{oldest}"
        )


def retention_cutoff(now: datetime) -> datetime:
    return now - timedelta(days=app_settings.TASK_RETENTION_DAYS)


def _cutoffs(now: datetime) -> list[tuple[str, str, str, datetime, str]]:
    """(table, time column, summary field, delete rows before this, and only if) per table."""
    tasks = retention_cutoff(now)
    states = now - timedelta(seconds=app_settings.STATE_TTL_SECONDS)
    return [
        (sql.TASKS, "finished_at", "tasks", tasks, ""),
        # A closed membership is the unsubscribed state a rebuild restores within its TTL; and
        # one a task still names (its unsubscribe, finished later or not purged yet) stays
        # until that task goes.
        (
            sql.MEMBERSHIPS,
            "unsubscribed_at",
            "memberships",
            min(tasks, states),
            f"AND NOT EXISTS (SELECT 1 FROM {sql.TASKS} AS t WHERE t.membership_id = x.id)",  # noqa: S608
        ),
        (
            sql.ONE_SHOTS,
            "done_at",
            "one_shots",
            now - timedelta(seconds=app_settings.DEDUPE_TTL_SECONDS),
            "",
        ),
        (TaskHour._meta.db_table, "hour", "hours", tasks, ""),
        (
            GenerationPass._meta.db_table,
            "started_at",
            "passes",
            now - timedelta(days=PASS_DAYS),
            "",
        ),
    ]


def retention_preview(*, now: datetime) -> RetentionSummary:
    """What retention would delete now (nothing is deleted): counts over the index ranges."""
    summary = RetentionSummary(cutoff=retention_cutoff(now))
    for table, column, counter, cutoff, only in _cutoffs(now):
        [(count, oldest)] = sql.rows(
            f"SELECT count(*), min({column}) FROM {table} AS x "  # noqa: S608
            f"WHERE {column} < %s {only}",
            [cutoff],
        )
        setattr(summary, counter, count)
        if table == sql.TASKS:
            summary.oldest = oldest
    return summary


def retention_purge(*, now: datetime, most: int) -> RetentionSummary:
    """Delete up to ``most`` rows of each table older than its retention, oldest first, in
    batches of BATCH, each in a transaction of its own."""
    summary = RetentionSummary(cutoff=retention_cutoff(now))
    for table, column, counter, cutoff, only in _cutoffs(now):
        while getattr(summary, counter) < most:
            size = min(BATCH, most - getattr(summary, counter))
            with transaction.atomic():
                # The batch is picked once (a materialized CTE): as an IN subquery, a plan
                # that rescans it per row would skip the rows this statement already deleted
                # (SKIP LOCKED) and pick the next ones, past the batch and past ``most``.
                deleted = sql.rows(
                    f"""
                    WITH batch AS MATERIALIZED (
                        SELECT id FROM {table} AS x WHERE {column} < %s {only}
                        ORDER BY {column} LIMIT %s FOR UPDATE SKIP LOCKED
                    )
                    DELETE FROM {table} AS d USING batch WHERE d.id = batch.id RETURNING 1
                    """,  # noqa: S608
                    [cutoff, size],
                )
            setattr(summary, counter, getattr(summary, counter) + len(deleted))
            if len(deleted) < size:
                break
    return summary
