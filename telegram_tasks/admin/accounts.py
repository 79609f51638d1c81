"""Accounts in the admin."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.db.models import Q, QuerySet
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from redis.exceptions import RedisError

from telegram_tasks import selectors, services
from telegram_tasks.admin import reasons
from telegram_tasks.admin.buttons import Button, ObjectButtons
from telegram_tasks.admin.display import (
    account_recent_tasks,
    account_tasks_url,
    at_second,
    duration,
    limits_table,
    of_limit,
    pretty_json,
    seconds_left,
    tasks_table,
)
from telegram_tasks.admin.lists import CappedPaginator, FieldCreatedFilter, NoDelete, TierFilter
from telegram_tasks.conf import DEFAULT_TIER, app_settings
from telegram_tasks.models import TelegramAccount
from telegram_tasks.services import farm


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


class LimitedFilter(admin.SimpleListFilter):
    """Accounts cooling down or capped today, as the ledger's recent successes say."""

    title = "limits"
    parameter_name = "limited"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [("cooling", "cooling down now"), ("capped", "capped today")]

    def queryset(self, request: Any, queryset: QuerySet) -> QuerySet:
        if self.value() not in ("cooling", "capped"):
            return queryset
        try:
            cooling, capped = farm.limited_accounts(now=timezone.now())
        except RedisError:
            messages.warning(
                request, "Redis is unavailable: which accounts are limited is unknown."
            )
            return queryset.none()
        return queryset.filter(pk__in=cooling if self.value() == "cooling" else capped)


class AccountChangeList(ChangeList):
    """Reads the page's accounts from Redis — holds, cooldowns, today's counts, channels,
    locks — in one pipeline, once the page's rows are known."""

    def get_results(self, request: Any) -> None:
        super().get_results(request)
        accounts = list(self.result_list)
        try:
            limits = selectors.account_limits(accounts, now=timezone.now())
        except RedisError:
            limits = {}
        for account in accounts:
            account.limits = limits.get(account.pk)


class AccountForm(forms.ModelForm):
    """The tier is a choice of the configured tiers (the provider's sync refuses any other); an
    account whose tier was removed from the settings keeps it as a choice, marked."""

    class Meta:
        model = TelegramAccount
        fields = ("provider", "provider_account_id", "phone", "tier", "meta")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        tiers = list(app_settings.TIERS)
        choices = [(t, t) for t in tiers]
        current = self.instance.tier if self.instance.pk else None
        if current and current not in tiers:
            choices.append((current, f"{current} (not configured: the default tier's limits)"))
        self.fields["tier"] = forms.ChoiceField(
            choices=choices,
            initial=DEFAULT_TIER,
            help_text="Which limits apply to this account: channels, account-wide cooldown and "
            "daily cap, per-action overrides (TIERS in the settings).",
        )


def is_held(account: TelegramAccount) -> bool:
    return account.held_until is not None


def is_active(account: TelegramAccount) -> bool:
    return account.is_active


