"""Schemathesis against the served OpenAPI schema: no generated request may get a 5xx or a
response that breaks the schema. Runs in-process over WSGI, against real PostgreSQL and Redis."""

import json

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.urls import include, path
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from drf_spectacular.settings import patched_settings
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from telegram_tasks.api.schema import SCHEMA_SETTINGS
from telegram_tasks.urls import provider_urlpatterns

TOKEN = "fuzz-token"


def served_schema() -> dict:
    """The schema the app serves (to staff, with DEBUG off: see test_api), made as its view
    makes it — the app's own schema settings, its routes where the project mounts them — with
    no database; the requests go to the app over WSGI."""
    with patched_settings({**SCHEMA_SETTINGS, "SCHEMA_PATH_PREFIX": "/api/"}):
        generator = SchemaGenerator(patterns=[path("api/", include(provider_urlpatterns))])
        return json.loads(OpenApiJsonRenderer().render(generator.get_schema(public=True)))


schema = schemathesis.openapi.from_dict(served_schema())
schema.app = get_wsgi_application()


@pytest.fixture(autouse=True)
def provider_token(settings):
    settings.PROVIDER_TOKEN = TOKEN


@pytest.fixture(autouse=True)
def no_long_waits(monkeypatch):
    """A generated long-poll would wait up to 20 s for tasks that never come (the test's
    transaction announces nothing): it looks once, as a pull without waiting does. (Long-polls
    have their own tests.)"""
    from telegram_tasks.api import waiting

    monkeypatch.setattr(waiting, "lease_waiting", lambda lease, now, **kwargs: lease(now))


@pytest.fixture(autouse=True)
def keep_test_connection():
    """The WSGI handler closes the database connection after each request; inside the test's
    transaction it must stay open (Django's own test client does the same)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.mark.django_db
@schema.parametrize()
# Derandomized: the same examples on every run, so CI never meets a case no one saw locally.
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms_to_its_schema(case):
    excluded = []
    if case.path.endswith("/accounts/sync"):
        # By contract a sync answers 200 with per-item errors for the items it could not take,
        # so an invalid item is not a rejected request there.
        excluded.append(negative_data_rejection)
    if case.path.endswith("/tasks/report"):
        # Cross-field rules the schema cannot state (ok=false with state=done, retry_after on a
        # report that is not failed) are refused with 400 on purpose.
        excluded.append(positive_data_acceptance)
    case.call_and_validate(headers={"X-Provider-Token": TOKEN}, excluded_checks=excluded)
