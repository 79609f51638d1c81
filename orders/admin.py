from __future__ import annotations

from django.contrib import admin

from orders.models import Order
from telegram_tasks.admin import pretty_json


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "action",
        "link",
        "post_id",
        "status",
        "quantity",
        "remains",
        "per_call",
        "interval_seconds",
        "next_run_at",
        "created_at",
    )
    list_filter = ("status", "action", "created_at")
    search_fields = ("=id", "link", "link_hash")
    date_hierarchy = "created_at"
    list_per_page = 100
    readonly_fields = ("link_hash", "remains", "status", "meta_pretty", "created_at", "updated_at")
    # What an order targets and how much it buys are fixed once tasks may exist for it.
    locked_after_create = ("action", "link", "post_id", "quantity", "per_call")

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ("link_hash", "remains", "status", "created_at", "updated_at")
        return (*self.locked_after_create, *self.readonly_fields)

    def get_fields(self, request, obj=None):
        editable = [
            "action",
            "link",
            "post_id",
            "quantity",
            "per_call",
            "interval_seconds",
            "next_run_at",
        ]
        if obj is None:
            return [*editable, "execution_meta"]
        return [
            *editable,
            "status",
            "remains",
            "link_hash",
            "execution_meta",
            "meta_pretty",
            "created_at",
            "updated_at",
        ]

    @admin.display(description="execution_meta (formatted)")
    def meta_pretty(self, obj: Order) -> str:
        return pretty_json(obj.execution_meta)
