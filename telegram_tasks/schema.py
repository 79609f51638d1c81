"""The OpenAPI schema and its docs: the provider token's description (a drf-spectacular
extension, registered on import), and the views that serve them."""

from typing import Any, ClassVar

from django.conf import settings
from django.http import HttpResponse
from django.http.response import HttpResponseBase
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.permissions import BasePermission


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


class StaffUnlessDebug(BasePermission):
    """The schema and the docs: anyone with DEBUG on, staff (an admin session) otherwise."""

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        return bool(settings.DEBUG or (user and user.is_active and user.is_staff))


class SchemaView(SpectacularAPIView):
    """The OpenAPI schema, generated once per process and format, then served as it was
    rendered (generating it takes tens of milliseconds of a worker's CPU)."""

    permission_classes = [StaffUnlessDebug]
    _rendered: ClassVar[dict[tuple[str, str], tuple[bytes, str, str]]] = {}

    @extend_schema(exclude=True)  # (staff only: not part of the provider's API)
    def get(self, request: Any, *args: Any, **kwargs: Any) -> HttpResponseBase:
        key = (request.accepted_media_type, request.GET.get("lang") or "")
        if key not in self._rendered:
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

    permission_classes = [StaffUnlessDebug]
