"""System checks of what a project must give the app (docs/reuse.md): the apps it builds on,
PostgreSQL through psycopg 3, aware datetimes, a Redis for the claims, an order model that
follows the protocol, a schedule for the passes, and request bodies large enough for a sync.
Each message says what to add. (The app's own settings: ``checks``.)"""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.core.exceptions import FieldDoesNotExist
from django.db import connections, models
from django.utils.module_loading import import_string

from telegram_tasks import schedule
from telegram_tasks.conf import app_settings

REUSE = "See docs/reuse.md of telegram_tasks."

# The apps the app builds on, and what each is for.
REQUIRED_APPS = {
    "django.contrib.contenttypes": "the permissions of the app's models",
    "django.contrib.auth": "the permissions of the app's models",
    "rest_framework": "the provider API (Django REST framework)",
    "drf_spectacular": "the provider API's schema and docs pages (api/schema/, api/docs/)",
}
# The order model's statuses the services write or test, by their member names.
ORDER_STATUSES = ("AWAITING", "IN_PROGRESS", "COMPLETED", "PARTIAL", "CANCELED")
# An accounts/sync body, per account at most: ids, phone, tier and a modest ``meta``.
SYNC_BYTES_PER_ACCOUNT = 3072
CLUSTER_SCHEMES = ("redis", "rediss", "redis+cluster", "rediss+cluster")


