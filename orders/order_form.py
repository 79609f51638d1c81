"""The operator's order form (the admin's add and change page): every field explained in the
operator's words, a field for each parameter the chosen action takes, and a warning before an
order is made that can never finish (more distinct accounts than can ever do it)."""

from __future__ import annotations

from math import ceil
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from orders.models import Order
from telegram_tasks import selectors
from telegram_tasks.admin.params import (
    FORM_PARAMS,
    action_params_json,
    option_field,
    reactions_field,
)
from telegram_tasks.conf import app_settings
from telegram_tasks.links import InvalidTelegramLink, normalize_link
from telegram_tasks.params import declared

# What each default action does, for the action's choices and its help (a project's own actions
# show their name).
ACTION_WORDS = {
    "subscribe": "join a channel or group",
    "unsubscribe": "leave a channel or group",
    "view": "view a post",
    "reaction": "react to a post with an emoji",
    "poll_vote": "vote in a poll",
    "bot_start": "start a bot",
}

HELP = {
    "action": "What one unit is. An account does a view, reaction, poll vote or bot start once "
    "per target; it joins a channel only if it is not in it.",
    "link": "The channel, post or bot: t.me/channel, @channel, t.me/channel/123 (a post), "
    "t.me/+AbC… (a private channel's invite), t.me/name_bot?start=ref (a bot, with its start "
    "parameter). Any form is accepted and stored the same way.",
    "post_id": "The post a view, reaction or poll vote is for; taken from the link when the link "
    "names one.",
    "quantity": "How many in all: subscribers, views, reactions, votes or bot starts.",
    "per_call": "How many one account delivers at a time; 1 unless your provider says otherwise.",
    "interval_seconds": "Drip-feed: at most one account every this many seconds (0: as fast as "
    "the accounts allow).",
    "priority": "When accounts are short, orders with a higher number are served first; orders "
    "of one priority share the accounts evenly.",
    "duration_days": "Subscriptions only: each account leaves the channel this many days after "
    "it joined (empty: it stays).",
    "execution_mode": "How the provider gets the work: pull (it asks for tasks) or push (each "
    "task is sent to it).",
    "next_run_at": "Do not start before this moment (empty: start now). Drip-feed moves it on "
    "as the order runs.",
    "execution_meta": "Your own notes on this order, as JSON; kept with it, never sent to the "
    "provider.",
}


def action_choices() -> list[tuple[str, str]]:
    return [
        (a, f"{a}: {ACTION_WORDS[a]}" if a in ACTION_WORDS else a) for a in app_settings.ACTIONS
    ]


class OrderForm(forms.ModelForm):
    """The order form: the action chosen among the configured ones, every field explained, and
    a field for each parameter an action may take (``params``): only the chosen action's are
    shown and kept; a missing or invalid one is that field's error. A new order that needs more
    distinct accounts than can ever do it (a one-shot action, a subscribe) is refused until
    the operator ticks ``make_anyway``: the form says how many accounts are eligible."""

    action = forms.ChoiceField(choices=(), help_text=HELP["action"])
    reactions = reactions_field()
    option = option_field()
    make_anyway = forms.BooleanField(
        required=False,
        label="Create it anyway",
        help_text="The order needs more accounts than can do it now: it will deliver what they "
        "can and wait for more accounts.",
    )

    class Meta:
        model = Order
        fields = (
            "action", "link", "post_id", "quantity", "per_call", "interval_seconds", "priority",
            "duration_days", "execution_mode", "providers", "next_run_at", "execution_meta",
        )  # fmt: skip
        help_texts = HELP
        widgets = {"providers": forms.CheckboxSelectMultiple}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "action" in self.fields:  # (read-only once the order exists)
            self.fields["action"].choices = action_choices()
            self.fields["action"].widget.attrs["data-action-params"] = action_params_json()
        params = self.instance.params if isinstance(self.instance.params, dict) else {}
        if isinstance(params.get("reactions"), list):
            self.initial.setdefault("reactions", " ".join(map(str, params["reactions"])))
        self.initial.setdefault("option", params.get("option"))

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        takes = declared(data.get("action") or self.instance.action)
        # The fields of the chosen action's parameters replace its stored values; a start
        # parameter comes from the link (Order.clean).
        params = self.instance.params if isinstance(self.instance.params, dict) else {}
        params = {k: v for k, v in params.items() if k not in FORM_PARAMS}
        for name in FORM_PARAMS:
            if name in takes and data.get(name) not in (None, ""):
                params[name] = data[name]
        self.instance.params = params
        if self.instance.pk is None and not self.errors and not data.get("make_anyway"):
            self._warn_if_it_cannot_finish(data)
        return data

    def _warn_if_it_cannot_finish(self, data: dict[str, Any]) -> None:
        action = data.get("action")
        if action not in app_settings.ACTIONS or not data.get("quantity"):
            return
        try:
            target = normalize_link(data.get("link") or "")
        except InvalidTelegramLink:
            return
        post_id = data.get("post_id") or target.post_id
        eligible = selectors.eligible_accounts(
            action=action, link_hash=target.link_hash, post_id=post_id
        )
        per_call = data.get("per_call") or 1
        needed = ceil(data["quantity"] / per_call)
        if eligible is None or needed <= eligible:
            return
        policy = app_settings.policy(action)
        if policy.one_shot:
            why = (
                f"an account can {ACTION_WORDS.get(action, action)} only once",
                ("have not done it on this target yet"),
            )
        elif policy.gate == "subscribe":
            why = "an account joins a channel once", "are not in this channel yet"
        else:
            why = "only an account in the channel can leave it", "are in this channel"
        self.add_error(
            None,
            ValidationError(
                "This order cannot finish: it needs %(needed)s distinct accounts (%(rule)s), and "
                "only %(eligible)s active accounts %(who)s. It would deliver %(most)s and then "
                'wait. Add accounts or lower the quantity, or tick "Create it anyway".',
                code="cannot_finish",
                params={
                    "needed": needed,
                    "rule": why[0],
                    "eligible": max(eligible, 0),
                    "who": why[1],
                    "most": max(eligible, 0) * per_call,
                },
            ),
        )

    def add_error(self, field: str | None, error: Any) -> None:
        """Order.clean says which parameter is at fault (the error's code): its field shows it;
        a start parameter's error shows on the link."""
        errors = getattr(error, "error_dict", None)
        if field is None and errors and "params" in errors and "params" not in self.fields:
            for problem in errors.pop("params"):
                name = {"start_param": "link"}.get(problem.code, problem.code)
                super().add_error(name if name in self.fields else None, problem)
            if not errors:
                return
            error = ValidationError(errors)
        super().add_error(field, error)
