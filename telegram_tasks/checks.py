"""System checks for misconfiguration that would otherwise surface as silent misbehaviour."""

from __future__ import annotations

from django.apps import apps
from django.core.checks import Error, register

from telegram_tasks.conf import (
    ACTION_KNOBS,
    DEFAULT_TIER,
    DEFAULTS,
    GATES,
    POLICY_KNOBS,
    TIER_KNOBS,
    app_settings,
    provider_tokens,
)
from telegram_tasks.params import NEEDS, PARAM_NAMES, TARGETS

# Seconds that may be fractional; integers that may be 0; every other number is a positive
# integer.
_FLOAT_KEYS = {"PUSH_TIMEOUT_SECONDS"}
_ZERO_OK = {"REPORT_GROUP_WAIT_MS"}
_INT_KEYS = [
    k
    for k, v in DEFAULTS.items()
    if isinstance(v, int) and not isinstance(v, bool) and k not in _FLOAT_KEYS
]


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
        least = 0 if key in _ZERO_OK else 1
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            what = "a non-negative" if least == 0 else "a positive"
            errors.append(
                Error(
                    f"TELEGRAM_TASKS[{key!r}] must be {what} integer, got {value!r}.",
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
                hint="Set it to your order model, 'app_label.ModelName' (docs/reuse.md).",
                id="telegram_tasks.E003",
            )
        )
    for key in _FLOAT_KEYS:
        value = getattr(app_settings, key)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            errors.append(
                Error(
                    f"TELEGRAM_TASKS[{key!r}] must be a positive number, got {value!r}.",
                    id="telegram_tasks.E002",
                )
            )
    errors.extend(check_actions())
    errors.extend(check_tiers())
    errors.extend(check_push())
    errors.extend(check_retention())
    return errors


