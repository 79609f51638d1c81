from django.conf import settings
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("telegram_tasks.urls")),
]
if settings.BENCH_ENDPOINTS:
    from config.bench_views import noop

    urlpatterns.insert(0, path("bench/noop", noop))
