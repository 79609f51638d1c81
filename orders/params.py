"""The action parameters of panel orders (a reaction's emoji, a poll's option, …): a service's
fixed params, and an add's (a poll service takes the market's ``answer_number``), validated by
the broker's one validator, ``telegram_tasks.params.clean_params``."""

from __future__ import annotations

from typing import Any

from telegram_tasks.params import InvalidParams, clean_params

__all__ = ["InvalidParams", "order_params", "service_params", "takes_answer"]

POLL_ACTION = "poll_vote"


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
