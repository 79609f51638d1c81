"""Provider fleets in the admin: made (their first token shown once, on the page that follows),
given more tokens (shown once), their tokens revoked, disabled and enabled — each through the
service the commands call (``services.providers``)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from telegram_tasks.admin.lists import MachineWritten
from telegram_tasks.api import authentication
from telegram_tasks.models import Provider, ProviderToken
from telegram_tasks.services.providers import (
    ProviderError,
    check_name,
    check_push_url,
    provider_token_add,
    provider_token_revoke,
    providers_create,
    providers_disable,
    providers_enable,
)


class ProviderForm(forms.ModelForm):
    class Meta:
        model = Provider
        fields = ("name", "push_url")

    def clean_name(self) -> str:
        try:
            return check_name(self.cleaned_data["name"])
        except ProviderError as exc:
            raise forms.ValidationError(exc.message) from None

    def clean_push_url(self) -> str:
        try:
            return check_push_url(self.cleaned_data.get("push_url") or "")
        except ProviderError as exc:
            raise forms.ValidationError(exc.message) from None


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = (
        "name", "enabled", "is_default", "push_url", "accounts_link", "live_tokens",
        "last_seen_at", "created_at",
    )  # fmt: skip
    list_filter = ("enabled",)
    readonly_fields = ("enabled", "is_default", "tokens_table", "last_seen_at", "created_at")
    fields = ("name", "push_url", *readonly_fields)
    actions = ("disable_providers", "enable_providers", "add_token")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Provider]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_accounts=Count("accounts", distinct=True),
                n_tokens=Count("tokens", filter=Q(tokens__revoked_at=None), distinct=True),
            )
        )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a provider's history names it: disable it instead

    def has_manage_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("telegram_tasks.manage_provider")

    @admin.display(description="accounts", ordering="n_accounts")
    def accounts_link(self, obj: Provider) -> str:
        url = reverse("admin:telegram_tasks_telegramaccount_changelist")
        link = '<a href="{}?provider__id__exact={}">{}</a>'
        return format_html(link, url, obj.pk, obj.n_accounts)

    @admin.display(description="live tokens", ordering="n_tokens")
    def live_tokens(self, obj: Provider) -> int:
        return obj.n_tokens

    @admin.display(description="tokens")
    def tokens_table(self, obj: Provider) -> str:
        rows = format_html_join(
            "",
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (t.prefix, t.created_at, t.last_used_at or "never", t.revoked_at or "live")
                for t in obj.tokens.order_by("-created_at")[:20]
            ),
        )
        url = reverse("admin:telegram_tasks_providertoken_changelist")
        return format_html(
            "<table><tr><th>prefix</th><th>made</th><th>last used</th><th>revoked</th></tr>{}"
            '</table><a href="{}?provider__id__exact={}">all its tokens (revoke there)</a>',
            rows, url, obj.pk,
        )  # fmt: skip

    def save_model(self, request: HttpRequest, obj: Provider, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        made, token = providers_create(name=obj.name, push_url=obj.push_url, now=timezone.now())
        obj.pk, obj.created_at = made.pk, made.created_at
        request._provider_token = token  # shown once by response_add

    def response_add(self, request: HttpRequest, obj: Provider, post_url_continue: Any = None):
        return self.token_page(request, obj, request._provider_token)

    def token_page(self, request: HttpRequest, provider: Provider, token: str) -> HttpResponse:
        """The token, on this page only: it is never stored nor shown again."""
        return TemplateResponse(
            request, "admin/telegram_tasks/provider/token.html",
            {**self.admin_site.each_context(request), "opts": self.opts, "original": provider,
             "title": f"New token of {provider}", "token": token},
        )  # fmt: skip

    @admin.action(description="Add a token (shown once)", permissions=["manage"])
    def add_token(self, request: HttpRequest, queryset: QuerySet[Provider]) -> Any:
        if queryset.count() != 1:
            self.message_user(request, "Select one provider.", messages.WARNING)
            return None
        provider = queryset.get()
        token = provider_token_add(provider_id=provider.pk, now=timezone.now())
        return self.token_page(request, provider, token)

    @admin.action(description="Disable (its queued work moves to others)", permissions=["manage"])
    def disable_providers(self, request: HttpRequest, queryset: QuerySet[Provider]) -> None:
        done = providers_disable(
            provider_ids=list(queryset.values_list("pk", flat=True)), now=timezone.now()
        )
        self.message_user(request, f"{done} provider(s) disabled.", messages.SUCCESS)

    @admin.action(description="Enable", permissions=["manage"])
    def enable_providers(self, request: HttpRequest, queryset: QuerySet[Provider]) -> None:
        done = providers_enable(
            provider_ids=list(queryset.values_list("pk", flat=True)), now=timezone.now()
        )
        self.message_user(request, f"{done} provider(s) enabled.", messages.SUCCESS)


@admin.register(ProviderToken)
class ProviderTokenAdmin(MachineWritten, admin.ModelAdmin):
    list_display = ("prefix", "provider", "created_at", "last_used_at", "revoked_at")
    list_filter = ("provider", ("revoked_at", admin.EmptyFieldListFilter))
    list_select_related = ("provider",)
    search_fields = ("=prefix",)
    actions = ("revoke_tokens",)

    @admin.action(
        description="Revoke (each web process refuses them within seconds)",
        permissions=["manage"],
    )
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ProviderToken]) -> None:
        done = sum(
            provider_token_revoke(provider_id=t.provider_id, prefix=t.prefix, now=timezone.now())
            for t in queryset
        )
        authentication.forget_cached()  # this process at once; the others within the cache time
        self.message_user(request, f"{done} token(s) revoked.", messages.SUCCESS)

    def has_manage_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("telegram_tasks.manage_provider")
