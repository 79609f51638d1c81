"""The provider API in a project other than this one: whatever the project's REST_FRAMEWORK
defaults, wherever it mounts the URLs (tests/host/ runs the whole app in such a project)."""

import pytest
from django.test import TestCase
from django.urls import include, path
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from telegram_tasks.api.schema import SCHEMA_SETTINGS
from tests.factories import make_accounts

pytestmark = pytest.mark.django_db
TOKEN = "provider-secret-token"
PATHS = ("accounts/sync", "tasks/pull", "tasks/report", "tasks/extend", "tasks/release")

# A host's own API defaults, each of which would change the provider API if it relied on them.
HOST_DRF = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.FormParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.BrowsableAPIRenderer"],
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"user": "1/day"},
    "DEFAULT_VERSIONING_CLASS": "rest_framework.versioning.NamespaceVersioning",
    "DEFAULT_SCHEMA_CLASS": "rest_framework.schemas.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "rest_framework.views.exception_handler",
}

# This module as a project's URLconf: the app mounted under a prefix of the host's choosing.
urlpatterns = [path("broker/", include("telegram_tasks.urls"))]


class Client(APIClient):
    def generic(self, *args, **kwargs):
        with TestCase.captureOnCommitCallbacks(execute=True):
            return super().generic(*args, **kwargs)


@pytest.fixture
def api(settings):
    settings.PROVIDER_TOKEN = TOKEN
    client = Client()
    client.credentials(HTTP_X_PROVIDER_TOKEN=TOKEN)
    return client


@pytest.fixture
def host_spectacular(monkeypatch):
    """A host's own SPECTACULAR_SETTINGS (drf-spectacular reads them once, so they are set on
    its settings object; those it reads at import, such as SERVE_INCLUDE_SCHEMA, are for the
    host project of tests/host/)."""
    from drf_spectacular.settings import spectacular_settings

    monkeypatch.setattr(spectacular_settings, "TITLE", "Shop")
    monkeypatch.setattr(spectacular_settings, "COMPONENT_SPLIT_REQUEST", False)
    monkeypatch.setattr(spectacular_settings, "POSTPROCESSING_HOOKS", [])


def test_the_provider_api_keeps_its_behaviour_under_a_hosts_drf_defaults(
    api, settings, host_spectacular
):
    settings.REST_FRAMEWORK = HOST_DRF
    base = "/api/provider/telegram"
    make_accounts(1)
    for _ in range(2):  # a host's throttle would refuse the second
        synced = api.post(f"{base}/accounts/sync", {"accounts": []}, format="json")
        assert synced.status_code == 200 and synced["Content-Type"] == "application/json"
        assert synced.json() == {"ok": True, "synced": 0, "errors": []}
    assert api.post(f"{base}/tasks/pull", {"limit": 5}, format="json").json()["count"] == 0
    refused = Client().post(f"{base}/tasks/pull", {"limit": 5}, format="json")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "not_authenticated"
    malformed = api.generic("POST", f"{base}/tasks/report", "{", content_type="application/json")
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "malformed_json"
    batch = {"reports": [{"task_id": "0" * 26, "state": "done"}]}
    answer = api.post(f"{base}/tasks/report", batch, format="json")
    assert answer.json()["results"][0]["error"]["code"] == "task_not_found"
    settings.DEBUG = True  # (the schema is served to anyone with DEBUG on, staff otherwise)
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert set(schema["paths"]) == {f"{base}/{p}" for p in PATHS}
    assert schema["info"]["title"] == SCHEMA_SETTINGS["TITLE"]
    assert schema["components"]["schemas"]["PullInRequest"]["additionalProperties"] is False


def test_answers_are_counted_and_described_wherever_the_project_mounts_the_api(api, settings):
    settings.ROOT_URLCONF = __name__

    def counted():
        return REGISTRY.get_sample_value("telegram_tasks_http_responses_total", {"code": "200"})

    before = counted() or 0
    answer = api.post("/broker/provider/telegram/tasks/pull", {"limit": 1}, format="json")
    assert answer.status_code == 200
    assert counted() == before + 1
    # The schema names the routes where they are.
    settings.DEBUG = True  # (the schema is served to anyone with DEBUG on, staff otherwise)
    paths = api.get("/broker/schema/", HTTP_ACCEPT="application/json").json()["paths"]
    assert set(paths) == {f"/broker/provider/telegram/{p}" for p in PATHS}


def test_the_api_writes_its_json_whatever_the_projects_json_settings(api, monkeypatch):
    """DRF's renderer takes COMPACT_JSON and UNICODE_JSON at import: as a project setting
    them would have it."""
    from rest_framework.renderers import JSONRenderer

    monkeypatch.setattr(JSONRenderer, "compact", False)
    monkeypatch.setattr(JSONRenderer, "ensure_ascii", True)
    answer = api.post("/api/provider/telegram/accounts/sync", {"accounts": []}, format="json")
    assert answer.content == b'{"ok":true,"synced":0,"errors":[]}'