@admin.register(TelegramAccount)
class TelegramAccountAdmin(ObjectButtons, NoDelete, admin.ModelAdmin):
    form = AccountForm
    list_display = (
        "id", "provider_key", "phone", "tier", "state", "cooldowns", "today", "channels", "locks",
        "provider",
    )  # fmt: skip
    list_filter = (
        "is_active", "provider", HeldFilter, LimitedFilter, TierFilter, FieldCreatedFilter,
    )  # fmt: skip
    search_fields = ("=id", "=provider_account_id", "=phone")
    search_help_text = "account id, provider account id or phone (exact)"
    show_full_result_count = False
    paginator = CappedPaginator
    actions = ("deactivate_accounts", "reactivate_accounts", "clear_holds")
    buttons = (
        Button("clear-hold", "Clear hold", "clear_holds", "manage",
               "Lift the flood wait now: the account is picked again from the next pass",
               applies=is_held),
        Button("deactivate", "Deactivate", "deactivate_accounts", "manage",
               "Never picked again; its queued tasks go to other accounts", applies=is_active),
        Button("reactivate", "Reactivate", "reactivate_accounts", "manage",
               "Picked again from the next pass", applies=lambda a: not a.is_active),
    )  # fmt: skip
    readonly_fields = (
        "is_active", "hold", "limits_now", "recent_tasks", "memberships_link", "meta_pretty",
        "created_at", "updated_at",
    )  # fmt: skip
    fields = (
        "provider",
        "provider_account_id",
        "phone",
        "tier",
        "is_active",
        "hold",
        "limits_now",
        "recent_tasks",
        "memberships_link",
        "meta",
        "meta_pretty",
        "created_at",
        "updated_at",
    )

    class Media:
        css = {"all": ["telegram_tasks/admin.css"]}

    def get_changelist(self, request: Any, **kwargs: Any) -> type[ChangeList]:
        return AccountChangeList

    # --- the farm's view of each account (read from Redis for the whole page at once) --------

    @admin.display(description="state")
    def state(self, obj: TelegramAccount) -> SafeString | str:
        """Active, inactive, or held: why (the failure that set the hold) and how long still,
        on one line."""
        if not obj.is_active:
            return "inactive"
        limits = getattr(obj, "limits", None)
        why = obj.hold_reason.replace("_", " ") if obj.hold_reason else ""
        if limits is not None and limits.hold_left > 0:
            left = seconds_left(limits.hold_left)
        elif obj.held_until and obj.held_until > timezone.now():
            left = seconds_left((obj.held_until - timezone.now()).total_seconds())
        else:
            return "active"
        return format_html(
            '<span class="tg-nowrap" title="{}">held{} {}</span>',
            hold_text(obj),
            f" ({why})" if why else "",
            left,
        )

    @admin.display(description="hold")
    def hold(self, obj: TelegramAccount) -> str:
        return hold_text(obj) if obj.held_until else "not held"

    @admin.display(description="cooldown")
    def cooldowns(self, obj: TelegramAccount) -> str:
        limits = getattr(obj, "limits", None)
        if limits is None:
            return "?"
        parts = [f"{a.action} {seconds_left(a.cooldown_left)}" for a in limits.actions
                 if a.cooldown_left > 0]  # fmt: skip
        if limits.account_cooldown_left > 0:
            parts.append(f"account {seconds_left(limits.account_cooldown_left)}")
        return ", ".join(parts) or "—"

    @admin.display(description="today / cap")
    def today(self, obj: TelegramAccount) -> SafeString | str:
        limits = getattr(obj, "limits", None)
        if limits is None:
            return "?"
        # Only the actions it did today (the account's page lists every cap): a list of 200
        # accounts stays one line per account.
        parts = []
        for a in limits.actions:
            if a.today:
                full = a.daily_cap is not None and a.today >= a.daily_cap
                parts.append(format_html(
                    '<span class="{}">{} {}</span>', "tg-capped" if full else "", a.action,
                    of_limit(a.today, a.daily_cap) if a.daily_cap is not None else a.today,
                ))  # fmt: skip
        if limits.account_daily_cap is not None:
            parts.append(format_html("all {}", of_limit(limits.today, limits.account_daily_cap)))
        if not parts:
            return "—"
        # One action a line (the separator is markup, not text: format_html_join escapes a
        # plain string), so the column stays as narrow as its longest action.
        return format_html_join(
            mark_safe("<br>"),
            '<span style="white-space:nowrap">{}</span>',
            ((p,) for p in parts),
        )

    @admin.display(description="channels")
    def channels(self, obj: TelegramAccount) -> str:
        limits = getattr(obj, "limits", None)
        if limits is None:
            return "?"
        text = (
            f"{limits.channels} / {limits.max_channels}"
            if limits.max_channels is not None
            else str(limits.channels)
        )
        return f"{text} FULL" if limits.channels_too_much else text

    @admin.display(description="locks")
    def locks(self, obj: TelegramAccount) -> SafeString | str:
        limits = getattr(obj, "limits", None)
        if limits is None:
            return "?"
        held = [a.action for a in limits.actions if a.lock_token]
        # One a line, as today / cap: the column stays as narrow as its longest action.
        return format_html_join(mark_safe("<br>"), "{}", ((a,) for a in held)) if held else "—"

    # (Not "provider_id": that is the account's provider, a column of its own.)
    @admin.display(description="provider's id", ordering="provider_account_id")
    def provider_key(self, obj: TelegramAccount) -> str:
        return obj.provider_account_id or "—"

    # --- actions, through the services -------------------------------------------------------

    def has_manage_permission(self, request: Any) -> bool:
        return request.user.has_perm("telegram_tasks.manage_telegramaccount")

    @admin.action(
        description="Deactivate (never picked again; their queued tasks go to other accounts)",
        permissions=["manage"],
    )
    def deactivate_accounts(self, request: Any, queryset: QuerySet) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        n = services.accounts_deactivate(account_ids=ids, now=timezone.now())
        self.message_user(request, f"{n} account(s) deactivated.", messages.SUCCESS)

    @admin.action(
        description="Reactivate (picked again from the next pass)", permissions=["manage"]
    )
    def reactivate_accounts(self, request: Any, queryset: QuerySet) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        n = services.accounts_reactivate(account_ids=ids, now=timezone.now())
        self.message_user(request, f"{n} account(s) reactivated.", messages.SUCCESS)

    @admin.action(description="Clear hold (flood wait lifted now)", permissions=["manage"])
    def clear_holds(self, request: Any, queryset: QuerySet) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        n = services.accounts_clear_hold(account_ids=ids, now=timezone.now())
        self.message_user(request, f"{n} hold(s) cleared.", messages.SUCCESS)

    @admin.display(description="recent tasks")
    def recent_tasks(self, obj: TelegramAccount) -> SafeString:
        return tasks_table(account_recent_tasks(obj.pk), more=account_tasks_url(obj.pk))

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

    @admin.display(description="meta")
    def meta_pretty(self, obj: TelegramAccount) -> str:
        return pretty_json(obj.meta)

    def get_fields(self, request: Any, obj: Any = None) -> list[str]:
        # ``meta`` once: the JSON field where it may be edited, formatted where it may not.
        editable = self.has_change_permission(request, obj)
        drop = "meta_pretty" if editable else "meta"
        return [f for f in self.fields if f != drop]

    def get_readonly_fields(self, request, obj=None):
        # The provider's id is the upsert key of account sync; renaming it would split an account
        # (and its provider is its tasks' too).
        if obj is not None:
            return ("provider", "provider_account_id", *self.readonly_fields)
        return self.readonly_fields


def hold_text(account: TelegramAccount) -> str:
    """Why, since when and until when an account is held (its ledger's hold)."""
    until = account.held_until
    if until is None:
        return ""
    now = timezone.now()
    why = account.hold_reason
    parts = [f"{why} ({reasons.words(why)})" if why else "reason not recorded"]
    if account.held_since:
        parts.append(f"since {at_second(account.held_since)}")
    if until > now:
        parts.append(f"until {at_second(until)} ({duration((until - now).total_seconds())} left)")
    else:
        parts.append(f"ended {at_second(until)}")
    return ", ".join(parts)