def check_retention() -> list[Error]:
    """The contract: the retention is never below the longest claim TTL. (A rebuild would not
    need it — the facts that outlive tasks are in compact tables — but a task's history stays
    for as long as any claim it made can still be in force.)"""
    longest = max(app_settings.STATE_TTL_SECONDS, app_settings.DEDUPE_TTL_SECONDS)
    try:
        cooldowns = [
            app_settings.policy(action, tier).cooldown
            for action in app_settings.ACTIONS
            for tier in app_settings.TIERS
        ]
        cooldowns += [t.get("account_cooldown") or 0 for t in app_settings.TIERS.values()]
        cooldowns = [c for c in cooldowns if isinstance(c, int | float) and not isinstance(c, bool)]
    except (AttributeError, KeyError, TypeError, ValueError):
        cooldowns = []  # malformed actions or tiers: their own checks say what is wrong
    longest = max([longest, 2 * 86400, *cooldowns])
    if longest > app_settings.TASK_RETENTION_DAYS * 86400:
        days = -(-longest // 86400)
        return [
            Error(
                f"TELEGRAM_TASKS['TASK_RETENTION_DAYS'] is {app_settings.TASK_RETENTION_DAYS}: "
                f"below the longest claim TTL ({days} days); keep at least that many.",
                id="telegram_tasks.E040",
            )
        ]
    return []


def check_push() -> list[Error]:
    errors = []
    if app_settings.DEFAULT_EXECUTION_MODE not in ("pull", "push"):
        errors.append(
            Error(
                "TELEGRAM_TASKS['DEFAULT_EXECUTION_MODE'] must be 'pull' or 'push', "
                f"got {app_settings.DEFAULT_EXECUTION_MODE!r}.",
                id="telegram_tasks.E031",
            )
        )
    url = app_settings.PROVIDER_PUSH_URL
    if url:
        from telegram_tasks.api.push_transport import check_push_url

        problem = check_push_url(url)
        if problem:
            errors.append(Error(problem, id="telegram_tasks.E030"))
    return errors


def check_actions() -> list[Error]:
    actions = app_settings.ACTIONS
    if not isinstance(actions, dict) or not actions:
        return [
            Error("TELEGRAM_TASKS['ACTIONS'] must be a non-empty dict.", id="telegram_tasks.E010")
        ]
    return _check_policies(actions, where="") + _check_params(actions)


def _check_params(actions: dict) -> list[Error]:
    """The ``params`` knob: {name: "required" | "optional"} over the known parameters; the
    ``target`` knob: one of TARGETS."""
    errors = []
    for name, knobs in actions.items():
        params = knobs.get("params")
        if params is None:
            continue
        if not isinstance(params, dict) or any(
            p not in PARAM_NAMES or need not in NEEDS for p, need in params.items()
        ):
            errors.append(
                Error(
                    f"Action {name!r}: params must map parameters ({', '.join(PARAM_NAMES)}) "
                    f"to 'required' or 'optional', got {params!r}.",
                    id="telegram_tasks.E016",
                )
            )
        target = knobs.get("target")
        if target is not None and target not in TARGETS:
            errors.append(
                Error(
                    f"Action {name!r}: target must be one of {', '.join(TARGETS)}, got {target!r}.",
                    id="telegram_tasks.E017",
                )
            )
    return errors


def _is_int(value: object, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def check_tiers() -> list[Error]:
    """TIERS: a dict of tiers with a "default" one; each knob of the right kind; per-action
    overrides only of configured actions, and valid once merged with ACTIONS."""
    tiers = app_settings.TIERS
    if not isinstance(tiers, dict) or DEFAULT_TIER not in tiers:
        return [
            Error(
                "TELEGRAM_TASKS['TIERS'] must be a dict holding a 'default' tier.",
                id="telegram_tasks.E020",
            )
        ]
    errors = []
    for name, knobs in tiers.items():
        unknown = set(knobs) - set(TIER_KNOBS)
        if unknown:
            errors.append(
                Error(
                    f"Tier {name!r} has unknown knobs: {', '.join(sorted(unknown))}.",
                    id="telegram_tasks.E021",
                )
            )
        for knob, least, id_ in (
            ("max_channels", 1, "E022"),
            ("account_daily_cap", 0, "E023"),
        ):
            value = knobs.get(knob)
            if value is not None and not _is_int(value, least):
                errors.append(
                    Error(
                        f"Tier {name!r}: {knob} must be an integer >= {least} or None, "
                        f"got {value!r}.",
                        id=f"telegram_tasks.{id_}",
                    )
                )
        if not _is_int(knobs.get("account_cooldown"), 0):
            errors.append(
                Error(
                    f"Tier {name!r}: account_cooldown must be an integer >= 0, "
                    f"got {knobs.get('account_cooldown')!r}.",
                    id="telegram_tasks.E024",
                )
            )
        overrides = knobs.get("actions") or {}
        strangers = set(overrides) - set(app_settings.ACTIONS)
        per_action = set(ACTION_KNOBS) - set(POLICY_KNOBS)
        fixed = {a for a, over in overrides.items() if set(over) & per_action}
        if fixed:
            errors.append(
                Error(
                    f"Tier {name!r} overrides more than {', '.join(POLICY_KNOBS)} of "
                    f"{', '.join(sorted(fixed))}: an action's params and target are the same "
                    "for every tier.",
                    id="telegram_tasks.E026",
                )
            )
        if strangers:
            errors.append(
                Error(
                    f"Tier {name!r} overrides actions that are not configured: "
                    f"{', '.join(sorted(strangers))}.",
                    id="telegram_tasks.E025",
                )
            )
        merged = {
            a: {**app_settings.ACTIONS[a], **over}
            for a, over in overrides.items()
            if a in app_settings.ACTIONS
        }
        errors.extend(_check_policies(merged, where=f"Tier {name!r}: "))
    return errors


def _check_policies(actions: dict, *, where: str) -> list[Error]:
    errors = []
    for name, knobs in actions.items():
        unknown = set(knobs) - set(ACTION_KNOBS)
        if unknown:
            errors.append(
                Error(
                    f"{where}Action {name!r} has unknown knobs: {', '.join(sorted(unknown))}.",
                    id="telegram_tasks.E011",
                )
            )
        cooldown = knobs.get("cooldown")
        if not isinstance(cooldown, int) or isinstance(cooldown, bool) or cooldown < 0:
            errors.append(
                Error(
                    f"{where}Action {name!r}: cooldown must be an integer >= 0, got {cooldown!r}.",
                    id="telegram_tasks.E012",
                )
            )
        cap = knobs.get("daily_cap")
        if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 0):
            errors.append(
                Error(
                    f"{where}Action {name!r}: daily_cap must be an integer >= 0 or None, "
                    f"got {cap!r}.",
                    id="telegram_tasks.E013",
                )
            )
        if knobs.get("gate") not in GATES:
            errors.append(
                Error(
                    f"{where}Action {name!r}: gate must be one of {GATES}, "
                    f"got {knobs.get('gate')!r}.",
                    id="telegram_tasks.E014",
                )
            )
        if not isinstance(knobs.get("one_shot"), bool):
            errors.append(
                Error(
                    f"{where}Action {name!r}: one_shot must be True or False.",
                    id="telegram_tasks.E015",
                )
            )
    return errors


@register()
def check_provider_token(app_configs, **kwargs):
    from django.core.checks import Warning

    if not provider_tokens():
        return [
            Warning(
                "PROVIDER_TOKEN is not set: only the tokens made with create_provider and "
                "provider_token --add authenticate providers (none: every provider API request "
                "is refused, 401).",
                hint="Make a provider and its token (manage.py create_provider NAME), or set "
                "PROVIDER_TOKEN (the default provider's) to a long random secret; silence this "
                "warning once providers have tokens of their own.",
                id="telegram_tasks.W001",
            )
        ]
    return []


@register()
def check_auto_unsubscribe(app_configs, **kwargs):
    from django.core.checks import Warning

    if not any(app_settings.policy(a).gate == "unsubscribe" for a in app_settings.ACTIONS):
        return [
            Warning(
                "No action is gated 'unsubscribe': memberships of orders with duration_days "
                "can never end.",
                hint="Keep the default 'unsubscribe' action, or configure one with "
                "gate='unsubscribe'.",
                id="telegram_tasks.W002",
            )
        ]
    return []
