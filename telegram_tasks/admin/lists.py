"""What keeps the admin's list pages flat however large the ledger grows: counts capped (an
estimate for a whole table), filters whose choices are known without reading the table,
searches on exact indexed keys, and a date drill-down by key ranges."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import Model, QuerySet
from django.utils import timezone

from telegram_tasks.conf import app_settings
from telegram_tasks.failures import Reason
from telegram_tasks.models import ulid_floor, ulid_time

# Rows a list counts exactly (and pages through); past it, filter or drill down by date.
COUNT_CAP = 10_000


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
    title = "failure reason"
    parameter_name = "reason"
    field = "failure_reason"

    def choices_list(self) -> list[tuple[str, str]]:
        # push_http is only ever written with the status after it (push_http_<status>).
        return [(r.value, r.value) for r in Reason if r is not Reason.PUSH_REJECTED] + [
            ("push_http", "push_http_* (refused)")
        ]

    def queryset(self, request: Any, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if not value:
            return queryset
        # The failed tasks' index by (reason, finished_at).
        queryset = queryset.filter(status="failed")
        if value == "push_http":
            return queryset.filter(failure_reason__startswith="push_http_")
        return queryset.filter(failure_reason=value)


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
