"""The counters the web processes keep (prometheus-client; summed over the gunicorn workers
through PROMETHEUS_MULTIPROC_DIR at each scrape, see ``metrics``): reports by outcome, the
sizes of group commit's batches, and the provider API's answers by status code."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from prometheus_client import Counter, Histogram

REPORTS = Counter(
    "telegram_tasks_reports",
    "Reports received, by provider, the state reported and what came of it (the task's status "
    "after it, duplicate, or the error's code)",
    ["state", "outcome", "provider"],
)
REPORT_BATCHES = Histogram(
    "telegram_tasks_report_batch_size",
    "Single reports applied together by group commit: reports per batch (1: a report that "
    "found no batch under way and was applied alone)",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
RESPONSES = Counter(
    "telegram_tasks_http_responses",
    "Answers of the provider API, by HTTP status code",
    ["code"],
)


def count_reports(reports: Any, outs: Any, *, provider: str = "") -> None:
    """Count each report of a batch by its state and outcome, under its provider's name."""
    for report, out in zip(reports, outs, strict=True):
        if out.error is not None:
            outcome = out.error.code
        else:
            outcome = "duplicate" if out.duplicate else (out.status or "unknown")
        REPORTS.labels(state=report.state, outcome=outcome, provider=provider).inc()


class ApiResponses:
    """Middleware: counts the provider API's answers by status code (a 5xx alert rule's input).
    The provider API's routes are known by their names (``provider-…``, telegram_tasks.urls),
    wherever a project mounts them."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        if match is not None and (match.url_name or "").startswith("provider-"):
            RESPONSES.labels(code=str(response.status_code)).inc()
        return response
