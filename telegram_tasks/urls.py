"""The app's URLconf, what a host project includes
(``path("api/", include("telegram_tasks.urls"))``, docs/reuse.md): the provider API, its schema
and its docs (``telegram_tasks.api.urls``). The operator's pages are the host's to mount: the
dashboard (``telegram_tasks.admin.dashboard``) and the probes and metrics
(``telegram_tasks.monitoring.metrics``)."""

from telegram_tasks.api.urls import provider_urlpatterns, urlpatterns

__all__ = ["provider_urlpatterns", "urlpatterns"]
