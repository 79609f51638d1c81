"""Accounts in the admin."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from redis.exceptions import RedisError

from telegram_tasks import selectors
from telegram_tasks.admin.display import limits_table, pretty_json
from telegram_tasks.admin.lists import CappedPaginator, FieldCreatedFilter, TierFilter
from telegram_tasks.models import TelegramAccount


class HeldFilter(admin.SimpleListFilter):
    title = "held"
    parameter_name = "held"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "held now"), ("no", "not held")]

    def queryset(self, request: Any, queryset: QuerySet) -> QuerySet:
        held = Q(held_until__gt=timezone.now())
        if self.value() == "yes":
            return queryset.filter(held)
        if self.value() == "no":
            return queryset.exclude(held)
        return queryset


@admin.register(TelegramAccount)
class TelegramAccountAdmin(admin.ModelAdmin):
    list_display = (
        "id", "provider_account_id", "phone", "tier", "is_active", "held_until", "created_at",
    )  # fmt: skip
    list_filter = ("is_active", TierFilter, HeldFilter, FieldCreatedFilter)
    search_fields = ("=id", "=provider_account_id", "=phone")
    search_help_text = "account id, provider account id or phone (exact)"
    show_full_result_count = False
    paginator = CappedPaginator
    readonly_fields = (
        "limits_now", "memberships_link", "held_until", "meta_pretty", "created_at", "updated_at",
    )  # fmt: skip
    fields = (
        "provider_account_id",
        "phone",
        "tier",
        "is_active",
        "limits_now",
        "memberships_link",
        "held_until",
        "meta",
        "meta_pretty",
        "created_at",
        "updated_at",
    )

    @admin.display(description="limits now")
    def limits_now(self, obj: TelegramAccount) -> SafeString:
        try:
            limits = selectors.account_limits([obj], now=timezone.now())[obj.pk]
        except RedisError:
            return format_html("{}", "Redis is unavailable: the limits cannot be read now")
        return limits_table(limits)

    @admin.display(description="memberships")
    def memberships_link(self, obj: TelegramAccount) -> SafeString:
        url = reverse("admin:telegram_tasks_membership_changelist")
        return format_html(
            '<a href="{}?account__id__exact={}">channels of this account</a>', url, obj.pk
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
