"""The panel side in the admin: the service catalogue (the operator keeps it), customers (their
balance, ledger and keys; a new key is shown once; a balance adjustment is a form that writes a
ledger row with who and why), API keys (revoke) and the ledger (read-only: machine-written).
Imported by ``orders.admin``."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from orders import money
from orders.customers import ApiKey, BalanceEntry, Customer
from orders.exceptions import NotEnoughFunds
from orders.models import Service
from orders.services import api_key_create, api_key_revoke, balance_adjust
from telegram_tasks.admin.display import at_second
from telegram_tasks.admin.lists import ActionFilter, CappedPaginator, MachineWritten, NoDelete
from telegram_tasks.conf import app_settings


class ServiceForm(forms.ModelForm):
    action = forms.ChoiceField(choices=(), help_text="A configured action.")

    class Meta:
        model = Service
        fields = (
            "name", "category", "action", "rate", "min_quantity", "max_quantity", "dripfeed",
            "cancel", "refill_days", "duration_days", "priority", "execution_mode", "params",
            "providers", "enabled",
        )  # fmt: skip
        widgets = {"providers": forms.CheckboxSelectMultiple}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["action"].choices = [(a, a) for a in app_settings.ACTIONS]


@admin.register(Service)
class ServiceAdmin(NoDelete, admin.ModelAdmin):
    form = ServiceForm
    list_display = (
        "id", "name", "category", "action", "rate", "min_q", "max_q", "dripfeed", "cancel",
        "refill", "enabled",
    )  # fmt: skip
    list_filter = ("enabled", ActionFilter, "category")
    search_fields = ("name",)

    # Short headers: the list keeps its last column in sight at 1366 px.
    @admin.display(description="min", ordering="min_quantity")
    def min_q(self, obj: Service) -> int:
        return obj.min_quantity

    @admin.display(description="max", ordering="max_quantity")
    def max_q(self, obj: Service) -> int:
        return obj.max_quantity

    @admin.display(description="refill", ordering="refill_days")
    def refill(self, obj: Service) -> str:
        return f"{obj.refill_days} d" if obj.refill_days else "—"


class AdjustForm(forms.Form):
    amount = forms.DecimalField(
        max_digits=money.MONEY_DIGITS, decimal_places=money.MONEY_PLACES,
        help_text="Added to the balance; negative to take.",
    )  # fmt: skip
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), help_text="Why.")


class KeyForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, help_text="What it is for.")


@admin.register(Customer)
class CustomerAdmin(NoDelete, admin.ModelAdmin):
    list_display = ("name", "balance_text", "currency", "enabled", "created_at")
    list_filter = ("enabled",)
    search_fields = ("name",)
    fields = ("name", "enabled", "balance_text", "currency", "keys", "ledger", "created_at")
    readonly_fields = ("balance_text", "currency", "keys", "ledger", "created_at")

    @admin.display(description="balance", ordering="balance")
    def balance_text(self, obj: Customer) -> str:
        return f"{money.text(obj.balance)} {obj.currency}"

    @admin.display(description="API keys")
    def keys(self, obj: Customer) -> SafeString:
        rows = format_html_join(
            "", "<tr><td><code>{}…</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((k.prefix, k.name, at_second(k.created_at),
              at_second(k.last_used_at) if k.last_used_at else "never",
              f"revoked {at_second(k.revoked_at)}" if k.revoked_at else "live")
             for k in obj.api_keys.all()),
        )  # fmt: skip
        url = reverse("admin:orders_apikey_changelist")
        return format_html(
            "<table><tr><th>prefix</th><th>name</th><th>made</th><th>last used</th>"
            '<th>state</th></tr>{}</table><a href="{}?customer__id__exact={}">keys (revoke)</a>',
            rows, url, obj.pk,
        )  # fmt: skip

    @admin.display(description="ledger (latest 20)")
    def ledger(self, obj: Customer) -> SafeString:
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
            "<td>{}</td></tr>",
            ((at_second(e.created_at), e.kind, money.text(e.amount), money.text(e.balance_after),
              e.order_id or "", e.actor, e.note) for e in obj.ledger.all()[:20]),
        )  # fmt: skip
        url = reverse("admin:orders_balanceentry_changelist")
        return format_html(
            "<table><tr><th>when</th><th>kind</th><th>amount</th><th>balance after</th>"
            "<th>order</th><th>who</th><th>why</th></tr>{}</table>"
            '<a href="{}?customer__id__exact={}">the whole ledger</a>',
            rows, url, obj.pk,
        )  # fmt: skip

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/adjust/", view(self.adjust_view), name="orders_customer_adjust"),
            path("<path:object_id>/new-key/", view(self.new_key_view), name="orders_customer_key"),
            *super().get_urls(),
        ]

    def change_view(self, request: Any, object_id: str, form_url: str = "",
                    extra_context: Any = None) -> Any:  # fmt: skip
        extra = {
            "can_adjust": request.user.has_perm("orders.adjust_balance"),
            "can_manage_keys": request.user.has_perm("orders.manage_keys"),
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, extra)

    def _page(self, request: HttpRequest, customer: Customer, title: str, **context: Any):
        return TemplateResponse(
            request, "admin/orders/customer/action.html",
            {**self.admin_site.each_context(request), "opts": self.opts, "original": customer,
             "title": title, **context},
        )  # fmt: skip

    def adjust_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Adjust a balance: a ledger row with the operator's name and the note."""
        if not request.user.has_perm("orders.adjust_balance"):
            raise PermissionDenied
        customer = get_object_or_404(Customer, pk=object_id)
        form = AdjustForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                after = balance_adjust(
                    customer_id=customer.pk, amount=form.cleaned_data["amount"],
                    note=form.cleaned_data["note"], actor=f"admin:{request.user.get_username()}",
                    user_id=request.user.pk, now=timezone.now(),
                )  # fmt: skip
            except (NotEnoughFunds, ValueError) as exc:
                form.add_error("amount", str(exc))
            else:
                self.message_user(request, f"Balance now {money.text(after)}.", messages.SUCCESS)
                return HttpResponseRedirect(
                    reverse("admin:orders_customer_change", args=[customer.pk])
                )
        return self._page(request, customer, f"Adjust the balance of {customer}", form=form)

    def new_key_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Make an API key and show it on this page, once (it is never stored or shown again)."""
        if not request.user.has_perm("orders.manage_keys"):
            raise PermissionDenied
        customer = get_object_or_404(Customer, pk=object_id)
        form = KeyForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            made = api_key_create(customer=customer, name=form.cleaned_data["name"],
                                  now=timezone.now())  # fmt: skip
            return self._page(request, customer, f"New API key of {customer}", key=made.key)
        return self._page(request, customer, f"New API key for {customer}", form=form)


@admin.register(ApiKey)
class ApiKeyAdmin(MachineWritten, admin.ModelAdmin):
    list_display = ("prefix", "customer", "name", "created_at", "last_used_at", "revoked_at")
    list_filter = ("customer", ("revoked_at", admin.EmptyFieldListFilter))
    list_select_related = ("customer",)
    actions = ("revoke_keys",)

    @admin.action(description="Revoke (the keys refuse from now on)", permissions=["manage"])
    def revoke_keys(self, request: HttpRequest, queryset: Any) -> None:
        done = api_key_revoke(key_ids=list(queryset.values_list("pk", flat=True)),
                              now=timezone.now())  # fmt: skip
        self.message_user(request, f"{done} key(s) revoked.", messages.SUCCESS)

    def has_manage_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("orders.manage_keys")


@admin.register(BalanceEntry)
class BalanceEntryAdmin(MachineWritten, admin.ModelAdmin):
    list_display = ("id", "created_at", "customer", "kind", "amount_text", "after_text",
                    "order", "actor", "note")  # fmt: skip
    list_filter = ("kind", "customer")
    list_select_related = ("customer",)
    paginator = CappedPaginator
    show_full_result_count = False

    @admin.display(description="amount", ordering="amount")
    def amount_text(self, obj: BalanceEntry) -> str:
        return money.text(obj.amount)

    @admin.display(description="balance after")
    def after_text(self, obj: BalanceEntry) -> str:
        return money.text(obj.balance_after)
