from django.contrib import admin
from django.urls import include, path

from telegram_tasks.admin.dashboard import dashboard_view
from telegram_tasks.monitoring.metrics import healthz_view, metrics_view, readyz_view

urlpatterns = [
    path("ops/healthz", healthz_view),
    path("ops/readyz", readyz_view),
    path("ops/metrics", metrics_view),
    path(
        "admin/telegram/dashboard/",
        admin.site.admin_view(dashboard_view),
        name="telegram_tasks_dashboard",
    ),
    path("admin/", admin.site.urls),
    # The provider API (and its schema and docs) under a prefix of the host's choosing.
    path("broker/", include("telegram_tasks.urls")),
]
