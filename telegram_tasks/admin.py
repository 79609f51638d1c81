from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from redis.exceptions import RedisError

from telegram_tasks import selectors, services
from telegram_tasks.failures import Reason
from telegram_tasks.models import Membership, OrderPassStats, TelegramAccount, TelegramTask


def pretty_json(value: Any) -> str:
    """Read-only JSON, indented, for admin change pages."""
    if value is None:
        return "—"
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre style="margin:0;white-space:pre-wrap">{}</pre>', text)


def seconds_left(value: float) -> str:
    if value <= 0:
        return "—"
    minutes, seconds = divmod(int(value + 0.999), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {seconds:02d}s"


def of_limit(count: int, limit: int | None) -> str:
    return f"{count} / {limit}" if limit is not None else f"{count} (no cap)"


def limits_table(limits: selectors.AccountLimits) -> SafeString:
    """An account's limits as RESERVE sees them now (one row per action)."""
    head = format_html(
        "<p>tier <b>{}</b> · hold {} · account cooldown {} ({} s) · today {} · channels {}{}</p>",
        limits.tier,
        seconds_left(limits.hold_left),
        seconds_left(limits.account_cooldown_left),
        limits.account_cooldown,
        of_limit(limits.today, limits.account_daily_cap),
        of_limit(limits.channels, limits.max_channels),
        " · CHANNELS_TOO_MUCH" if limits.channels_too_much else "",
    )
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                a.action,
                of_limit(a.today, a.daily_cap),
                f"{seconds_left(a.cooldown_left)} (policy {a.cooldown} s)",
                a.lock_token or "—",
            )
            for a in limits.actions
        ),
    )
    return format_html(
        "{}<table><thead><tr><th>action</th><th>today</th><th>cooldown left</th>"
        "<th>held by task</th></tr></thead><tbody>{}</tbody></table>",
        head,
        rows,
    )


@admin.register(TelegramAccount)
class TelegramAccountAdmin(admin.ModelAdmin):
    list_display = (
        "id", "provider_account_id", "phone", "tier", "is_active", "held_until", "created_at",
    )  # fmt: skip
    list_filter = ("is_active", "tier", "created_at")
    search_fields = ("=id", "provider_account_id", "phone")
    date_hierarchy = "created_at"
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


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    """Machine-written: opened by a done subscribe, closed by a done unsubscribe."""

    list_display = (
        "id", "account", "link", "order_id", "state", "subscribed_at", "due_at",
        "unsubscribed_at", "attempts", "next_attempt_at",
    )  # fmt: skip
    list_filter = ("state",)
    search_fields = ("=account__id", "=order__id", "=link_hash")
    list_select_related = ("account",)
    show_full_result_count = False
    list_per_page = 100

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


def pass_stats_html(stats: OrderPassStats | None) -> SafeString:
    """What the last generation passes found for an order: why it is slow, if it is."""
    if stats is None:
        return format_html("{}", "no pass has found this order short of accounts")
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                p.get("at", ""),
                p.get("created", 0),
                p.get("starved", 0),
                ", ".join(f"{k} {v}" for k, v in sorted((p.get("refusals") or {}).items())) or "—",
            )
            for p in stats.recent
        ),
    )
    return format_html(
        "<p>{}; {} slot(s) starved in all passes that found it short</p><table><thead><tr>"
        "<th>pass</th><th>made</th><th>starved</th><th>refusals by reason</th></tr></thead>"
        "<tbody>{}</tbody></table>",
        "short of accounts now" if stats.troubled else "fine again since the last pass",
        stats.starved_total,
        rows,
    )


def pass_stats_short(stats: OrderPassStats | None) -> str:
    if stats is None:
        return "—"
    refusals = ", ".join(
        f"{k} {v}" for k, v in sorted(stats.refusals.items(), key=lambda kv: -kv[1])[:3]
    )
    return f"made {stats.created}, starved {stats.starved_slots}" + (
        f" ({refusals})" if refusals else ""
    )
