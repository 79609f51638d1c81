"""The checks of what a project must give the app (telegram_tasks.host_checks): each says what
is missing and what to add; this project's own settings pass them all."""

import pytest
from celery import current_app
from django.core import checks
from django.db import connections

from orders.models import Order
from telegram_tasks.schedule import BEAT_SCHEDULE


def _found(ids_prefix="telegram_tasks."):
    return {e.id: e for e in checks.run_checks() if e.id and e.id.startswith(ids_prefix)}


def test_this_project_meets_the_host_contract(settings):
    settings.PROVIDER_TOKEN = "configured"
    assert not _found()


def test_a_missing_app_is_named_with_what_to_add(settings):
    settings.INSTALLED_APPS = [a for a in settings.INSTALLED_APPS if a != "rest_framework"]
    [error] = [e for e in checks.run_checks() if e.id == "telegram_tasks.E050"]
    assert (
        "'rest_framework'" in error.msg and "Add 'rest_framework' to INSTALLED_APPS" in error.hint
    )


def test_a_database_other_than_postgresql_is_refused(monkeypatch):
    monkeypatch.setattr(connections["default"], "vendor", "sqlite")
    error = _found()["telegram_tasks.E051"]
    assert "'sqlite'" in error.msg and "django.db.backends.postgresql" in error.hint


def test_naive_datetimes_are_refused(settings):
    settings.USE_TZ = False
    assert "USE_TZ = True" in _found()["telegram_tasks.E052"].hint


def test_the_claims_need_a_django_redis_cache_or_a_cluster(settings):
    settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, "REDIS_CLUSTER_URL": ""}
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    error = _found()["telegram_tasks.E053"]
    assert "LocMemCache" in error.msg and "django_redis.cache.RedisCache" in error.hint

    settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, "REDIS_CACHE": "claims"}
    assert "CACHES does not define" in _found()["telegram_tasks.E053"].msg
    settings.CACHES = {
        **settings.CACHES,
        "claims": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": "redis://h:6379/0"},
    }
    assert "telegram_tasks.E053" not in _found()

    settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, "REDIS_CLUSTER_URL": "http://h:6379"}
    assert "not a Redis URL" in _found()["telegram_tasks.E053"].msg
    settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, "REDIS_CLUSTER_URL": "redis://h:7000"}
    assert "telegram_tasks.E053" not in _found()


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        # No order fields, no statuses.
        ("telegram_tasks.TelegramAccount", {"telegram_tasks.E054", "telegram_tasks.E055"}),
        # A string primary key as well.
        ("sessions.Session", {"telegram_tasks.E054", "telegram_tasks.E055", "telegram_tasks.E056"}),
    ],
)
def test_an_order_model_off_the_protocol_is_refused(settings, model, expected):
    settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, "ORDER_MODEL": model}
    found = _found()
    assert expected <= set(found)
    assert "remains" in found["telegram_tasks.E054"].msg
    assert "AWAITING" in found["telegram_tasks.E055"].msg


def test_the_order_models_active_statuses_are_checked(monkeypatch):
    monkeypatch.setattr(Order, "ACTIVE", (Order.Status.AWAITING, Order.Status.COMPLETED))
    assert "no final status" in _found()["telegram_tasks.E055"].msg
    monkeypatch.delattr(Order, "ACTIVE")
    assert "no ACTIVE" in _found()["telegram_tasks.E055"].msg


def test_the_passes_need_a_schedule(settings, monkeypatch):
    settings.INSTALLED_APPS = [a for a in settings.INSTALLED_APPS if a != "django_celery_beat"]
    monkeypatch.setitem(current_app.conf, "beat_schedule", {})
    warning = _found()["telegram_tasks.W003"]
    assert "telegram_tasks.generate" in warning.msg and "telegram_tasks.housekeep" in warning.msg
    assert "telegram_tasks.push" not in warning.msg  # push is not set up
    assert "BEAT_SCHEDULE" in warning.hint

    monkeypatch.setitem(current_app.conf, "beat_schedule", dict(BEAT_SCHEDULE))
    assert "telegram_tasks.W003" not in _found()
    settings.TELEGRAM_TASKS = {
        **settings.TELEGRAM_TASKS,
        "PROVIDER_PUSH_URL": "https://provider.example/push",
    }
    monkeypatch.setitem(current_app.conf, "beat_schedule", {"only": BEAT_SCHEDULE[
        "telegram_tasks: generate tasks"]})  # fmt: skip
    assert "telegram_tasks.push" in _found()["telegram_tasks.W003"].msg


def test_a_body_limit_too_small_for_a_sync_is_named(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440  # Django's default
    warning = _found()["telegram_tasks.W004"]
    assert "SYNC_MAX_BATCH" in warning.msg and "at least" in warning.hint
    settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, "SYNC_MAX_BATCH": 500}
    assert "telegram_tasks.W004" not in _found()
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = None
    settings.TELEGRAM_TASKS = {**settings.TELEGRAM_TASKS, "SYNC_MAX_BATCH": 10_000}
    assert "telegram_tasks.W004" not in _found()


def test_a_providers_field_that_cannot_route_is_named(monkeypatch):
    """The order model's optional providers: this project's is a many-to-many to Provider (no
    error); any other field of that name would be ignored, so it is refused."""
    from telegram_tasks.services import sql

    assert "telegram_tasks.E057" not in _found()
    monkeypatch.setattr(sql, "order_providers", lambda: None)
    assert "many-to-many" in _found()["telegram_tasks.E057"].msg
