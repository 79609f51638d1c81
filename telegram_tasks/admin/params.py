"""The order form's parameter fields (telegram_tasks.params): an emoji picker for reactions and
a short summary of an order's params for lists. The order model is the project's: its admin
composes these (orders.admin)."""

from __future__ import annotations

import json
from typing import Any

from django import forms

from telegram_tasks.conf import app_settings
from telegram_tasks.params import STANDARD_REACTIONS, declared

# The parameters the order form edits, each in a field of its own name.
FORM_PARAMS = ("reactions", "option")


class ReactionPicker(forms.TextInput):
    """A text input of emoji with Telegram's standard reactions beneath: a click adds the emoji
    to the input, or takes it out. Any emoji may be typed."""

    template_name = "telegram_tasks/widgets/reaction_picker.html"

    class Media:
        js = ["telegram_tasks/params.js"]

    def get_context(self, name: str, value: Any, attrs: dict[str, Any] | None) -> dict[str, Any]:
        context = super().get_context(name, value, attrs)
        context["widget"]["reactions"] = STANDARD_REACTIONS
        return context


def reactions_field() -> forms.CharField:
    return forms.CharField(
        required=False,
        widget=ReactionPicker(attrs={"size": 40}),
        help_text="Reaction orders: the emoji, one or a mix (pick below or type them, separated "
        "by spaces). The order's tasks take them in turn.",
    )


def option_field() -> forms.IntegerField:
    return forms.IntegerField(
        required=False,
        min_value=1,
        help_text="Poll votes: the poll's answer to vote for, 1 for the first.",
    )


def action_params_json() -> str:
    """{action: [the form's parameters it takes]}: the form shows only those (params.js)."""
    takes = {a: [p for p in declared(a) if p in FORM_PARAMS] for a in app_settings.ACTIONS}
    return json.dumps(takes)


def params_summary(params: Any) -> str:
    """An order's params in a few characters: "👍 🔥", "option 2", "start ref123"."""
    if not isinstance(params, dict) or not params:
        return ""
    parts = []
    if isinstance(params.get("reactions"), list):
        parts.append(" ".join(str(e) for e in params["reactions"]))
    if "option" in params:
        parts.append(f"option {params['option']}")
    if "start_param" in params:
        parts.append(f"start {params['start_param']}")
    return " · ".join(parts)
