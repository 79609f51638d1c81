from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import format_html

from telegram_tasks import services
from telegram_tasks.failures import Reason
from telegram_tasks.models import TelegramAccount, TelegramTask


def pretty_json(value: Any) -> str:
    """Read-only JSON, indented, for admin change pages."""
    if value is None:
        return "—"
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre style="margin:0;white-space:pre-wrap">{}</pre>', text)


@admin.register(TelegramAccount)
class TelegramAccountAdmin(admin.ModelAdmin):
    list_display = ("id", "provider_account_id", "phone", "is_active", "created_at", "updated_at")
    list_filter = ("is_active", "created_at")
    search_fields = ("=id", "provider_account_id", "phone")
    date_hierarchy = "created_at"
    readonly_fields = ("meta_pretty", "created_at", "updated_at")
    fields = (
        "provider_account_id",
        "phone",
        "is_active",
        "meta",
        "meta_pretty",
        "created_at",
        "updated_at",
    )
    list_per_page = 100

    @admin.display(description="meta (formatted)")
    def meta_pretty(self, obj: TelegramAccount) -> str:
        return pretty_json(obj.meta)

    def get_readonly_fields(self, request, obj=None):
        # The provider's id is the upsert key of account sync; renaming it would split an account.
        if obj is not None:
            return ("provider_account_id", *self.readonly_fields)
        return self.readonly_fields


@admin.register(TelegramTask)
class TelegramTaskAdmin(admin.ModelAdmin):
    """Tasks are written by machines only; operators change them through admin actions."""

    list_display = (
        "id",
        "order_id",
        "action",
        "status",
        "provider_account_id",
        "attempt",
        "available_at",
        "leased_until",
        "failure_reason",
        "created_at",
    )
    list_filter = ("status", "action", "failure_reason", "created_at")
    actions = ("requeue_tasks", "fail_tasks")
    search_fields = ("=id", "=order__id", "provider_account_id", "provider_task_id", "link_hash")
    date_hierarchy = "created_at"
    list_select_related = False
    show_full_result_count = False
    list_per_page = 100
    fields = (
        "id",
        "order",
        "action",
        "status",
        "telegram_account",
        "provider_account_id",
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

    @admin.display(description="payload")
    def payload_pretty(self, obj: TelegramTask) -> str:
        return pretty_json(obj.payload)

    @admin.display(description="result")
    def result_pretty(self, obj: TelegramTask) -> str:
        return pretty_json(obj.result)

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

    # Machine-written: seen with the view permission, changed only through the actions above.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
