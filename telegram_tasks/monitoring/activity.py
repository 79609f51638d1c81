"""What finished when, for the dashboard's chosen range: tasks done per action and failed per
action and reason, in buckets (a minute for the last hour, five for the last six hours, an
hour for 48 hours, three for 7 days), read from the rollup (``TaskMinute``, ``TaskHour``),
never from the ledger. The rollup counts up to a couple of minutes ago (``rollup.LAG``):
``counted_until`` says how far, and each bucket's window stops there, so a count and the task
list filtered by its window (``finished_from`` / ``finished_to``) agree."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from telegram_tasks.models import RollupMark, TaskHour, TaskMinute

Outcome = TaskHour.Outcome


@dataclass(frozen=True)
class Range:
    key: str  # as the page's URL carries it: ?range=6h
    label: str
    span: timedelta
    bucket: timedelta
    per: str  # the bucket in words
    by_minute: bool  # read from the minutes (else the hours)


RANGES = {
    r.key: r
    for r in (
        Range("1h", "1 h", timedelta(hours=1), timedelta(minutes=1), "minute", True),
        Range("6h", "6 h", timedelta(hours=6), timedelta(minutes=5), "5 minutes", True),
        Range("48h", "48 h", timedelta(hours=48), timedelta(hours=1), "hour", False),
        Range("7d", "7 d", timedelta(days=7), timedelta(hours=3), "3 hours", False),
    )
}


@dataclass
class Activity:
    range: Range
    buckets: list[datetime]  # each bucket's start (UTC)
    counted_until: datetime | None  # the rollup counted tasks finished before this
    done: dict[str, list[int]] = field(default_factory=dict)  # action -> per bucket
    # (action, reason) -> per bucket
    failed: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    @property
    def start(self) -> datetime:
        return self.buckets[0]

    @property
    def counted_buckets(self) -> int:
        """How many buckets, from the first, the rollup has reached (the others are still
        being counted)."""
        if self.counted_until is None:
            return 0
        return sum(1 for b in self.buckets if b < self.counted_until)

    def window(self, i: int) -> tuple[datetime, datetime]:
        """Bucket ``i``'s window as it was counted: its start to its end or the rollup's
        mark, whichever is first."""
        end = self.buckets[i] + self.range.bucket
        if self.counted_until is not None:
            end = min(end, self.counted_until)
        return self.buckets[i], end

    def whole(self) -> tuple[datetime, datetime]:
        """The range's window as counted."""
        return self.start, self.window(len(self.buckets) - 1)[1]

    def done_total(self, action: str | None = None) -> int:
        return sum(sum(v) for a, v in self.done.items() if action in (None, a))

    def failed_total(self, action: str | None = None) -> int:
        return sum(sum(v) for (a, _), v in self.failed.items() if action in (None, a))

    def failed_by_reason(self) -> list[tuple[str, int]]:
        """Failures by reason over the range, most first."""
        totals: dict[str, int] = defaultdict(int)
        for (_, reason), values in self.failed.items():
            totals[reason] += sum(values)
        return sorted(((r, n) for r, n in totals.items() if n), key=lambda kv: (-kv[1], kv[0]))


def activity(*, range_key: str, now: datetime) -> Activity:
    """Done and failed per bucket over the range ending at ``now`` (one read of the rollup's
    rows of the range, one of its mark)."""
    r = RANGES[range_key]
    last = _floor(now, r.bucket)
    count = int(r.span / r.bucket)
    buckets = [last - r.bucket * (count - 1 - i) for i in range(count)]
    mark = RollupMark.objects.filter(pk=1).values_list("finished_until", flat=True).first()
    out = Activity(range=r, buckets=buckets, counted_until=mark)
    model, column = (TaskMinute, "minute") if r.by_minute else (TaskHour, "hour")
    rows = model.objects.filter(
        **{f"{column}__gte": buckets[0]}, outcome__in=[Outcome.DONE, Outcome.FAILED]
    ).values_list(column, "action", "outcome", "reason", "count")
    done: dict[str, list[int]] = defaultdict(lambda: [0] * count)
    failed: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * count)
    for moment, action, outcome, reason, n in rows:
        i = int((moment - buckets[0]) / r.bucket)
        if not 0 <= i < count:
            continue
        if outcome == Outcome.DONE:
            done[action][i] += n
        else:
            failed[(action, reason or "unknown")][i] += n
    out.done, out.failed = dict(done), dict(failed)
    return out


def default_range(*, now: datetime) -> str:
    """The shortest range that shows all the work of the last 48 hours: the last hour when the
    farm has worked only that long (or not at all yet), six hours, else 48 hours."""
    worked = (TaskHour.Outcome.DONE, TaskHour.Outcome.FAILED)
    first_hour = (
        TaskHour.objects.filter(hour__gte=now - RANGES["48h"].span, outcome__in=worked)
        .order_by("hour")
        .values_list("hour", flat=True)
        .first()
    )
    if first_hour is None:
        return "1h"
    if first_hour < _floor(now - RANGES["6h"].span, timedelta(hours=1)):
        return "48h"
    first = (
        TaskMinute.objects.filter(minute__gte=first_hour)
        .order_by("minute")
        .values_list("minute", flat=True)
        .first()
    )
    if first is None or first < now - RANGES["6h"].span:
        return "48h"
    return "1h" if first >= now - RANGES["1h"].span else "6h"


def _floor(moment: datetime, step: timedelta) -> datetime:
    """``moment`` down to a multiple of ``step`` (from the Unix epoch: whole minutes, hours)."""
    seconds = int(step.total_seconds())
    return datetime.fromtimestamp(int(moment.timestamp()) // seconds * seconds, tz=moment.tzinfo)