@register()
def check_host(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    return [
        *check_apps(),
        *check_database(),
        *check_time_zone(),
        *check_redis(),
        *check_order_model(),
        *check_schedule(),
        *check_upload_size(),
    ]


def check_apps() -> list[CheckMessage]:
    return [
        Error(
            f"telegram_tasks needs {name!r} in INSTALLED_APPS: {why}.",
            hint=f"Add {name!r} to INSTALLED_APPS. {REUSE}",
            id="telegram_tasks.E050",
        )
        for name, why in REQUIRED_APPS.items()
        if not apps.is_installed(name)
    ]


def check_database() -> list[CheckMessage]:
    """PostgreSQL only (FOR UPDATE SKIP LOCKED, COPY, jsonb, LISTEN), through psycopg 3."""
    connection = connections["default"]
    if connection.vendor == "postgresql":
        from django.db.backends.postgresql.psycopg_any import is_psycopg3

        if is_psycopg3:
            return []
    return [
        Error(
            "telegram_tasks needs PostgreSQL through psycopg 3 as the 'default' database; it "
            f"is {connection.vendor!r}"
            + (" through psycopg2." if connection.vendor == "postgresql" else "."),
            hint="Set DATABASES['default']['ENGINE'] to 'django.db.backends.postgresql' and "
            f"install psycopg (3), e.g. psycopg[binary]. {REUSE}",
            id="telegram_tasks.E051",
        )
    ]


def check_time_zone() -> list[CheckMessage]:
    if settings.USE_TZ:
        return []
    return [
        Error(
            "telegram_tasks needs USE_TZ = True: leases, cooldowns and daily caps compare "
            "aware datetimes.",
            hint="Set USE_TZ = True (Django's default).",
            id="telegram_tasks.E052",
        )
    ]


def check_redis() -> list[CheckMessage]:
    url = app_settings.REDIS_CLUSTER_URL
    if url:
        if url.split("://", 1)[0] in CLUSTER_SCHEMES:
            return []
        problem = f"TELEGRAM_TASKS['REDIS_CLUSTER_URL'] is {url!r}, not a Redis URL."
        hint = "Name any node of the cluster: 'redis+cluster://host:6379'."
    else:
        alias = app_settings.REDIS_CACHE
        backend = (getattr(settings, "CACHES", {}).get(alias) or {}).get("BACKEND")
        if backend and _is_django_redis(backend):
            return []
        problem = (
            f"The claims use the Redis of the cache TELEGRAM_TASKS['REDIS_CACHE'] names "
            f"({alias!r}), "
            + (f"whose BACKEND is {backend!r}." if backend else "which CACHES does not define.")
        )
        hint = (
            f"Define CACHES[{alias!r}] with BACKEND 'django_redis.cache.RedisCache' and the "
            "Redis's LOCATION (or point REDIS_CACHE at such a cache), or set "
            f"TELEGRAM_TASKS['REDIS_CLUSTER_URL'] for a Redis Cluster. {REUSE}"
        )
    return [Error(problem, hint=hint, id="telegram_tasks.E053")]


def _is_django_redis(backend: str) -> bool:
    from django_redis.cache import RedisCache

    try:
        cls = import_string(backend)
    except ImportError:
        return False
    return isinstance(cls, type) and issubclass(cls, RedisCache)


def check_order_model() -> list[CheckMessage]:
    """The order model protocol (docs/reuse.md): the fields the services read and write by
    name, the statuses they set, ACTIVE, an integer key. (An unknown model: E003.)"""
    label = app_settings.ORDER_MODEL
    try:
        model = apps.get_model(label)
    except (LookupError, ValueError):
        return []
    from telegram_tasks.services.sql import ORDER_FIELDS

    where = f"TELEGRAM_TASKS['ORDER_MODEL'] names {label!r}"
    errors: list[CheckMessage] = []
    missing = [f for f in ORDER_FIELDS if not _has_field(model, f)]
    if missing:
        errors.append(
            Error(
                f"{where}, a model without the field(s) {', '.join(missing)}.",
                hint="Add them as the order model protocol lists them (docs/reuse.md); "
                "a field may keep its own db_column.",
                id="telegram_tasks.E054",
            )
        )
    errors.extend(_check_statuses(model, where))
    if not isinstance(model._meta.pk, models.IntegerField):
        errors.append(
            Error(
                f"{where}, whose primary key is a {type(model._meta.pk).__name__}: tasks keep "
                "their order's id as an integer.",
                hint="Give the order model an integer primary key (AutoField or BigAutoField).",
                id="telegram_tasks.E056",
            )
        )
    errors.extend(_check_routing(model, where))
    return errors


def _check_routing(model: type[models.Model], where: str) -> list[CheckMessage]:
    """The optional ``providers``: routing is read only from a many-to-many to Provider; any
    other field of that name would be ignored, silently."""
    from telegram_tasks.services.sql import order_providers

    try:
        model._meta.get_field("providers")
    except FieldDoesNotExist:
        return []
    if order_providers() is not None:
        return []
    return [
        Error(
            f"{where}, whose 'providers' is not a many-to-many to telegram_tasks.Provider: "
            "its orders' routing would be ignored.",
            hint='Make it models.ManyToManyField("telegram_tasks.Provider", blank=True), or '
            "name it otherwise (docs/reuse.md).",
            id="telegram_tasks.E057",
        )
    ]


def _has_field(model: type[models.Model], name: str) -> bool:
    try:
        return model._meta.get_field(name).concrete
    except FieldDoesNotExist:
        return False


def _check_statuses(model: type[models.Model], where: str) -> list[CheckMessage]:
    status = getattr(model, "Status", None)
    missing = [s for s in ORDER_STATUSES if not hasattr(status, s)]
    active = getattr(model, "ACTIVE", None)
    problems = []
    if missing:
        problems.append(f"its Status lacks {', '.join(missing)}")
    if not isinstance(active, list | tuple | set | frozenset) or not active:
        problems.append("it has no ACTIVE (the statuses an order gets tasks in)")
    elif not missing:
        final = {getattr(status, s) for s in ("COMPLETED", "PARTIAL", "CANCELED")}
        if not {status.AWAITING, status.IN_PROGRESS} <= set(active) or final & set(active):
            problems.append("its ACTIVE must hold AWAITING and IN_PROGRESS and no final status")
    if not problems:
        return []
    return [
        Error(
            f"{where}: {'; '.join(problems)}.",
            hint="Give it a TextChoices 'Status' with AWAITING, PENDING, IN_PROGRESS, "
            "COMPLETED, PARTIAL and CANCELED, and ACTIVE = (Status.AWAITING, Status.PENDING, "
            "Status.IN_PROGRESS) (docs/reuse.md).",
            id="telegram_tasks.E055",
        )
    ]


def check_schedule() -> list[CheckMessage]:
    """The passes run from Celery beat: the database entries the migrations create with
    django-celery-beat installed, or entries in the Celery app's beat_schedule."""
    if apps.is_installed("django_celery_beat"):
        return []
    from celery import current_app

    needed = {schedule.GENERATE, schedule.HOUSEKEEP}
    if app_settings.PROVIDER_PUSH_URL:
        needed.add(schedule.PUSH)
    entries = (current_app.conf.beat_schedule or {}).values()
    missing = sorted(needed - {entry.get("task") for entry in entries})
    if not missing:
        return []
    return [
        Warning(
            f"Nothing schedules the Celery task(s) {', '.join(missing)}: without "
            "django-celery-beat, the Celery app's beat_schedule must hold them.",
            hint="In your Celery module: app.conf.beat_schedule = {**app.conf.beat_schedule, "
            "**telegram_tasks.schedule.BEAT_SCHEDULE}; or install django-celery-beat (its "
            "migrations add the entries); or, if cron runs the passes' commands, silence "
            f"telegram_tasks.W003. {REUSE}",
            id="telegram_tasks.W003",
        )
    ]


def check_upload_size() -> list[CheckMessage]:
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    needed = app_settings.SYNC_MAX_BATCH * SYNC_BYTES_PER_ACCOUNT
    if limit is None or limit >= needed:
        return []
    return [
        Warning(
            f"DATA_UPLOAD_MAX_MEMORY_SIZE is {limit} bytes: an accounts/sync of "
            f"TELEGRAM_TASKS['SYNC_MAX_BATCH'] ({app_settings.SYNC_MAX_BATCH}) accounts may "
            "need more and would be refused (413).",
            hint=f"Set DATA_UPLOAD_MAX_MEMORY_SIZE to at least {needed}, or lower SYNC_MAX_BATCH.",
            id="telegram_tasks.W004",
        )
    ]
