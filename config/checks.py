"""Deployment-safety checks: settings that are fine on a laptop and dangerous in production."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1", "testserver"}


@register(Tags.security)
def check_secret_key(app_configs, **kwargs):
    from config.settings import INSECURE_DEV_SECRET_KEY

    if not settings.DEBUG and settings.SECRET_KEY == INSECURE_DEV_SECRET_KEY:
        return [
            Error(
                "SECRET_KEY is not set and DEBUG is off.",
                hint="Set the SECRET_KEY environment variable to a long random value.",
                id="config.E001",
            )
        ]
    return []


@register(Tags.security)
def check_debug_on_public_host(app_configs, **kwargs):
    public = [h for h in settings.ALLOWED_HOSTS if h.lstrip(".") not in LOCAL_HOSTS]
    if settings.DEBUG and public:
        return [
            Warning(
                f"DEBUG is on while ALLOWED_HOSTS admits public hosts: {', '.join(public)}.",
                hint="Turn DEBUG off outside a developer's machine.",
                id="config.W001",
            )
        ]
    return []


@register()
def check_celery_broker(app_configs, **kwargs):
    if settings.REDIS_IS_CLUSTER and not settings.CELERY_BROKER_URL:
        return [
            Error(
                "REDIS_URL names a Redis Cluster, which Celery's broker cannot use.",
                hint="Set CELERY_BROKER_URL to a plain Redis (redis://…) or another broker.",
                id="config.E002",
            )
        ]
    return []
