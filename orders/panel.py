"""``POST /api/v2``: the SMM panel API ("API v2") as every panel script and client library
speaks it — ``key`` and ``action`` in a form (or multipart, or JSON), a JSON answer. An error
is ``{"error": "<text>"}`` with HTTP 200 (clients read the body), except 429 (the key's rate
limit, with Retry-After) and 503 (PostgreSQL unavailable). Each action parses its fields,
calls one service or selector and renders the market's shape."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from orders import money, ratelimit, selectors, services
from orders.customers import ApiKey, Customer
from orders.exceptions import IncorrectOrder, IncorrectRefill, PanelError, RateLimited
from orders.params import takes_answer

logger = logging.getLogger(__name__)

Fields = dict[str, str]


def _answer(data: Any, status: int = 200, **headers: str) -> JsonResponse:
    response = JsonResponse(
        data, status=status, safe=False, json_dumps_params={"ensure_ascii": False}
    )
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _error(text: str) -> dict[str, str]:
    return {"error": text}


# The fields that hold several ids: a JSON client may send them as a list.
_LISTS = ("orders", "refills")


def _scalar(name: str, value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | str):
        return str(value)
    if (
        name in _LISTS
        and isinstance(value, list)
        and all(isinstance(v, int | str) and not isinstance(v, bool) for v in value)
    ):
        return ",".join(str(v) for v in value)  # "orders": [1, 2] from a JSON client
    return None


def parse_fields(request: HttpRequest) -> Fields:
    """The request's fields as text: a form (urlencoded or multipart) or a JSON object.
    PanelError for a body that is neither, or a value no database could store."""
    content_type = (request.content_type or "").lower()
    if content_type == "application/json":
        try:
            body = json.loads(request.body or b"{}")
        except RequestDataTooBig:
            raise PanelError("Incorrect request: the body is too large") from None
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise PanelError("Incorrect request: the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise PanelError("Incorrect request: the body must be a JSON object")
        raw = {str(k): _scalar(str(k), v) for k, v in body.items()}
        fields = {k: v for k, v in raw.items() if v is not None}
    else:
        try:
            fields = {k: request.POST.get(k, "") for k in request.POST}
        except (RequestDataTooBig, MultiPartParserError) as exc:
            raise PanelError(f"Incorrect request: {exc}") from None
        except SuspiciousOperation as exc:  # too many fields or files: Django would answer 400
            raise PanelError(f"Incorrect request: {exc}") from None
    for name, value in fields.items():
        if "\x00" in value or len(value) > 10_000:
            raise PanelError(f"Incorrect request: {name} holds a NUL character or is too long")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise PanelError(f"Incorrect request: {name} is not valid text") from None
    return fields


def _ids(fields: Fields, one: str, many: str) -> tuple[list[str], bool]:
    """The ids of ``many`` (comma-separated, at most 100), else the one of ``one``; and whether
    the answer is a list."""
    if fields.get(many, "").strip():
        ids = [i.strip() for i in fields[many].split(",") if i.strip()]
        if len(ids) > selectors.MAX_IDS:
            raise PanelError(f"Too many ids: at most {selectors.MAX_IDS} in one request")
        return ids, True
    if fields.get(one, "").strip():
        return [fields[one].strip()], False
    raise PanelError(f"Incorrect request: give {one} or {many}")


def _numbers(ids: list[str]) -> list[int]:
    return [n for n in map(selectors.panel_id, ids) if n is not None]


def services_action(key: ApiKey, fields: Fields, request: HttpRequest) -> Any:
    return [
        {
            "service": s.pk,
            "name": s.name,
            "type": "Poll" if takes_answer(s.action, s.params) else "Default",
            "category": s.category,
            "rate": money.text(s.rate),
            "min": str(s.min_quantity),
            "max": str(s.max_quantity),
            "dripfeed": s.dripfeed,
            "refill": bool(s.refill_days),
            "cancel": s.cancel,
        }
        for s in selectors.services_for_sale()
    ]


def add_action(key: ApiKey, fields: Fields, request: HttpRequest) -> Any:
    wanted = services.AddRequest(
        service=fields.get("service"),
        link=fields.get("link"),
        quantity=fields.get("quantity"),
        runs=fields.get("runs"),
        interval=fields.get("interval"),
        request_key=request.headers.get("Idempotency-Key") or fields.get("request_id"),
        answer_number=fields.get("answer_number"),
    )
    return {"order": services.order_add(key=key, request=wanted, now=timezone.now())}


def order_state(order: Any, customer: Customer) -> dict[str, str]:
    return {
        "charge": money.text(order.charge - order.refund),
        "start_count": str(order.start_count or 0),
        "status": selectors.status_word(order),
        "remains": str(order.remains),
        "currency": customer.currency,
    }


def status_action(key: ApiKey, fields: Fields, request: HttpRequest) -> Any:
    ids, many = _ids(fields, "order", "orders")
    found = selectors.customer_orders(key.customer_id, _numbers(ids))
    states = {
        i: order_state(found[n], key.customer) if (n := selectors.panel_id(i)) in found
        else _error(str(IncorrectOrder()))
        for i in ids
    }  # fmt: skip
    if many:
        return states
    if "error" in states[ids[0]]:
        raise IncorrectOrder
    return states[ids[0]]


def cancel_action(key: ApiKey, fields: Fields, request: HttpRequest) -> Any:
    ids, _ = _ids(fields, "order", "orders")
    outs = services.orders_cancel_for(key=key, order_ids=ids, now=timezone.now())
    return [
        {"order": _id(o.order), "cancel": 1 if o.error is None else _error(str(o.error))}
        for o in outs
    ]


def refill_action(key: ApiKey, fields: Fields, request: HttpRequest) -> Any:
    ids, many = _ids(fields, "order", "orders")
    outs = services.refill_create(key=key, order_ids=ids, now=timezone.now())
    if not many:
        if outs[0].error is not None:
            raise outs[0].error
        return {"refill": str(outs[0].refill)}
    return [
        {"order": _id(o.order), "refill": o.refill if o.error is None else _error(str(o.error))}
        for o in outs
    ]


def refill_status_action(key: ApiKey, fields: Fields, request: HttpRequest) -> Any:
    ids, many = _ids(fields, "refill", "refills")
    found = selectors.customer_refills(key.customer_id, _numbers(ids))

    def word(i: str) -> Any:
        refill = found.get(selectors.panel_id(i))
        return selectors.refill_word(refill) if refill else _error(str(IncorrectRefill()))

    if not many:
        status = word(ids[0])
        if isinstance(status, dict):
            raise IncorrectRefill
        return {"status": status}
    return [{"refill": _id(i), "status": word(i)} for i in ids]


def balance_action(key: ApiKey, fields: Fields, request: HttpRequest) -> Any:
    customer = Customer.objects.only("balance", "currency").get(pk=key.customer_id)
    return {"balance": money.text(customer.balance), "currency": customer.currency}


def _id(raw: str) -> int | str:
    number = selectors.panel_id(raw)
    return raw if number is None else number


ACTIONS: dict[str, Callable[[ApiKey, Fields, HttpRequest], Any]] = {
    "services": services_action,
    "add": add_action,
    "status": status_action,
    "cancel": cancel_action,
    "refill": refill_action,
    "refill_status": refill_status_action,
    "balance": balance_action,
}


@csrf_exempt
def panel_api(request: HttpRequest) -> JsonResponse:
    """One endpoint, every action."""
    try:
        if request.method != "POST":
            raise PanelError("Incorrect request: use POST")
        fields = parse_fields(request)
        key = services.api_key_authenticate(key=fields.get("key", ""), now=timezone.now())
        wait = ratelimit.retry_after(f"{key.pk}")
        if wait is not None:
            raise RateLimited(wait)
        action = ACTIONS.get(fields.get("action", "").strip())
        if action is None:
            names = ", ".join(ACTIONS)
            raise PanelError(f"Incorrect request: action must be one of {names}")
        return _answer(action(key, fields, request))
    except RateLimited as exc:
        return _answer(_error(str(exc)), status=429, Retry_After=str(exc.retry_after))
    except PanelError as exc:
        return _answer(_error(str(exc)))
    except (OperationalError, InterfaceError) as exc:
        logger.warning("panel API request failed, PostgreSQL unavailable: %s", exc)
        return _answer(_error("Service unavailable, retry later"), status=503, Retry_After="5")
