from django.urls import path, re_path

from telegram_tasks.api import views
from telegram_tasks.api.exception_handlers import json_not_found
from telegram_tasks.api.schema import DocsView, ProviderSchemaView

provider_urlpatterns = [
    path(
        "provider/telegram/accounts/sync",
        views.AccountsSyncView.as_view(),
        name="provider-accounts-sync",
    ),
    path("provider/telegram/tasks/pull", views.PullView.as_view(), name="provider-tasks-pull"),
    path(
        "provider/telegram/tasks/report", views.ReportView.as_view(), name="provider-tasks-report"
    ),
    path(
        "provider/telegram/tasks/extend", views.ExtendView.as_view(), name="provider-tasks-extend"
    ),
    path(
        "provider/telegram/tasks/release",
        views.ReleaseView.as_view(),
        name="provider-tasks-release",
    ),
]

urlpatterns = [
    path("schema/", ProviderSchemaView.as_view(routes=provider_urlpatterns), name="schema"),
    path("docs/", DocsView.as_view(url_name="schema"), name="docs"),
    *provider_urlpatterns,
    # Anything else under /api/ answers in the API's envelope, not Django's HTML 404.
    re_path(r"^.*$", json_not_found, name="provider-not-found"),
]
