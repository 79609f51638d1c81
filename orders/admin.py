from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from orders import money
from orders.models import Order
from orders.order_form import OrderForm
from orders.selectors import panel_id, refill_word, status_word
from telegram_tasks import selectors, services
from telegram_tasks.admin import pass_stats_html, pass_stats_short, pretty_json, reasons
from telegram_tasks.admin.buttons import Button, ObjectButtons
from telegram_tasks.admin.display import (
    at_second,
    at_short,
    order_recent_tasks,
    order_tasks_url,
    progress_bar,
    tasks_table,
)
from telegram_tasks.admin.lists import (
    ActionFilter,
    CappedPaginator,
    FieldCreatedFilter,
    NoDelete,
)
from telegram_tasks.admin.params import FORM_PARAMS, params_summary
from telegram_tasks.conf import app_settings
from telegram_tasks.links import InvalidTelegramLink, normalize_link
from telegram_tasks.params import declared


def is_active(order: Order) -> bool:
    return order.status in Order.ACTIVE


class OrderChangeList(ChangeList):
    """Counts the failed tasks of the page's orders in one statement, once its rows are known."""

    def get_results(self, request: Any) -> None:
        super().get_results(request)
        failed = selectors.orders_failed_tasks([o.pk for o in self.result_list])
        for order in self.result_list:
            order.failed_tasks = failed.get(order.pk, 0)


