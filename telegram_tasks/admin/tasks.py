"""Tasks in the admin: machine-written, read-only, changed through actions."""

from __future__ import annotations

import re
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone

from telegram_tasks import services
from telegram_tasks.admin.display import at_second, pretty_json
from telegram_tasks.admin.lists import (
    ActionFilter,
    CappedPaginator,
    MachineWritten,
    ReasonFilter,
    UlidCreatedFilter,
)
from telegram_tasks.failures import Reason
from telegram_tasks.models import LIVE_STATUSES, TaskStatus, TelegramAccount, TelegramTask

ULID = re.compile(r"^[0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{26}$")


STATUS_ORDERING = {
    TaskStatus.QUEUED: "-reserved_until",
    TaskStatus.LEASED: "-leased_until",
    TaskStatus.PENDING: "-leased_until",
    TaskStatus.DONE: "-finished_at",
    TaskStatus.FAILED: "-finished_at",
}


def of_order(order_id: int) -> Q:
    """An order's tasks as its two partial indexes see them: live, or finished."""
    return Q(order_id=order_id, status__in=LIVE_STATUSES) | Q(
        order_id=order_id, finished_at__isnull=False
    )


def of_account(account_id: int) -> Q:
    return Q(telegram_account_id=account_id, status__in=LIVE_STATUSES) | Q(
        telegram_account_id=account_id, finished_at__isnull=False
    )


@admin.register(TelegramTask)
class TelegramTaskAdmin(MachineWritten, admin.ModelAdmin):
    """Tasks are written by machines only; operators change them through admin actions."""

    list_display = (
        "id",
        "order_id",
        "action",
        "status",
        "provider_account_id",
        "attempt",
        "when",
        "failure_reason",
    )
    list_filter = (
        "status", ActionFilter, ReasonFilter, "execution_mode", "provider", UlidCreatedFilter,
    )  # fmt: skip
    actions = ("requeue_tasks", "fail_tasks")
    # Exact keys only (see get_search_results): a task id, an order id, a provider account id
    # or a provider task id.
    search_fields = ("id",)
    search_help_text = "task id, order id, provider account id or provider task id (exact)"
    list_select_related = False
    show_full_result_count = False
    paginator = CappedPaginator
    list_per_page = 100
    fields = (
        "id",
        "order",
        "action",
        "status",
        "telegram_account",
        "provider_account_id",
        "provider",
        "link_hash",
        "per_call",
        "available_at",
        "reserved_until",
        "leased_until",
        "lease_id",
        "attempt",
        "provider_task_id",
        "failure_reason",
        "last_error",
        "payload_pretty",
        "result_pretty",
        "finished_at",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields
    change_form_template = "admin/telegram_tasks/telegramtask/change_form.html"

    class Media:
        css = {"all": ["telegram_tasks/admin.css"]}

    def get_urls(self) -> list[Any]:
        own = [
            path(
                "<path:object_id>/requeue/",
                self.admin_site.admin_view(self.requeue_one),
                name="telegram_tasks_telegramtask_requeue",
            ),
            path(
                "<path:object_id>/fail/",
                self.admin_site.admin_view(self.fail_one),
                name="telegram_tasks_telegramtask_fail",
            ),
        ]
        return own + super().get_urls()

    def change_view(
        self, request: Any, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> Any:
        extra = {
            "can_requeue": self.has_requeue_permission(request),
            "can_fail": self.has_fail_permission(request),
            "live_statuses": [s.value for s in LIVE_STATUSES],
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, extra)

    def requeue_one(self, request: Any, object_id: str) -> HttpResponse:
        """The Requeue button of a task's page (the list's action, for one task)."""
        return self._one(request, object_id, self.has_requeue_permission, self.requeue_tasks)

    def fail_one(self, request: Any, object_id: str) -> HttpResponse:
        """The Fail button of a task's page."""
        return self._one(request, object_id, self.has_fail_permission, self.fail_tasks)

    def _one(self, request: Any, object_id: str, allowed: Any, action: Any) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not allowed(request):
            raise PermissionDenied
        action(request, TelegramTask.objects.filter(pk=object_id))
        return HttpResponseRedirect(
            reverse("admin:telegram_tasks_telegramtask_change", args=[object_id])
        )

    @admin.display(description="payload")
    def payload_pretty(self, obj: TelegramTask) -> str:
        return pretty_json(obj.payload)

    @admin.display(description="result")
    def result_pretty(self, obj: TelegramTask) -> str:
        return pretty_json(obj.result)

    @admin.display(description="when", ordering="available_at")
    def when(self, obj: TelegramTask) -> str:
        """The one moment that matters for the task's status (the list stays 1366 px wide;
        every moment is on the task's page, its creation in its id)."""
        if obj.status == TaskStatus.LEASED:
            return f"lease until {at_second(obj.leased_until)}"
        if obj.status == TaskStatus.QUEUED:
            return f"runs from {at_second(obj.available_at)}"
        if obj.status == TaskStatus.PENDING:
            return f"pending until {at_second(obj.leased_until)}"
        return f"{obj.status} {at_second(obj.finished_at)}"

    @admin.action(
        description="Requeue (back to the queue now, same account, fresh reservation)",
        permissions=["requeue"],
    )
    def requeue_tasks(self, request, queryset) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        requeued, refused = services.tasks_requeue(task_ids=ids, now=timezone.now())
        skipped = len(ids) - requeued - refused
        self.message_user(
            request,
            f"{requeued} task(s) requeued; {refused} could not keep their account (failed as "
            f"lock_lost, or settled as done); {skipped} already finished, left alone.",
            messages.SUCCESS if not refused else messages.WARNING,
        )

    @admin.action(description="Fail (and roll back their reservations)", permissions=["fail"])
    def fail_tasks(self, request, queryset) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        failed = services.tasks_fail(reason=Reason.ADMIN_FAILED, now=timezone.now(), task_ids=ids)
        self.message_user(request, f"{failed} task(s) failed.", messages.SUCCESS)

    def has_requeue_permission(self, request) -> bool:
        return request.user.has_perm("telegram_tasks.requeue_telegramtask")

    def has_fail_permission(self, request) -> bool:
        return request.user.has_perm("telegram_tasks.fail_telegramtask")

    def get_search_results(
        self, request: Any, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        if ULID.match(term):
            return queryset.filter(pk=term.upper()), False
        if term.isdigit():
            return queryset.filter(of_order(int(term))), False
        found = Q(provider_task_id=term)
        account = (
            TelegramAccount.objects.filter(provider_account_id=term)
            .values_list("pk", flat=True)
            .first()
        )
        if account is not None:
            found |= of_account(account)
        return queryset.filter(found), False

    def get_queryset(self, request: Any) -> QuerySet:
        queryset = super().get_queryset(request)
        if request.GET.get("status__exact") == TaskStatus.DONE:
            # Always true of a done task; said so the finished tasks' index (by finished_at)
            # can serve the list.
            queryset = queryset.filter(finished_at__isnull=False)
        return queryset

    def get_ordering(self, request: Any) -> list[str]:
        # Each status filter reads that status's own index, newest first by the time it keeps;
        # by the key, a rare status would be searched for through the whole history.
        if request.GET.get(ReasonFilter.parameter_name):
            return ["-finished_at"]
        return [STATUS_ORDERING.get(request.GET.get("status__exact", ""), "-id")]
