"""The action parameters of panel orders (a reaction's emoji, a poll's option, …).

ADAPTER (issue 26, "action params"): ``telegram_tasks.params`` (``clean_params``,
``InvalidParams``) and ``Order.params`` land with that issue. Until then this module stands in:
without ``telegram_tasks.params`` any JSON object is taken as it is, and without an
``Order.params`` column an order keeps none. When issue 26 is merged, delete the fallback
branch below (and ``ORDER_HAS_PARAMS``) so both are required; nothing else changes: services
and the panel API call only ``service_params`` and ``order_params``.
"""

from __future__ import annotations

from typing import Any

try:  # ADAPTER(issue 26): the validator of telegram_tasks.
    from telegram_tasks.params import InvalidParams, clean_params
except ImportError:  # pragma: no cover — before issue 26

    class InvalidParams(ValueError):  # type: ignore[no-redef]
        """Stand-in for telegram_tasks.params.InvalidParams."""

    def clean_params(action: str, params: object) -> dict:  # type: ignore[misc]
        if not isinstance(params, dict):
            raise InvalidParams("params must be a JSON object")
        return dict(params)


POLL_ACTION = "poll_vote"


def order_has_params() -> bool:
    """ADAPTER(issue 26): whether the order model has ``params`` yet."""
    from orders.models import Order

    return any(f.name == "params" for f in Order._meta.get_fields())


def service_params(action: str, params: object) -> dict[str, Any]:
    """A service's fixed params, validated for its action. A poll service may leave out the
    option: each order then gives it (the market's ``answer_number``)."""
    params = {} if params in (None, "") else params
    if action == POLL_ACTION and isinstance(params, dict) and "option" not in params:
        if params:
            raise InvalidParams("a poll service fixes only 'option', or nothing")
        return {}
    return clean_params(action, params)


def takes_answer(action: str, params: dict[str, Any]) -> bool:
    """A poll service without a fixed option: an add must give ``answer_number``."""
    return action == POLL_ACTION and "option" not in params


def order_params(action: str, service: dict[str, Any], answer_number: str | None) -> dict:
    """An order's params: the service's, with a poll service's option from ``answer_number``.
    InvalidParams says what is wrong."""
    params = dict(service)
    if takes_answer(action, params):
        text = str(answer_number or "").strip()
        # ASCII digits, a few of them: int() refuses "²" (which isdigit() takes) and very long
        # digit strings.
        if not (text.isascii() and text.isdigit() and len(text) <= 9):
            raise InvalidParams("answer_number: give the poll option's number (1, 2, …)")
        params["option"] = int(text)
    return clean_params(action, params)
