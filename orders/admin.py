from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from orders import money
from orders.models import Order
from orders.selectors import refill_word, status_word
from telegram_tasks import selectors, services
from telegram_tasks.admin import pass_stats_html, pass_stats_short, pretty_json
from telegram_tasks.admin.display import (
    order_recent_tasks,
    order_tasks_url,
    progress_bar,
    tasks_table,
)
from telegram_tasks.admin.lists import ActionFilter, CappedPaginator, FieldCreatedFilter
from telegram_tasks.admin.params import (
    FORM_PARAMS,
    action_params_json,
    option_field,
    params_summary,
    reactions_field,
)
from telegram_tasks.conf import app_settings
from telegram_tasks.links import InvalidTelegramLink, normalize_link
from telegram_tasks.params import declared

HELP = {
    "action": "What each unit is: one of the configured actions (TELEGRAM_TASKS['ACTIONS']).",
    "link": "The Telegram target: t.me/channel, @channel, t.me/channel/123 (a post), "
    "t.me/+invite, t.me/name_bot?start=ref (a bot start). Stored normalized.",
    "post_id": "The post a view or reaction acts on; taken from the link when it names one.",
    "quantity": "Units to deliver in all (each task delivers per_call of them).",
    "per_call": "Units one task delivers (one account, one action).",
    "interval_seconds": "Drip-feed: at most one task per this many seconds (0: as fast as "
    "accounts allow).",
    "priority": "Higher first when orders of one action want more accounts than there are.",
    "duration_days": "Subscribe orders: each account unsubscribes this many days after its "
    "subscription (empty: it stays).",
    "execution_mode": "pull: the provider pulls the tasks; push: the dispatcher sends each one.",
    "next_run_at": "Not before this moment (empty: now). Generation moves it as it schedules.",
    "execution_meta": "Free JSON kept with the order for the provider's own use.",
}


class OrderForm(forms.ModelForm):
    """The order form: the action chosen among the configured ones, every field explained, and
    a field for each parameter an action may take (``params``): only the chosen action's are
    shown and kept; a missing or invalid one is that field's error."""

    action = forms.ChoiceField(choices=(), help_text=HELP["action"])
    reactions = reactions_field()
    option = option_field()

    class Meta:
        model = Order
        fields = (
            "action", "link", "post_id", "quantity", "per_call", "interval_seconds", "priority",
            "duration_days", "execution_mode", "providers", "next_run_at", "execution_meta",
        )  # fmt: skip
        help_texts = HELP
        widgets = {"providers": forms.CheckboxSelectMultiple}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "action" in self.fields:  # (read-only once the order exists)
            self.fields["action"].choices = [(a, a) for a in app_settings.ACTIONS]
            self.fields["action"].widget.attrs["data-action-params"] = action_params_json()
        params = self.instance.params if isinstance(self.instance.params, dict) else {}
        if isinstance(params.get("reactions"), list):
            self.initial.setdefault("reactions", " ".join(map(str, params["reactions"])))
        self.initial.setdefault("option", params.get("option"))

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        takes = declared(data.get("action") or self.instance.action)
        # The fields of the chosen action's parameters replace its stored values; a start
        # parameter comes from the link (Order.clean).
        params = self.instance.params if isinstance(self.instance.params, dict) else {}
        params = {k: v for k, v in params.items() if k not in FORM_PARAMS}
        for name in FORM_PARAMS:
            if name in takes and data.get(name) not in (None, ""):
                params[name] = data[name]
        self.instance.params = params
        return data

    def add_error(self, field: str | None, error: Any) -> None:
        """Order.clean says which parameter is at fault (the error's code): its field shows it;
        a start parameter's error shows on the link."""
        errors = getattr(error, "error_dict", None)
        if field is None and errors and "params" in errors and "params" not in self.fields:
            for problem in errors.pop("params"):
                name = {"start_param": "link"}.get(problem.code, problem.code)
                super().add_error(name if name in self.fields else None, problem)
            if not errors:
                return
            error = ValidationError(errors)
        super().add_error(field, error)


@admin.register(Order)
class OrderAdmin(admin.ModelAdmin):
    form = OrderForm

    class Media:
        css = {"all": ["telegram_tasks/admin.css"]}

    # What an operator scans a list for (newest first: ids follow creation); per call, interval
    # and the moments are on the order's page.
    list_display = (
        "id",
        "action",
        "target",
        "state",
        "mode",
        "priority",
        "delivered",
        "customer",
        "next_run_at",
        "last_pass",
    )
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
        "progress", "latest_tasks", "link_hash", "remains", "status", "paused_at",
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
            return [*editable, "execution_meta"]
        panel = ["customer", "service", "paid", "start_count", "refill_of", "refills_html"]
        return [
            "progress",
            *(panel if obj.customer_id else []),
            *editable,
            "status",
            "paused_at",
            "remains",
            "latest_tasks",
            "subscriptions",
            "passes",
            "link_hash",
            "execution_meta",
            "meta_pretty",
            "created_at",
            "updated_at",
        ]

    def param_fields(self, obj: Order | None) -> list[str]:
        """Every parameter field on a new order (the form shows the chosen action's); an
        existing order's action's own."""
        if obj is None:
            return list(FORM_PARAMS)
        return [p for p in FORM_PARAMS if p in declared(obj.action)]

    @admin.display(description="state", ordering="status")
    def state(self, obj: Order) -> str:
        label = obj.get_status_display()
        return f"{label} (paused)" if obj.paused_at else label

    @admin.display(description="target", ordering="link")
    def target(self, obj: Order) -> str:
        parts = [
            obj.link,
            f"post {obj.post_id}" if obj.post_id is not None else "",
            params_summary(obj.params),
        ]
        return " · ".join(p for p in parts if p)

    @admin.display(description="mode", ordering="execution_mode")
    def mode(self, obj: Order) -> str:
        return obj.execution_mode

    @admin.display(description="delivered")
    def delivered(self, obj: Order) -> str:
        return f"{obj.quantity - obj.remains} / {obj.quantity}"

    @admin.display(description="progress")
    def progress(self, obj: Order) -> SafeString:
        delivered = obj.quantity - obj.remains
        in_flight = min(selectors.order_units_in_flight(obj.pk), obj.remains)
        return progress_bar(delivered, in_flight, obj.remains - in_flight)

    @admin.display(description="latest tasks")
    def latest_tasks(self, obj: Order) -> SafeString:
        return tasks_table(order_recent_tasks(obj.pk), more=order_tasks_url(obj.pk))

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

    @admin.display(description="money")
    def paid(self, obj: Order) -> str:
        """What the customer paid, got back and is charged in the end (the panel's status)."""
        settled = f"settled {obj.settled_at:%Y-%m-%d %H:%M:%S}" if obj.settled_at else "open"
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
        fields = [f for f in fields if f != "providers"]  # (many-to-many: saved by save_related)
        if set(fields) & set(FORM_PARAMS):  # the parameter fields are the order's params
            fields = [*(f for f in fields if f not in FORM_PARAMS), "params"]
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


# The panel side (services, customers, keys, the ledger) registers itself on import.
from orders import panel_admin  # noqa: E402, F401
