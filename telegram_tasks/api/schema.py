"""The provider API's OpenAPI schema and its docs: the views that serve them, the schema's
settings, and the extensions it needs (the token scheme, closed request bodies). The schema
describes the app's own routes with the app's own settings, whatever the project's
REST_FRAMEWORK and SPECTACULAR_SETTINGS (a project may describe an API of its own differently,
or not at all). It is generated once per process (tens of milliseconds of a worker's CPU each
time), and served to anyone with DEBUG on, to staff (an admin session) otherwise."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from django.conf import settings
from django.http import HttpResponse
from django.http.response import HttpResponseBase
from django.urls import URLPattern, include, path
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

SCHEMA_SETTINGS: dict[str, Any] = {
    "TITLE": "Telegram task broker — provider API",
    "DESCRIPTION": "Pull tasks under a lease, report each result.",
    "VERSION": "1.0.0",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "telegram_tasks.api.schema.closed_request_bodies",
    ],
}


class ProviderTokenScheme(OpenApiAuthenticationExtension):
    target_class = "telegram_tasks.api.authentication.ProviderTokenAuthentication"
    name = "ProviderToken"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "X-Provider-Token"}


def closed_request_bodies(result, generator, request, public):
    """Request bodies refuse unknown fields (StrictSerializer): say so in the schema."""
    for name, component in result.get("components", {}).get("schemas", {}).items():
        if name.endswith("Request") and component.get("type") == "object":
            component["additionalProperties"] = False
    return result


class StaffUnlessDebug(BasePermission):
    """The schema and the docs: anyone with DEBUG on, staff (an admin session) otherwise."""

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        return bool(settings.DEBUG or (user and user.is_active and user.is_staff))


class ProviderSchemaView(SpectacularAPIView):
    """The schema of ``routes`` (the provider API's), at the prefix the project mounted them,
    generated once per process, prefix and format, then served as it was rendered."""

    custom_settings = SCHEMA_SETTINGS
    versioning_class = None
    routes: list[URLPattern] = []
    authentication_classes = [SessionAuthentication]
    permission_classes = [StaffUnlessDebug]
    _rendered: ClassVar[dict[tuple[str, str, str], tuple[bytes, str, str]]] = {}

    @extend_schema(exclude=True)  # (staff only: not part of the provider's API)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponseBase:
        prefix = request.path_info.lstrip("/").removesuffix("schema/")
        key = (prefix, request.accepted_media_type, request.GET.get("lang") or "")
        if key not in self._rendered:
            self.patterns = [path(prefix, include(self.routes))]
            # Operations are tagged by the first part of their path past the mount ("provider").
            self.custom_settings = {
                **SCHEMA_SETTINGS,
                "SCHEMA_PATH_PREFIX": re.escape(f"/{prefix}"),
            }
            response = self.finalize_response(request, super().get(request, *args, **kwargs))
            response.render()
            self._rendered[key] = (
                response.content,
                response["Content-Type"],
                response["Content-Disposition"],
            )
        content, content_type, disposition = self._rendered[key]
        return HttpResponse(
            content, content_type=content_type, headers={"Content-Disposition": disposition}
        )


class DocsView(SpectacularSwaggerSplitView):
    """Swagger UI with its start-up script served apart (no inline script: the CSP holds)."""

    authentication_classes = [SessionAuthentication]
    permission_classes = [StaffUnlessDebug]
    title = SCHEMA_SETTINGS["TITLE"]