@admin.register(Order)
class OrderAdmin(ObjectButtons, NoDelete, admin.ModelAdmin):
    form = OrderForm
    buttons = (
        Button("pause", "Pause", "pause_orders", "pause", "No new tasks; queued ones released",
               applies=lambda o: is_active(o) and o.paused_at is None),
        Button("resume", "Resume", "resume_orders", "pause", "Due again at once",
               applies=lambda o: is_active(o) and o.paused_at is not None),
        Button("cancel", "Cancel", "cancel_orders", "cancel",
               "End it now: its unfinished tasks fail and give back their accounts; a panel "
               "order's undelivered part is refunded", applies=is_active),
    )  # fmt: skip

    class Media:
        css = {"all": ["telegram_tasks/admin.css"]}

    # What an operator scans a list for (newest first: ids follow creation); per call, interval
    # and the moments are on the order's page.
    list_display = (
        "id", "action_text", "target", "state", "priority", "delivered", "failed", "customer",
        "next_run", "last_pass",
    )  # fmt: skip
    list_select_related = ("pass_stats", "customer")
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
        "progress", "latest_tasks", "link_hash", "remains", "status", "ended", "paused_at",
        "subscriptions", "passes", "meta_pretty", "created_at", "updated_at", "customer",
        "service", "paid", "start_count", "refill_of", "refills_html",
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
            *self.param_fields(obj),
            "quantity",
            "per_call",
            "interval_seconds",
            "priority",
            "duration_days",
            "execution_mode",
            "providers",
            "next_run_at",
        ]
        if obj is None:
            # "Create it anyway" once the form has been sent (it is asked only then: see
            # OrderForm).
            anyway = ["make_anyway"] if request.method == "POST" else []
            return [*anyway, *editable, "execution_meta"]
        panel = ["customer", "service", "paid", "start_count", "refill_of", "refills_html"]
        subscribes = obj.action in app_settings.ACTIONS and (
            app_settings.policy(obj.action).gate == "subscribe"
        )
        # execution_meta once: editable where the user may change the order, else formatted.
        meta = "execution_meta" if self.has_change_permission(request, obj) else "meta_pretty"
        return [
            "progress",
            *(["ended"] if obj.end_reason else []),
            *(panel if obj.customer_id else []),
            *editable,
            "status",
            "paused_at",
            "remains",
            "latest_tasks",
            *(["subscriptions"] if subscribes else []),
            *(["passes"] if is_active(obj) else []),
            "link_hash",
            meta,
            "created_at",
            "updated_at",
        ]

    def param_fields(self, obj: Order | None) -> list[str]:
        """Every parameter field on a new order (the form shows the chosen action's); an
        existing order's action's own."""
        if obj is None:
            return list(FORM_PARAMS)
        return [p for p in FORM_PARAMS if p in declared(obj.action)]

    def get_changelist(self, request: Any, **kwargs: Any) -> type[ChangeList]:
        return OrderChangeList

    @admin.display(description="state", ordering="status")
    def state(self, obj: Order) -> SafeString | str:
        """The status in words, paused or not; an order the broker ended says why."""
        label = obj.get_status_display()
        if obj.paused_at and is_active(obj):
            return f"{label} (paused)"
        if obj.end_reason and obj.end_reason != "order_canceled":
            return format_html(
                '{}:<br><span class="tg-muted" title="{}">{}</span>',
                label,
                obj.end_reason,
                reasons.words(obj.end_reason),
            )
        return label

    @admin.display(description="ended")
    def ended(self, obj: Order) -> SafeString | str:
        if not obj.end_reason:
            return "—"
        return format_html("{} (<code>{}</code>)", reasons.words(obj.end_reason), obj.end_reason)

    @admin.display(description="failed")
    def failed(self, obj: Order) -> SafeString | str:
        """Its failed tasks (a link to them); counted for the whole page at once."""
        n = getattr(obj, "failed_tasks", 0)
        if not n:
            return "—"
        cap = selectors.FAILED_COUNT_CAP
        return format_html(
            '<a href="{}&amp;status__exact=failed">{}</a>',
            order_tasks_url(obj.pk),
            f"{cap}+" if n >= cap else n,
        )

    @admin.display(description="target", ordering="link")
    def target(self, obj: Order) -> str:
        """The link as an operator writes it (with the post), and the order's params."""
        return " · ".join(p for p in (obj.target, params_summary(obj.params)) if p)

    @admin.display(description="action", ordering="action")
    def action_text(self, obj: Order) -> str:
        """The action, and its execution mode when it is push."""
        return (
            obj.action if obj.execution_mode == "pull" else f"{obj.action} ({obj.execution_mode})"
        )

    @admin.display(description="next run", ordering="next_run_at")
    def next_run(self, obj: Order) -> str:
        """When the next task is due, for an order still running."""
        if not is_active(obj):
            return "—"
        return at_short(obj.next_run_at) if obj.next_run_at else "now"

    @admin.display(description="delivered")
    def delivered(self, obj: Order) -> str:
        return f"{obj.quantity - obj.remains} / {obj.quantity}"

    @admin.display(description="progress")
    def progress(self, obj: Order) -> SafeString:
        delivered = obj.quantity - obj.remains
        in_flight = min(selectors.order_units_in_flight(obj.pk), obj.remains)
        failed = selectors.orders_failed_tasks([obj.pk]).get(obj.pk, 0)
        return progress_bar(
            delivered,
            in_flight,
            obj.remains - in_flight,
            failed=failed,
            failed_url=f"{order_tasks_url(obj.pk)}&status__exact=failed",
        )

    @admin.display(description="latest tasks")
    def latest_tasks(self, obj: Order) -> SafeString:
        return tasks_table(order_recent_tasks(obj.pk), more=order_tasks_url(obj.pk))

    @admin.display(description="last pass")
    def last_pass(self, obj: Order) -> SafeString | str:
        """What the last pass found, for an order that still gets tasks (an ended or paused
        order's last record is history): on one line, the refusals on hover."""
        if not is_active(obj) or obj.paused_at:
            return ""
        stats = getattr(obj, "pass_stats", None)
        if stats is None:
            return "—"
        return format_html(
            '<span class="tg-nowrap" title="{}">made {} · starved {}</span>',
            pass_stats_short(stats),
            stats.created,
            stats.starved_slots,
        )

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

    @admin.display(description="money")
    def paid(self, obj: Order) -> str:
        """What the customer paid, got back and is charged in the end (the panel's status)."""
        settled = f"settled {at_second(obj.settled_at)}" if obj.settled_at else "open"
        return (
            f"charged {money.text(obj.charge)} · refunded {money.text(obj.refund)} · "
            f"net {money.text(obj.charge - obj.refund)} {obj.customer.currency} · {settled} · "
            f"panel status: {status_word(obj)}"
        )

    @admin.display(description="refills")
    def refills_html(self, obj: Order) -> SafeString:
        rows = [
            format_html(
                '<li><a href="{}">refill #{}</a>: {} of {} delivered, {}</li>',
                reverse("admin:orders_order_change", args=[r.pk]),
                r.pk,
                r.quantity - r.remains,
                r.quantity,
                refill_word(r),
            )
            for r in obj.refills.order_by("-pk")[:20]
        ]
        return format_html("<ul>{}</ul>", format_html("".join(rows))) if rows else "none"

    @admin.display(description="execution meta")
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
        fields = [f for f in fields if f != "providers"]  # (many-to-many: saved by save_related)
        if set(fields) & set(FORM_PARAMS):  # the parameter fields are the order's params
            fields = [*(f for f in fields if f not in FORM_PARAMS), "params"]
        if fields:
            obj.save(update_fields=[*fields, "updated_at"])

    def get_search_results(self, request, queryset, search_term: str):
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.isdigit():  # "²" too, which no order id is
            pk = panel_id(term)
            return (queryset.none() if pk is None else queryset.filter(pk=pk)), False
        try:
            target = normalize_link(term)
        except InvalidTelegramLink:
            return queryset.none(), False
        found = queryset.filter(link_hash=target.link_hash)
        if target.post_id is not None:
            found = found.filter(post_id=target.post_id)
        return found, False


# The panel side (services, customers, keys, the ledger) registers itself on import.
from orders import panel_admin  # noqa: E402, F401
