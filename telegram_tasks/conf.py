"""Settings of the telegram_tasks app, read the way DRF reads REST_FRAMEWORK.

A project sets ``TELEGRAM_TASKS = {...}`` with only the keys it changes; everything else comes
from ``DEFAULTS``. ``ACTIONS`` merges action by action and knob by knob, so
``{"ACTIONS": {"view": {"cooldown": 2}}}`` changes one knob of one action and keeps the rest.
The object reloads when the setting changes (pytest's ``settings`` fixture, ``override_settings``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.signals import setting_changed
from django.db import models

GATES = (None, "subscribe", "unsubscribe")

DEFAULT_ACTIONS: dict[str, dict[str, Any]] = {
    "subscribe": {"cooldown": 60, "daily_cap": 20, "gate": "subscribe", "one_shot": False},
    "unsubscribe": {"cooldown": 60, "daily_cap": 20, "gate": "unsubscribe", "one_shot": False},
    "view": {"cooldown": 5, "daily_cap": 500, "gate": None, "one_shot": True},
    "reaction": {"cooldown": 10, "daily_cap": 200, "gate": None, "one_shot": True},
}
# Knobs an action declared in a project's settings gets when it leaves them out.
DEFAULT_POLICY: dict[str, Any] = {"cooldown": 0, "daily_cap": None, "gate": None, "one_shot": False}

DEFAULTS: dict[str, Any] = {
    "ORDER_MODEL": "orders.Order",
    "LEASE_SECONDS": 60,
    "RESERVE_LOCK_SECONDS": 120,
    "STATE_TTL_SECONDS": 90 * 86400,
    "DEDUPE_TTL_SECONDS": 90 * 86400,
    "PULL_MAX_LIMIT": 1000,
    "MAX_ATTEMPTS": 5,
    "PENDING_TTL_SECONDS": 3600,
    "GENERATION_TICK_SECONDS": 60,
    "MAX_TASKS_PER_ORDER_PER_PASS": 50,
    "ACCOUNT_SCAN_BUDGET": 500,
    "ACTIONS": DEFAULT_ACTIONS,
    # Beyond SPEC's list:
    "KEY_PREFIX": "tg",  # prefix of every Redis key (tests isolate by it)
    "SYNC_MAX_BATCH": 10_000,  # most accounts in one sync request
    "REPORT_MAX_BATCH": 1000,  # most reports / leases in one report, extend or release request
    "MAX_LEASE_SECONDS": 3600,  # a hand-out's total lease, heartbeats (extend) included
    "PULL_REPLAY_SECONDS": 300,  # how long a pull's request_id replays the same tasks
    "MAX_WAIT_SECONDS": 7 * 86400,  # longest FLOOD_WAIT / SLOWMODE / retry_after waited for
    # Housekeeping re-applies the claim effects of what finished (and the locks of what was
    # written) this far back: longer than Redis can lose on a crash or failover.
    "HEAL_WINDOW_SECONDS": 300,
    "JSON_MAX_DEPTH": 32,  # deepest JSON a request may nest (every JSON field we store)
    "JSON_MAX_BYTES": 65536,  # largest JSON value stored per field (report data, account meta)
}


@dataclass(frozen=True, slots=True)
class Policy:
    """What RESERVE and COMMIT enforce for one action."""

    action: str
    cooldown: int
    daily_cap: int | None
    gate: str | None
    one_shot: bool


class TelegramTasksSettings:
    def __init__(self) -> None:
        self._cached_attrs: set[str] = set()
        self._policies: dict[str, Policy] = {}

    @property
    def user_settings(self) -> dict[str, Any]:
        return getattr(settings, "TELEGRAM_TASKS", None) or {}

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_") or attr not in DEFAULTS:
            raise AttributeError(f"Invalid TELEGRAM_TASKS setting: {attr!r}")
        if attr == "ACTIONS":
            value = self._merged_actions()
        else:
            value = self.user_settings.get(attr, DEFAULTS[attr])
        # Cached as a plain attribute (as DRF does): hot paths read settings per task.
        self._cached_attrs.add(attr)
        setattr(self, attr, value)
        return value

    def _merged_actions(self) -> dict[str, dict[str, Any]]:
        merged = {name: dict(knobs) for name, knobs in DEFAULT_ACTIONS.items()}
        for name, knobs in (self.user_settings.get("ACTIONS") or {}).items():
            if knobs is None:  # an override may remove a default action
                merged.pop(name, None)
                continue
            base = merged.get(name, dict(DEFAULT_POLICY))
            merged[name] = {**base, **knobs}
        return merged

    def policy(self, action: str) -> Policy:
        """The policy of a configured action; KeyError for an unknown one."""
        policy = self._policies.get(action)
        if policy is None:
            policy = self._policies[action] = self._policy(action)
        return policy

    def _policy(self, action: str) -> Policy:
        knobs = self.ACTIONS[action]
        return Policy(
            action=action,
            cooldown=int(knobs.get("cooldown") or 0),
            daily_cap=None if knobs.get("daily_cap") is None else int(knobs["daily_cap"]),
            gate=knobs.get("gate"),
            one_shot=bool(knobs.get("one_shot")),
        )

    def reload(self) -> None:
        for attr in self._cached_attrs:
            delattr(self, attr)
        self._cached_attrs.clear()
        self._policies.clear()


app_settings = TelegramTasksSettings()


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "TELEGRAM_TASKS":
        app_settings.reload()


setting_changed.connect(_reload)


def order_model_label() -> str:
    return app_settings.ORDER_MODEL


def get_order_model() -> type[models.Model]:
    """The order model, reached through ORDER_MODEL the way Django reaches AUTH_USER_MODEL."""
    return apps.get_model(order_model_label(), require_ready=False)
