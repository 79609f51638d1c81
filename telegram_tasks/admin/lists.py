"""What keeps the admin's list pages flat however large the ledger grows: counts capped (an
estimate for a whole table), filters whose choices are known without reading the table,
searches on exact indexed keys, and a date drill-down by key ranges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Model, Q, QuerySet
from django.utils import timezone

from telegram_tasks.admin import reasons
from telegram_tasks.conf import app_settings
from telegram_tasks.failures import Reason
from telegram_tasks.models import LIVE_STATUSES, TaskStatus, ulid_floor, ulid_time

# Rows a list counts exactly (and pages through); past it, filter or drill down by date.
COUNT_CAP = 10_000


class NoDelete:
    """Rows of the ledger nobody deletes in the admin, superusers included (no "Delete
    selected", no Delete button): an order is canceled, an account deactivated, a service or a
    customer disabled. A deliberate delete is the shell's (``manage.py shell``)."""

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


class MachineWritten:
    """Rows the services write: seen with the view permission, never added, edited or deleted
    in the admin (superusers included); operators act through the admin actions only."""

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False


class CappedPaginator(Paginator):
    """Counts at most COUNT_CAP rows (one index-bounded ``count`` over a LIMIT); a list without
    filters over a table the planner's statistics call large takes that estimate instead (a
    small, new or never-analyzed table is counted: its estimate may say 0). Pages stop at the
    cap, so no page ever needs a deep OFFSET."""

    @cached_property
    def count(self) -> int:
        qs = self.object_list
        if not isinstance(qs, QuerySet):
            return len(qs)
        if not qs.query.where and estimated_rows(qs.model) >= COUNT_CAP:
            return COUNT_CAP
        # Without the list's ordering: the count may then read whichever index its filter has.
        return qs.order_by()[:COUNT_CAP].count()


def estimated_rows(model: type[Model]) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = %s::regclass",
            [model._meta.db_table],
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


class ChoicesFilter(admin.SimpleListFilter):
    """A filter whose choices are given, never read from the table."""

    field = ""

    def choices_list(self) -> list[tuple[str, str]]:
        raise NotImplementedError

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return self.choices_list()

    def queryset(self, request: Any, queryset: QuerySet) -> QuerySet:
        value = self.value()
        return queryset.filter(**{self.field: value}) if value else queryset


class ActionFilter(ChoicesFilter):
    title = "action"
    parameter_name = "action"
    field = "action"

    def choices_list(self) -> list[tuple[str, str]]:
        return [(a, a) for a in app_settings.ACTIONS]


class TierFilter(ChoicesFilter):
    title = "tier"
    parameter_name = "tier"
    field = "tier"

    def choices_list(self) -> list[tuple[str, str]]:
        return [(t, t) for t in app_settings.TIERS]


class ReasonFilter(ChoicesFilter):
    """Failure reasons in their five groups (``reasons.GROUPS``): the groups, and the reasons of
    the group chosen (or of the chosen reason's group), each in words."""

    title = "failure reason"
    parameter_name = "reason"
    field = "failure_reason"

    def choices_list(self) -> list[tuple[str, str]]:
        value = self.value() or ""
        chosen = reasons.BY_KEY.get(value.removeprefix("group:")) or reasons.group_of(value)
        out = []
        for group in reasons.GROUPS:
            out.append((f"group:{group.key}", f"{group.title} (all)"))
            if group is chosen:
                # push_http is only ever written with the status after it (push_http_<status>).
                out += [(r.value, f"· {reasons.words(r)}") for r in group.reasons]
        return out

    def queryset(self, request: Any, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if not value:
            return queryset
        # The failed tasks' index by (reason, finished_at).
        queryset = queryset.filter(status="failed")
        group = reasons.BY_KEY.get(value.removeprefix("group:"))
        values = [str(r) for r in group.reasons] if group else [value]
        found = Q(failure_reason__in=values)
        if Reason.PUSH_REJECTED in values:
            found |= Q(failure_reason__startswith=f"{Reason.PUSH_REJECTED}_")
        return queryset.filter(found)


class StateFilter(ChoicesFilter):
    """Unfinished tasks by where they stand now: due or waiting in the queue, a lease running or
    run out. Each reads its status's own index."""

    title = "state now"
    parameter_name = "state"

    def choices_list(self) -> list[tuple[str, str]]:
        return [
            ("live", "unfinished (queued, leased, pending)"),
            ("due", "queued, due now"),
            ("later", "queued, due later"),
            ("running", "leased, lease running"),
            ("overdue", "leased, lease ran out"),
        ]

    def queryset(self, request: Any, queryset: QuerySet) -> QuerySet:
        now = timezone.now()
        match self.value():
            case "live":
                return queryset.filter(status__in=LIVE_STATUSES)
            case "due":
                return queryset.filter(status=TaskStatus.QUEUED, available_at__lte=now)
            case "later":
                return queryset.filter(status=TaskStatus.QUEUED, available_at__gt=now)
            case "running":
                return queryset.filter(status=TaskStatus.LEASED, leased_until__gt=now)
            case "overdue":
                return queryset.filter(status=TaskStatus.LEASED, leased_until__lte=now)
        return queryset


def moment_param(moment: datetime) -> str:
    """A moment as the admin's URLs carry it (UTC, to the microsecond)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FinishedFilter(admin.ListFilter):
    """Tasks finished in a window, ``finished_from`` (included) to ``finished_to`` (excluded),
    moments as ``moment_param`` writes them: the dashboard's counts link here with the exact
    window they counted. The choices offer the last hour, 6 hours, 48 hours or 7 days."""

    title = "finished"
    parameters = ("finished_from", "finished_to")
    PRESETS = (("last hour", 1), ("last 6 hours", 6), ("last 48 hours", 48), ("last 7 days", 168))

    def __init__(self, request: Any, params: dict, model: Any, model_admin: Any) -> None:
        super().__init__(request, params, model, model_admin)
        for name in self.parameters:
            if name in params:
                self.used_parameters[name] = params.pop(name)[-1]

    def has_output(self) -> bool:
        return True

    def expected_parameters(self) -> list[str]:
        return list(self.parameters)

    def window(self) -> tuple[datetime | None, datetime | None] | None:
        """(from, to) as given (either may be missing); None when one cannot be read."""
        out = []
        for name in self.parameters:
            value = self.used_parameters.get(name)
            try:
                moment = datetime.fromisoformat(value) if value else None
            except ValueError:
                return None
            if moment is not None and moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            out.append(moment)
        return out[0], out[1]

    def queryset(self, request: Any, queryset: QuerySet) -> QuerySet:
        if not self.used_parameters:
            return queryset
        window = self.window()
        if window is None:
            return queryset.none()
        start, end = window
        queryset = queryset.filter(finished_at__isnull=False)
        if start is not None:
            queryset = queryset.filter(finished_at__gte=start)
        if end is not None:
            queryset = queryset.filter(finished_at__lt=end)
        return queryset

    def choices(self, changelist: Any) -> Any:
        yield {
            "selected": not self.used_parameters,
            "query_string": changelist.get_query_string(remove=list(self.parameters)),
            "display": "any time",
        }
        now = timezone.now()
        for label, hours in self.PRESETS:
            yield {
                "selected": False,
                "query_string": changelist.get_query_string(
                    {"finished_from": moment_param(now - timedelta(hours=hours))},
                    remove=["finished_to"],
                ),
                "display": label,
            }
        if self.used_parameters:
            window = self.window() or (None, None)
            ends = [f"{timezone.localtime(m):%m-%d %H:%M:%S}" if m else "…" for m in window]
            yield {
                "selected": True,
                "query_string": changelist.get_query_string(),
                "display": f"{ends[0]} to {ends[1] if window[1] else 'now'}",
            }


# --- dates -----------------------------------------------------------------------------------


class DrillDownFilter(admin.SimpleListFilter):
    """Year, then month, then day: the choices come from the oldest and newest rows (two index
    lookups), never from grouping the table; the chosen period is a key range."""

    title = "created"
    parameter_name = "created"

    def bounds(self, model_admin: Any) -> tuple[datetime, datetime] | None:
        raise NotImplementedError

    def range_filter(self, queryset: QuerySet, start: datetime, end: datetime) -> QuerySet:
        raise NotImplementedError

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        bounds = self.bounds(model_admin)
        if bounds is None:
            return []
        zone = timezone.get_current_timezone()
        first, last = (b.astimezone(zone) for b in bounds)
        value = self.value() or ""
        parts = [int(p) for p in value.split("-") if p.isdigit()]
        if not parts:
            return [(str(y), str(y)) for y in range(last.year, first.year - 1, -1)]
        if len(parts) == 1:
            year = parts[0]
            return [(value, f"{year} (all)")] + [
                (f"{year}-{m:02d}", f"{year}-{m:02d}")
                for m in range(12, 0, -1)
                if (first.year, first.month) <= (year, m) <= (last.year, last.month)
            ]
        year, month = parts[0], parts[1]
        days = (datetime(year + month // 12, month % 12 + 1, 1) - datetime(year, month, 1)).days
        return [(f"{year}-{month:02d}", f"{year}-{month:02d} (all)")] + [
            (f"{year}-{month:02d}-{d:02d}", f"{year}-{month:02d}-{d:02d}")
            for d in range(days, 0, -1)
            if first.date() <= datetime(year, month, d).date() <= last.date()
        ]

    def queryset(self, request: Any, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if not value:
            return queryset
        try:
            parts = [int(p) for p in value.split("-")]
        except ValueError:
            return queryset.none()
        zone = timezone.get_current_timezone()
        if len(parts) == 1:
            start = datetime(parts[0], 1, 1, tzinfo=zone)
            end = datetime(parts[0] + 1, 1, 1, tzinfo=zone)
        elif len(parts) == 2:
            start = datetime(parts[0], parts[1], 1, tzinfo=zone)
            end = datetime(parts[0] + parts[1] // 12, parts[1] % 12 + 1, 1, tzinfo=zone)
        else:
            start = datetime(parts[0], parts[1], parts[2], tzinfo=zone)
            end = start + timedelta(days=1)
        return self.range_filter(queryset, start, end)


class UlidCreatedFilter(DrillDownFilter):
    """For tasks: a ULID key encodes when it was made, so a period is a primary-key range."""

    def bounds(self, model_admin: Any) -> tuple[datetime, datetime] | None:
        model = model_admin.model
        first = model.objects.order_by("pk").values_list("pk", flat=True).first()
        last = model.objects.order_by("-pk").values_list("pk", flat=True).first()
        return None if first is None else (ulid_time(first), ulid_time(last))

    def range_filter(self, queryset: QuerySet, start: datetime, end: datetime) -> QuerySet:
        return queryset.filter(pk__gte=ulid_floor(start), pk__lt=ulid_floor(end))


class FieldCreatedFilter(DrillDownFilter):
    """For tables with an index on a date field (``date_field``)."""

    date_field = "created_at"

    def bounds(self, model_admin: Any) -> tuple[datetime, datetime] | None:
        model = model_admin.model
        f = self.date_field
        first = model.objects.order_by(f).values_list(f, flat=True).first()
        last = model.objects.order_by(f"-{f}").values_list(f, flat=True).first()
        return None if first is None else (first, last)

    def range_filter(self, queryset: QuerySet, start: datetime, end: datetime) -> QuerySet:
        return queryset.filter(**{f"{self.date_field}__gte": start, f"{self.date_field}__lt": end})


class SubscribedFilter(FieldCreatedFilter):
    title = "subscribed"
    parameter_name = "subscribed"
    date_field = "subscribed_at"
