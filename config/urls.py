from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from orders.panel import panel_api
from telegram_tasks.admin.dashboard import dashboard_view
from telegram_tasks.monitoring.metrics import healthz_view, metrics_view, readyz_view

# The operator's lists are wide (an account's state, cooldowns, caps, channels and locks): at
# 1366 px the navigation sidebar would push their last columns out of sight. The index and the
# breadcrumbs lead everywhere it does.
admin.site.enable_nav_sidebar = False
admin.site.site_header = "Telegram tasks"
admin.site.site_title = "Telegram tasks admin"
admin.site.index_title = "Operations"
admin.site.site_url = None  # no public site beside the admin and the API

urlpatterns = [
    path("healthz", healthz_view, name="healthz"),
    path("readyz", readyz_view, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path(
        "admin/dashboard/",
        admin.site.admin_view(dashboard_view),
        name="telegram_tasks_dashboard",
    ),
    path("admin/", admin.site.urls),
    # The SMM panel API (orders.panel), with or without the trailing slash panels differ on.
    path("api/v2", panel_api, name="panel-api"),
    path("api/v2/", panel_api),
    path("api/", include("telegram_tasks.urls")),
]
if settings.BENCH_ENDPOINTS:
    from config.bench_views import noop

    urlpatterns.insert(0, path("bench/noop", noop))
