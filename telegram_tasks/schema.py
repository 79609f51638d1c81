"""OpenAPI description of the provider token (drf-spectacular extension, registered on import)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ProviderTokenScheme(OpenApiAuthenticationExtension):
    target_class = "telegram_tasks.authentication.ProviderTokenAuthentication"
    name = "ProviderToken"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "X-Provider-Token"}
