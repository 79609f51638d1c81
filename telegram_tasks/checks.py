"""System checks for misconfiguration that would otherwise surface as silent misbehaviour."""

from __future__ import annotations

from django.apps import apps
from django.core.checks import Error, register

from telegram_tasks.conf import DEFAULTS, GATES, app_settings

_INT_KEYS = [k for k, v in DEFAULTS.items() if isinstance(v, int) and not isinstance(v, bool)]


@register()
def check_settings(app_configs, **kwargs):
    errors = []
    for key in app_settings.user_settings:
        if key not in DEFAULTS:
            errors.append(
                Error(f"TELEGRAM_TASKS has an unknown key {key!r}.", id="telegram_tasks.E001")
            )
    for key in _INT_KEYS:
        value = getattr(app_settings, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            errors.append(
                Error(
                    f"TELEGRAM_TASKS[{key!r}] must be a positive integer, got {value!r}.",
                    id="telegram_tasks.E002",
                )
            )
    try:
        apps.get_model(app_settings.ORDER_MODEL)
    except (LookupError, ValueError):
        errors.append(
            Error(
                f"TELEGRAM_TASKS['ORDER_MODEL'] refers to {app_settings.ORDER_MODEL!r}, "
                "which is not an installed model.",
                id="telegram_tasks.E003",
            )
        )
    errors.extend(check_actions())
    return errors


def check_actions() -> list[Error]:
    errors = []
    actions = app_settings.ACTIONS
    if not isinstance(actions, dict) or not actions:
        return [
            Error("TELEGRAM_TASKS['ACTIONS'] must be a non-empty dict.", id="telegram_tasks.E010")
        ]
    for name, knobs in actions.items():
        unknown = set(knobs) - {"cooldown", "daily_cap", "gate", "one_shot"}
        if unknown:
            errors.append(
                Error(
                    f"Action {name!r} has unknown knobs: {', '.join(sorted(unknown))}.",
                    id="telegram_tasks.E011",
                )
            )
        cooldown = knobs.get("cooldown")
        if not isinstance(cooldown, int) or isinstance(cooldown, bool) or cooldown < 0:
            errors.append(
                Error(
                    f"Action {name!r}: cooldown must be an integer >= 0, got {cooldown!r}.",
                    id="telegram_tasks.E012",
                )
            )
        cap = knobs.get("daily_cap")
        if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 0):
            errors.append(
                Error(
                    f"Action {name!r}: daily_cap must be an integer >= 0 or None, got {cap!r}.",
                    id="telegram_tasks.E013",
                )
            )
        if knobs.get("gate") not in GATES:
            errors.append(
                Error(
                    f"Action {name!r}: gate must be one of {GATES}, got {knobs.get('gate')!r}.",
                    id="telegram_tasks.E014",
                )
            )
        if not isinstance(knobs.get("one_shot"), bool):
            errors.append(
                Error(f"Action {name!r}: one_shot must be True or False.", id="telegram_tasks.E015")
            )
    return errors


@register()
def check_provider_token(app_configs, **kwargs):
    from django.core.checks import Warning

    from telegram_tasks.authentication import configured_tokens

    if not configured_tokens():
        return [
            Warning(
                "PROVIDER_TOKEN is not set: every provider API request will be refused (401).",
                hint="Set PROVIDER_TOKEN to a long random secret shared with the provider.",
                id="telegram_tasks.W001",
            )
        ]
    return []
