import io

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_models_and_migrations_agree():
    out = io.StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_a_reaction_order_made_before_params_gets_the_documented_default():
    """orders.0011: an existing reaction order cannot be performed without its emoji; it gets a
    thumbs-up and goes on. Other orders keep empty params."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    before = [("orders", "0010_ledger_append_only_settle_schedule")]
    executor.migrate(before)
    old = executor.loader.project_state(before).apps.get_model("orders", "Order")
    common = {"quantity": 2, "remains": 2, "link_hash": "h" * 64}
    reaction = old.objects.create(action="reaction", link="https://t.me/durov", post_id=4, **common)
    view = old.objects.create(action="view", link="https://t.me/durov", post_id=5, **common)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # orders.0011 and on
    from orders.models import Order

    assert Order.objects.get(pk=reaction.pk).params == {"reactions": ["👍"]}
    assert Order.objects.get(pk=view.pk).params == {}


def test_the_apps_migrations_name_no_project_app():
    """A host project has no `orders` app: the app's migrations reach the order model only
    through ORDER_MODEL (a swappable dependency), and django-celery-beat only when installed."""
    from django.db.migrations.loader import MigrationLoader

    from telegram_tasks.conf import get_order_model

    order_app = get_order_model()._meta.app_label
    loader = MigrationLoader(None, ignore_no_migrations=True)
    for (app, name), migration in loader.disk_migrations.items():
        if app != "telegram_tasks":
            continue
        for dependency in migration.dependencies:
            if dependency[0] in ("telegram_tasks", "django_celery_beat"):
                continue
            assert tuple(dependency) == (order_app, "__first__"), (name, dependency)


@pytest.mark.django_db
def test_the_code_schedule_is_the_one_the_migrations_create():
    from django_celery_beat.models import PeriodicTask

    from telegram_tasks.schedule import BEAT_SCHEDULE

    created = {
        p.name: {"task": p.task, "schedule": float(p.interval.every)}
        for p in PeriodicTask.objects.filter(task__startswith="telegram_tasks.")
    }
    assert created == BEAT_SCHEDULE


@pytest.mark.django_db(transaction=True)
def test_an_existing_install_upgrades_to_providers_with_no_change(settings):
    """telegram_tasks.0019 from the schema before it, with accounts, live tasks and counts: all
    of them become the default provider's, PROVIDER_TOKEN (untouched) still authenticates, the
    pull hands out the live task, and provider_account_id is unique per provider only."""
    from datetime import timedelta

    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor
    from django.utils import timezone
    from rest_framework.test import APIClient

    from telegram_tasks.api import authentication
    from telegram_tasks.providers import forget_default_provider

    settings.PROVIDER_TOKEN = "a-token-from-before-providers-0123456789"
    executor = MigrationExecutor(connection)
    before = [("telegram_tasks", "0020_dashboard_ranges"), ("orders", "0012_end_reason")]
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    Account = old.get_model("telegram_tasks", "TelegramAccount")
    Task = old.get_model("telegram_tasks", "TelegramTask")
    Hour = old.get_model("telegram_tasks", "TaskHour")
    Order = old.get_model("orders", "Order")
    now = timezone.now()
    account = Account.objects.create(provider_account_id="acc_1", phone="+1")
    order = Order.objects.create(action="view", link="https://t.me/durov", post_id=7,
                                 link_hash="h" * 64, quantity=1, remains=1)  # fmt: skip
    task = Task.objects.create(
        order=order, action="view", link_hash="h" * 64, telegram_account=account,
        provider_account_id="acc_1", status="queued", available_at=now - timedelta(seconds=1),
        reserved_until=now + timedelta(minutes=5),
        payload={"order_id": order.pk, "action": "view", "link": order.link, "post_id": 7,
                 "link_hash": "h" * 64, "per_call": 1,
                 "account": {"id": account.pk, "provider_account_id": "acc_1", "phone": "+1"}},
    )  # fmt: skip
    Hour.objects.create(hour=now.replace(minute=0, second=0, microsecond=0), action="view",
                        outcome="created", count=1)  # fmt: skip

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    forget_default_provider()
    authentication.forget_cached()
    from telegram_tasks.models import Provider, TaskHour, TelegramAccount, TelegramTask

    [default] = Provider.objects.all()
    assert (default.name, default.is_default, default.enabled) == ("default", True, True)
    assert TelegramAccount.objects.get(pk=account.pk).provider_id == default.pk
    assert TelegramTask.objects.get(pk=task.pk).provider_id == default.pk
    assert set(TaskHour.objects.values_list("provider_id", flat=True)) == {default.pk}
    client = APIClient()
    client.credentials(HTTP_X_PROVIDER_TOKEN=settings.PROVIDER_TOKEN)
    pulled = client.post("/api/provider/telegram/tasks/pull", {"limit": 5}, format="json")
    assert [t["task_id"] for t in pulled.json()["tasks"]] == [task.pk]
    # Another provider may use the same id for an account of its own.
    other = Provider.objects.create(name="other")
    TelegramAccount.objects.create(provider=other, provider_account_id="acc_1")
    with connection.cursor() as cursor:  # no column default is left behind
        cursor.execute(
            "SELECT table_name FROM information_schema.columns WHERE column_name = 'provider_id' "
            "AND column_default IS NOT NULL AND table_name LIKE 'telegram_%%'"
        )
        assert cursor.fetchall() == []
