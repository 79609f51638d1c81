"""The provider API's OpenAPI schema: the view that serves it, its settings, and the extensions
it needs (the token scheme, closed request bodies). The schema describes the app's own routes
with the app's own settings, whatever the project's REST_FRAMEWORK and SPECTACULAR_SETTINGS
(a project may describe an API of its own differently, or not at all); who may read it is the
project's SPECTACULAR_SETTINGS (SERVE_PERMISSIONS, SERVE_AUTHENTICATION)."""

from __future__ import annotations

import re
from typing import Any

from django.urls import URLPattern, include, path
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.views import SpectacularAPIView
from rest_framework.request import Request
from rest_framework.response import Response

SCHEMA_SETTINGS: dict[str, Any] = {
    "TITLE": "Telegram task broker — provider API",
    "DESCRIPTION": "Pull tasks under a lease, report each result.",
    "VERSION": "1.0.0",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "telegram_tasks.schema.closed_request_bodies",
    ],
}


class ProviderTokenScheme(OpenApiAuthenticationExtension):
    target_class = "telegram_tasks.authentication.ProviderTokenAuthentication"
    name = "ProviderToken"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "X-Provider-Token"}


def closed_request_bodies(result, generator, request, public):
    """Request bodies refuse unknown fields (StrictSerializer): say so in the schema."""
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request") and component.get("type") == "object":
            component["additionalProperties"] = False
    return result


class ProviderSchemaView(SpectacularAPIView):
    """The schema of ``routes`` (the provider API's), at the prefix the project mounted them."""

    custom_settings = SCHEMA_SETTINGS
    versioning_class = None
    routes: list[URLPattern] = []

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        prefix = request.path_info.lstrip("/").removesuffix("schema/")
        self.patterns = [path(prefix, include(self.routes))]
        # Operations are tagged by the first part of their path past the mount ("provider").
        self.custom_settings = {**SCHEMA_SETTINGS, "SCHEMA_PATH_PREFIX": re.escape(f"/{prefix}")}
        return super().get(request, *args, **kwargs)
