"""Providers in the admin: made with their first token shown once, given more tokens (shown
once), their tokens revoked, disabled; accounts and tasks listed per provider; the dashboard's
providers."""

from __future__ import annotations

import re

import pytest
from django.test import TestCase
from django.urls import reverse
from django.utils import timezone

from telegram_tasks.models import Provider, ProviderToken, TelegramTask
from telegram_tasks.services import tasks_generate
from telegram_tasks.services.providers import providers_create
from tests.factories import make_account, make_accounts, make_order

pytestmark = pytest.mark.django_db
PROVIDERS = reverse("admin:telegram_tasks_provider_changelist")


def token_on(page) -> str:
    found = re.search(r'id="new-provider-token"[^>]*>([^<]+)<', page.content.decode())
    assert found, page.content.decode()[:2000]
    return found.group(1)


def authenticates(client, token: str) -> int:
    return client.post("/api/provider/telegram/tasks/pull", {"limit": 1},
                       content_type="application/json", HTTP_X_PROVIDER_TOKEN=token).status_code  # fmt: skip


def test_a_provider_made_in_the_admin_shows_its_token_once(admin_client, client):
    page = admin_client.post(
        reverse("admin:telegram_tasks_provider_add"),
        {"name": "fleet-a", "push_url": "https://a.example/push"},
    )
    assert page.status_code == 200
    token = token_on(page)
    provider = Provider.objects.get(name="fleet-a")
    assert provider.push_url == "https://a.example/push"
    assert ProviderToken.objects.get(provider=provider).prefix == token.split(".")[0]
    assert authenticates(client, token) == 200
    change = admin_client.get(reverse("admin:telegram_tasks_provider_change", args=[provider.pk]))
    assert token.split(".")[1] not in change.content.decode()  # never shown again
    refused = admin_client.post(
        reverse("admin:telegram_tasks_provider_add"), {"name": "bad name", "push_url": "ftp://x"}
    )
    assert refused.status_code == 200 and not Provider.objects.filter(name="bad name").exists()
    assert "errorlist" in refused.content.decode()


def test_the_admin_adds_and_revokes_tokens_and_disables(admin_client, client, settings):
    settings.PROVIDER_TOKEN = ""
    provider, first = providers_create(name="fleet-b", now=timezone.now())
    page = admin_client.post(PROVIDERS, {"action": "add_token", "_selected_action": [provider.pk]})
    second = token_on(page)
    assert authenticates(client, first) == authenticates(client, second) == 200
    old = ProviderToken.objects.get(prefix=first.split(".")[0])
    admin_client.post(
        reverse("admin:telegram_tasks_providertoken_changelist"),
        {"action": "revoke_tokens", "_selected_action": [old.pk]},
    )
    assert authenticates(client, first) == 401 and authenticates(client, second) == 200
    make_accounts(1, provider=provider)
    make_order(action="view", link="t.me/durov/5", quantity=1)
    tasks_generate(limit=10, now=timezone.now())
    with TestCase.captureOnCommitCallbacks(execute=True):
        admin_client.post(
            PROVIDERS, {"action": "disable_providers", "_selected_action": [provider.pk]}
        )
    assert not Provider.objects.get(pk=provider.pk).enabled
    assert TelegramTask.objects.get().failure_reason == "provider_disabled"


def test_accounts_and_tasks_are_listed_per_provider(admin_client):
    alpha, _ = providers_create(name="alpha", now=timezone.now())
    beta, _ = providers_create(name="beta", now=timezone.now())
    mine = make_account(provider=alpha)
    theirs = make_account(provider=beta)
    make_order(action="view", link="t.me/durov/5", quantity=2)
    tasks_generate(limit=10, now=timezone.now())
    accounts = reverse("admin:telegram_tasks_telegramaccount_changelist")
    page = admin_client.get(f"{accounts}?provider__id__exact={alpha.pk}").content.decode()
    assert mine.provider_account_id in page and theirs.provider_account_id not in page
    tasks = reverse("admin:telegram_tasks_telegramtask_changelist")
    page = admin_client.get(f"{tasks}?provider__id__exact={beta.pk}").content.decode()
    [ours] = TelegramTask.objects.filter(provider=beta)
    [other] = TelegramTask.objects.filter(provider=alpha)
    assert ours.pk in page and other.pk not in page
    board = admin_client.get("/admin/dashboard/").content.decode()
    for provider in (alpha, beta):
        assert f'id="provider-{provider.pk}"' in board and provider.name in board
