"""A task's hand-out history (``TelegramTask.handouts``): each lease — when, its lease id, how it
ended, the error — kept on the task itself, written by the very statements that lease and that
end, requeue or park a hand-out (a SET expression more in each, never a statement more), and
deleted with the task by the retention.

An entry is a small JSON object, newest last:
``{"lease": "01J…", "at": 1764412332.123, "end": "retry", "ended": 1764412335.5,
"error": "FLOOD_WAIT_30"}``. ``at`` and ``ended`` are Unix seconds (compact in every row);
``end`` is one of ``ENDS`` (absent while the hand-out runs); ``pending`` (Unix seconds) is when a
pending report parked it. The account is the task's own (a task never changes account).

Each function returns the SQL of ``handouts = …`` for an UPDATE's SET list; ``col`` is the
column as the statement names it (``t.handouts`` under an alias)."""

from __future__ import annotations

import json
from datetime import datetime

from telegram_tasks.services import sql

# How a hand-out ended.
DONE = "done"  # reported done (or its COMMIT settled)
FAILED = "failed"  # reported failed, or ended by the broker (the task's failure reason says why)
RETRY = "retry"  # reported failed, queued again to run after a wait (a flood wait …)
EXPIRED = "expired"  # the lease ran out without a report; handed out again
REQUEUED = "requeued"  # an operator put it back in the queue
RELEASED = "released"  # the provider handed it back unfinished
ENDS = (DONE, FAILED, RETRY, EXPIRED, REQUEUED, RELEASED)

# The most hand-outs one task keeps (a provider that pulls and releases without end would
# otherwise grow it); attempts are bounded by MAX_ATTEMPTS, releases are not.
KEEP = 20

ERROR_CHARS = 200


def _epoch(moment: str) -> str:
    return f"round(extract(epoch FROM {moment})::numeric, 3)"


def _close(col: str, fields: str) -> str:
    """``col`` with ``fields`` (``jsonb_build_object`` arguments) set on its last entry, if that
    one is still open (a task never handed out, or whose last hand-out has ended, is left as
    it is)."""
    return (
        f"CASE WHEN {col} IS NULL OR ({col}->-1->'end') IS NOT NULL THEN {col} "
        f"ELSE jsonb_set({col}, '{{-1}}', ({col}->-1) || jsonb_build_object({fields})) END"
    )


def ended(end: str, *, col: str = "handouts", at: str = "%(now)s", error: str | None = None) -> str:
    """The running hand-out ends with ``end`` at ``at`` (SQL); ``error``: an SQL expression of
    the error text, if any."""
    if end not in ENDS:
        raise ValueError(f"not a hand-out's end: {end!r}")
    fields = f"'end', '{end}', 'ended', {_epoch(at)}"
    if error is not None:
        fields += f", 'error', NULLIF(left({error}, {ERROR_CHARS}), '')"
    return f"handouts = {_close(col, fields)}"


def parked(*, col: str = "handouts", at: str = "%(now)s") -> str:
    """The running hand-out was reported pending (it goes on until a final report)."""
    pending = f"'pending', {_epoch(at)}"
    return f"handouts = {_close(col, pending)}"


def leased(*, entry: str = "%(handout)s::jsonb", alias: str = "t") -> str:
    """A new hand-out begins (the lease statement, over the task's old row as ``alias``):
    ``entry`` (SQL; ``entry_param`` makes it, once per batch) is appended. A task still
    ``leased`` is a lease that ran out: that one ends ``expired`` when it ran out (its
    ``leased_until``). A push hand-out sent again (``redeliver``) is the same hand-out: nothing
    new."""
    col = f"{alias}.handouts"
    expired = _close(col, f"'end', '{EXPIRED}', 'ended', {_epoch(f'{alias}.leased_until')}")
    before = (
        f"COALESCE(CASE WHEN {alias}.status = {sql.LEASED} THEN {expired} ELSE {col} END, '[]')"
    )
    return (
        f"handouts = CASE WHEN {alias}.redeliver THEN {col} "
        f"WHEN jsonb_array_length({col}) >= {KEEP} THEN ({before} - 0) || {entry} "
        f"ELSE {before} || {entry} END"
    )


def entry_param(*, lease_id: str, now: datetime) -> str:
    """The entry of a batch's new hand-outs (the same for every task of one lease statement)."""
    return json.dumps({"lease": lease_id, "at": round(now.timestamp(), 3)})
