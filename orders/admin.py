from __future__ import annotations

from django.contrib import admin, messages
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from orders.models import Order
from telegram_tasks import selectors, services
from telegram_tasks.admin import pass_stats_html, pass_stats_short, pretty_json
from telegram_tasks.admin.lists import ActionFilter, CappedPaginator, FieldCreatedFilter
from telegram_tasks.links import InvalidTelegramLink, normalize_link


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "action",
        "link",
        "post_id",
        "status",
        "execution_mode",
        "priority",
        "quantity",
        "remains",
        "per_call",
        "interval_seconds",
        "next_run_at",
        "paused_at",
        "last_pass",
        "created_at",
    )
    list_select_related = ("pass_stats",)
    list_filter = (
        "status", ActionFilter, "execution_mode", ("paused_at", admin.EmptyFieldListFilter),
        FieldCreatedFilter,
    )  # fmt: skip
    actions = ("cancel_orders", "pause_orders", "resume_orders")
    # Exact keys only (see get_search_results): an order id, or a link (any form of it).
    search_fields = ("link_hash",)
    search_help_text = "order id, or a Telegram link (t.me/…, @name) — matched exactly"
    show_full_result_count = False
    paginator = CappedPaginator
    list_per_page = 100
    readonly_fields = (
        "link_hash", "remains", "status", "paused_at", "subscriptions", "passes", "meta_pretty",
        "created_at", "updated_at",
    )  # fmt: skip
    # What an order targets and how much it buys are fixed once tasks may exist for it.
    locked_after_create = ("action", "link", "post_id", "quantity", "per_call", "duration_days")

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
            "priority",
            "duration_days",
            "execution_mode",
            "next_run_at",
        ]
        if obj is None:
            return [*editable, "execution_meta"]
        return [
            *editable,
            "status",
            "remains",
            "subscriptions",
            "passes",
            "link_hash",
            "execution_meta",
            "meta_pretty",
            "created_at",
            "updated_at",
        ]

    @admin.display(description="last pass")
    def last_pass(self, obj: Order) -> str:
        return pass_stats_short(getattr(obj, "pass_stats", None))

    @admin.display(description="what the last passes found")
    def passes(self, obj: Order) -> SafeString:
        return pass_stats_html(selectors.order_pass_stats(obj.pk))

    @admin.display(description="subscriptions")
    def subscriptions(self, obj: Order) -> SafeString:
        counts = selectors.order_memberships(obj.pk, now=timezone.now())
        url = reverse("admin:telegram_tasks_membership_changelist")
        return format_html(
            "{} subscribed · {} unsubscribed · {} due for unsubscribe · "
            '<a href="{}?order__id__exact={}">memberships</a>',
            counts.subscribed,
            counts.unsubscribed,
            counts.due,
            url,
            obj.pk,
        )

    @admin.display(description="execution_meta (formatted)")
    def meta_pretty(self, obj: Order) -> str:
        return pretty_json(obj.execution_meta)

    @admin.action(
        description="Cancel (fail and roll back their unfinished tasks)", permissions=["cancel"]
    )
    def cancel_orders(self, request, queryset) -> None:
        done = services.orders_cancel(
            order_ids=list(queryset.values_list("pk", flat=True)), now=timezone.now()
        )
        self.message_user(request, f"{done} order(s) canceled.", messages.SUCCESS)

    @admin.action(description="Pause (no new tasks; queued ones released)", permissions=["pause"])
    def pause_orders(self, request, queryset) -> None:
        done = services.orders_pause(
            order_ids=list(queryset.values_list("pk", flat=True)), now=timezone.now()
        )
        self.message_user(request, f"{done} order(s) paused.", messages.SUCCESS)

    @admin.action(description="Resume", permissions=["pause"])
    def resume_orders(self, request, queryset) -> None:
        done = services.orders_resume(
            order_ids=list(queryset.values_list("pk", flat=True)), now=timezone.now()
        )
        self.message_user(request, f"{done} order(s) resumed.", messages.SUCCESS)

    def has_cancel_permission(self, request) -> bool:
        return request.user.has_perm("orders.cancel_order")

    def has_pause_permission(self, request) -> bool:
        return request.user.has_perm("orders.pause_order")

    def save_model(self, request, obj: Order, form, change: bool) -> None:
        if not change:
            super().save_model(request, obj, form, change)
            return
        # Only what the form edits: remains, status and the schedule's state belong to the
        # services, and a report committed while the form was open must not be written back.
        fields = [f for f in form.changed_data if f not in self.get_readonly_fields(request, obj)]
        if fields:
            obj.save(update_fields=[*fields, "updated_at"])

    def get_search_results(self, request, queryset, search_term: str):
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.isdigit():
            return queryset.filter(pk=int(term)), False
        try:
            target = normalize_link(term)
        except InvalidTelegramLink:
            return queryset.none(), False
        found = queryset.filter(link_hash=target.link_hash)
        if target.post_id is not None:
            found = found.filter(post_id=target.post_id)
        return found, False
