"""Account sync and deactivation, called directly with ``now``."""

from datetime import UTC, datetime

import pytest
from django.test import TestCase

from telegram_tasks.exceptions import BatchTooLarge
from telegram_tasks.models import TelegramAccount, TelegramTask
from telegram_tasks.services import (
    accounts_deactivate,
    accounts_sync,
    tasks_generate,
)
from tests.factories import make_accounts, make_order

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def test_sync_upserts_and_keeps_fields_left_out():
    accounts_sync(items=[{"provider_account_id": "a", "phone": "+1", "meta": {"x": 1}}], now=T0)
    result = accounts_sync(items=[{"provider_account_id": "a", "is_active": False}], now=T0)
    assert result.synced == 1
    account = TelegramAccount.objects.get(provider_account_id="a")
    assert (account.phone, account.meta, account.is_active) == ("+1", {"x": 1}, False)


def test_sync_refuses_a_batch_too_large(settings):
    settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, "SYNC_MAX_BATCH": 1}
    with pytest.raises(BatchTooLarge):
        accounts_sync(items=[{"provider_account_id": "a"}, {"provider_account_id": "b"}], now=T0)
    assert not TelegramAccount.objects.exists()


def test_deactivation_releases_the_queued_tasks():
    [account] = make_accounts(1)
    make_order(action="view", link="t.me/durov/7", quantity=1)
    tasks_generate(limit=10, now=T0)
    with TestCase.captureOnCommitCallbacks(execute=True):
        assert accounts_deactivate(account_ids=[account.id], now=T0) == 1
    task = TelegramTask.objects.get()
    assert (task.status, task.failure_reason) == ("failed", "account_inactive")
