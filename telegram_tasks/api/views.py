"""The provider API: thin views that parse with a serializer, call one service, render."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.utils import timezone
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiExample, PolymorphicProxySerializer, extend_schema
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from telegram_tasks import services
from telegram_tasks.api import fastpath, waiting
from telegram_tasks.api import serializers as s
from telegram_tasks.api.authentication import IsProvider, ProviderTokenAuthentication
from telegram_tasks.api.exception_handlers import api_exception_handler
from telegram_tasks.api.parsers import StrictJSONParser
from telegram_tasks.conf import app_settings
from telegram_tasks.services import sql

ERRORS = {
    400: s.ErrorEnvelope,
    401: s.ErrorEnvelope,
    413: s.ErrorEnvelope,
    415: s.ErrorEnvelope,
    503: s.ErrorEnvelope,
}

# Request and response bodies of the seed, shown in the OpenAPI docs.
SYNC_EXAMPLE = {
    "accounts": [
        {"provider_account_id": "ext_123", "phone": "+1234567890", "is_active": True, "meta": {}}
    ]
}
PULL_EXAMPLE = {
    "ok": True,
    "count": 1,
    "tasks": [
        {
            "task_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "order_id": 123, "action": "subscribe",
            "link": "https://t.me/channel",
            "account": {"provider_account_id": "ext_123", "phone": "+1234567890"},
            "per_call": 1, "post_id": None, "link_hash": "abc123...", "attempt": 0,
            "leased_until": "2026-01-21T12:55:00Z", "lease_id": "01ARZ3NDEKTSV4RRFFQ69G5FAW",
        }
    ],
}  # fmt: skip
REPORT_EXAMPLE = {
    "task_id": "01ARZ3NDEKTSV4RRFFQ69G5FAV", "state": "done", "ok": True, "error": None,
    "retry_after": None, "provider_task_id": "provider_task_123", "data": {},
}  # fmt: skip


def described(**kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``extend_schema`` for a provider view's method, on drf-spectacular's AutoSchema whatever
    the project's DEFAULT_SCHEMA_CLASS (a method's annotation starts from its ``schema``)."""

    def describe(method: Callable[..., Any]) -> Callable[..., Any]:
        method.schema = AutoSchema  # type: ignore[attr-defined]
        return extend_schema(**kwargs)(method)

    return describe


class ProviderJSONRenderer(JSONRenderer):
    """JSON as the fast path writes it (compact, UTF-8, no NaN), whatever the project's
    COMPACT_JSON, UNICODE_JSON and STRICT_JSON (which DRF's renderer takes at import)."""

    ensure_ascii = False
    compact = True
    strict = True


