"""Retention: finished tasks older than TASK_RETENTION_DAYS are deleted, in bounded batches,
by housekeeping; closed memberships likewise. What a rebuild needs outlives them: the retention
is never shorter than the longest claim TTL (a system check refuses it), so every fact a
rebuild restores — a one-shot success within DEDUPE_TTL_SECONDS, a link state within
STATE_TTL_SECONDS — is still in the ledger, and the channels an account is in are its open
memberships, which are never deleted.

Batches of a few thousand rows by ``finished_at`` (an index range): each is a short
transaction that locks nothing a live task needs, and autovacuum keeps up with the dead rows.
(Monthly partitions dropped whole would cost less per row but would make the task id, a ULID
primary key, unable to be unique across partitions without the partition key in it.)"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction

from telegram_tasks.conf import app_settings
from telegram_tasks.services import sql

BATCH = 5000


@dataclass
class RetentionSummary:
    cutoff: datetime
    tasks: int = 0
    memberships: int = 0
    oldest: datetime | None = None  # the oldest finished task left to delete (preview)

    def line(self) -> str:
        oldest = f" oldest={self.oldest:%Y-%m-%d}" if self.oldest else ""
        return (
            f"cutoff={self.cutoff:%Y-%m-%d %H:%M} tasks={self.tasks} "
            f"memberships={self.memberships}{oldest}"
        )


def retention_cutoff(now: datetime) -> datetime:
    return now - timedelta(days=app_settings.TASK_RETENTION_DAYS)


def retention_preview(*, now: datetime) -> RetentionSummary:
    """What retention would delete now (nothing is deleted): counts over the index ranges."""
    cutoff = retention_cutoff(now)
    [(tasks, oldest)] = sql.rows(
        f"SELECT count(*), min(finished_at) FROM {sql.TASKS} "  # noqa: S608
        "WHERE finished_at IS NOT NULL AND finished_at < %s",
        [cutoff],
    )
    [(memberships,)] = sql.rows(
        f"SELECT count(*) FROM {sql.MEMBERSHIPS} WHERE unsubscribed_at < %s",  # noqa: S608
        [cutoff],
    )
    return RetentionSummary(cutoff=cutoff, tasks=tasks, memberships=memberships, oldest=oldest)


def retention_purge(*, now: datetime, most: int) -> RetentionSummary:
    """Delete up to ``most`` finished tasks (and as many closed memberships) older than the
    retention, oldest first, in batches of BATCH, each in a transaction of its own."""
    summary = RetentionSummary(cutoff=retention_cutoff(now))
    for table, column, counter in (
        (sql.TASKS, "finished_at", "tasks"),
        (sql.MEMBERSHIPS, "unsubscribed_at", "memberships"),
    ):
        while getattr(summary, counter) < most:
            size = min(BATCH, most - getattr(summary, counter))
            with transaction.atomic():
                deleted = sql.rows(
                    f"""
                    DELETE FROM {table} WHERE id IN (
                        SELECT id FROM {table} WHERE {column} < %s
                        ORDER BY {column} LIMIT %s FOR UPDATE SKIP LOCKED
                    ) RETURNING 1
                    """,  # noqa: S608
                    [summary.cutoff, size],
                )
            setattr(summary, counter, getattr(summary, counter) + len(deleted))
            if len(deleted) < size:
                break
    return summary
