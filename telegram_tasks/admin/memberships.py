"""Memberships in the admin: machine-written, read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet

from telegram_tasks.admin.lists import CappedPaginator, MachineWritten, SubscribedFilter
from telegram_tasks.links import InvalidTelegramLink, normalize_link
from telegram_tasks.models import Membership


@admin.register(Membership)
class MembershipAdmin(MachineWritten, admin.ModelAdmin):
    """Machine-written: opened by a done subscribe, closed by a done unsubscribe."""

    list_display = (
        "id", "account", "link", "order_id", "state", "subscribed_at", "due_at",
        "unsubscribed_at", "attempts", "next_attempt_at",
    )  # fmt: skip
    list_filter = ("state", SubscribedFilter)
    search_fields = ("link_hash",)
    search_help_text = "account id, order id, or a channel link (exact)"
    list_select_related = ("account",)
    show_full_result_count = False
    paginator = CappedPaginator
    list_per_page = 100

    def get_search_results(
        self, request: Any, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        if term.isdigit():
            return queryset.filter(Q(account_id=int(term)) | Q(order_id=int(term))), False
        try:
            return queryset.filter(link_hash=normalize_link(term).link_hash), False
        except InvalidTelegramLink:
            return queryset.none(), False