class ProviderView(APIView):
    # Everything the provider API relies on is set here, none of it left to the project's
    # REST_FRAMEWORK defaults, which a host project sets for its own API.
    authentication_classes = [ProviderTokenAuthentication]
    permission_classes = [IsProvider]
    parser_classes = [StrictJSONParser]
    renderer_classes = [ProviderJSONRenderer]
    content_negotiation_class = DefaultContentNegotiation
    throttle_classes: list[type[BaseThrottle]] = []  # the provider's fleet is one client
    versioning_class = None
    schema = AutoSchema()

    def get_exception_handler(self) -> Callable[..., Response | None]:
        return api_exception_handler

    def parse(self, serializer_class: type[s.StrictSerializer], request: Request) -> dict[str, Any]:
        serializer = serializer_class(data=request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    @staticmethod
    def limit_batch(request: Request, key: str, most: int) -> None:
        """413 before validating the items one by one: a huge batch costs nothing to refuse."""
        data = request.data
        items = data.get(key) if isinstance(data, dict) else None
        if isinstance(items, list):
            sql.check_batch(items, most=most, what=key)


class AccountsSyncView(ProviderView):
    # A sync of 10,000 accounts is a few MB of JSON: more than the 2.5 MB other requests may
    # send (config.middleware.BodyLimit reads this; DRF reads the body only once the token
    # is checked).
    max_body_bytes = staticmethod(lambda: app_settings.SYNC_MAX_BODY_BYTES)

    @described(
        operation_id="accounts_sync",
        summary="Upsert the provider's accounts by provider_account_id",
        request=s.AccountsSyncIn,
        responses={200: s.AccountsSyncOut, **ERRORS},
        examples=[
            OpenApiExample("seed", request_only=True, value=SYNC_EXAMPLE),
            OpenApiExample(
                "synced", response_only=True, value={"ok": True, "synced": 1, "errors": []}
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        self.limit_batch(request, "accounts", app_settings.SYNC_MAX_BATCH)
        data = self.parse(s.AccountsSyncIn, request)
        valid, errors = s.validate_accounts(data["accounts"])
        result = services.accounts_sync(
            items=valid, now=timezone.now(), provider_id=request.user.id
        )
        return Response({"ok": True, "synced": result.synced, "errors": errors})


class PullView(ProviderView):
    @described(
        operation_id="tasks_pull",
        summary="Lease up to `limit` tasks",
        request=s.PullIn,
        responses={200: s.PullOut, 409: s.ErrorEnvelope, 429: s.ErrorEnvelope, **ERRORS},
        examples=[
            OpenApiExample("seed", request_only=True, value={"limit": 1000}),
            OpenApiExample("leased", response_only=True, value=PULL_EXAMPLE),
        ],
    )
    def post(self, request: Request) -> HttpResponse:
        data = self.parse(s.PullIn, request)
        result = services.tasks_pull(
            limit=data["limit"],
            now=timezone.now(),
            provider=request.user,
            accounts=data.get("accounts"),
            request_id=data.get("request_id"),
            wait_seconds=data.get("wait_seconds", 0),
            wait=waiting.lease_waiting,
        )
        return pull_response(result)


def pull_response(result: services.PullResult) -> HttpResponse:
    """The tasks as PostgreSQL wrote them (each already the JSON TaskOut describes), joined
    into the answer: 1,000 of them are never decoded and encoded again."""
    tasks = result.tasks_json
    replayed = ',"replayed":true' if result.replayed else ""
    body = f'{{"ok":true,"count":{len(tasks)}{replayed},"tasks":[{",".join(tasks)}]}}'
    return HttpResponse(body.encode(), content_type="application/json")


class ReportView(ProviderView):
    @classmethod
    def as_view(cls, **initkwargs: Any) -> Callable[..., HttpResponseBase]:
        """The full view, behind the fast path for a single report in its common shape (see
        ``fastpath``): same answers, a third of the cost."""
        full = super().as_view(**initkwargs)

        @functools.wraps(full)  # keeps cls, initkwargs, csrf_exempt (the schema reads them)
        def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if request.method == "POST":
                answer = fastpath.single_report(request)
                if answer is not None:
                    return answer
            return full(request, *args, **kwargs)

        return view

    @described(
        operation_id="tasks_report",
        summary="Report a task's result (or a batch: {'reports': [...]})",
        request=PolymorphicProxySerializer(
            component_name="ReportRequest",
            serializers=[s.ReportIn, s.ReportBatchIn],
            resource_type_field_name=None,
        ),
        responses={
            200: PolymorphicProxySerializer(
                component_name="ReportResponse",
                serializers=[s.ReportOutBody, s.ReportBatchOut],
                resource_type_field_name=None,
            ),
            404: s.ErrorEnvelope,
            409: s.ErrorEnvelope,
            **ERRORS,
        },
        examples=[
            OpenApiExample("seed", request_only=True, value=REPORT_EXAMPLE),
            OpenApiExample("reported", response_only=True, value={"ok": True}),
        ],
    )
    def post(self, request: Request) -> Response:
        if isinstance(request.data, dict) and "reports" in request.data:
            return self._batch(request)
        report = s.report_in(self.parse(s.ReportIn, request))
        [out] = services.tasks_report(reports=[report], now=timezone.now(), provider=request.user)
        if out.error is not None:
            out.error.details = {"task_id": out.task_id}
            raise out.error
        body: dict[str, Any] = {"ok": True, "task_id": out.task_id, "status": out.status}
        if out.duplicate:
            body["duplicate"] = True
        return Response(body)

    def _batch(self, request: Request) -> Response:
        self.limit_batch(request, "reports", app_settings.REPORT_MAX_BATCH)
        # An invalid item fails the whole batch (400): nothing of a bad batch is applied.
        items = self.parse(s.ReportBatchIn, request)["reports"]
        outs = services.tasks_report(
            reports=[s.report_in(i) for i in items], now=timezone.now(), provider=request.user
        )
        return Response({"ok": True, "results": [report_item(o) for o in outs]})


def report_item(out: services.ReportOut) -> dict[str, Any]:
    if out.error is not None:
        return {"task_id": out.task_id, "ok": False, "error": out.error.as_dict()}
    item: dict[str, Any] = {"task_id": out.task_id, "ok": True, "status": out.status}
    if out.duplicate:
        item["duplicate"] = True
    return item


def lease_item(out: services.LeaseOut) -> dict[str, Any]:
    if out.error is not None:
        return {"task_id": out.task_id, "ok": False, "error": out.error.as_dict()}
    item: dict[str, Any] = {"task_id": out.task_id, "ok": True}
    if out.leased_until is not None:
        item["leased_until"] = out.leased_until
    return item


class ExtendView(ProviderView):
    @described(
        operation_id="tasks_extend",
        summary="Heartbeat: extend leases of slow tasks",
        request=s.ExtendIn,
        responses={200: s.LeasesOut, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        self.limit_batch(request, "leases", app_settings.REPORT_MAX_BATCH)
        data = self.parse(s.ExtendIn, request)
        refs = [
            services.LeaseRef(i["task_id"], i["lease_id"], i.get("seconds")) for i in data["leases"]
        ]
        outs = services.tasks_extend(leases=refs, now=timezone.now(), provider_id=request.user.id)
        return Response({"ok": True, "results": [lease_item(o) for o in outs]})


class ReleaseView(ProviderView):
    @described(
        operation_id="tasks_release",
        summary="Hand leased tasks back unfinished (no attempt counted)",
        request=s.ReleaseIn,
        responses={200: s.LeasesOut, **ERRORS},
    )
    def post(self, request: Request) -> Response:
        self.limit_batch(request, "leases", app_settings.REPORT_MAX_BATCH)
        data = self.parse(s.ReleaseIn, request)
        refs = [services.LeaseRef(i["task_id"], i["lease_id"]) for i in data["leases"]]
        outs = services.tasks_release(leases=refs, now=timezone.now(), provider_id=request.user.id)
        return Response({"ok": True, "results": [lease_item(o) for o in outs]})
