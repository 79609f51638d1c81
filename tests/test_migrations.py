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
