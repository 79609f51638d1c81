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

from telegram_tasks.tokens import split_tokens

GATES = (None, "subscribe", "unsubscribe")

# ``params``: what the provider needs beyond the link ({name: "required" | "optional"}, see
# telegram_tasks.params); ``target``: what the link must name ("post", "chat" or "bot"; left
# out: a post for a one-shot action, else a chat).
DEFAULT_ACTIONS: dict[str, dict[str, Any]] = {
    "subscribe": {"cooldown": 60, "daily_cap": 20, "gate": "subscribe", "one_shot": False},
    "unsubscribe": {"cooldown": 60, "daily_cap": 20, "gate": "unsubscribe", "one_shot": False},
    "view": {"cooldown": 5, "daily_cap": 500, "gate": None, "one_shot": True},
    "reaction": {
        "cooldown": 10, "daily_cap": 200, "gate": None, "one_shot": True,
        "params": {"reactions": "required"},
    },
    "poll_vote": {
        "cooldown": 10, "daily_cap": 200, "gate": None, "one_shot": True,
        "params": {"option": "required"},
    },
    "bot_start": {
        "cooldown": 30, "daily_cap": 100, "gate": None, "one_shot": True, "target": "bot",
        "params": {"start_param": "optional"},
    },
}  # fmt: skip
# Knobs an action declared in a project's settings gets when it leaves them out.
DEFAULT_POLICY: dict[str, Any] = {
    "cooldown": 0, "daily_cap": None, "gate": None, "one_shot": False, "params": {},
}  # fmt: skip
# Every knob an action may have (the checks refuse others); a tier may override the first four.
POLICY_KNOBS = ("cooldown", "daily_cap", "gate", "one_shot")
ACTION_KNOBS = (*POLICY_KNOBS, "params", "target")

# Account tiers: limits of the account as a whole, and per-action overrides of ACTIONS. A tier
# missing a knob takes the "default" tier's value.
DEFAULT_TIER = "default"
DEFAULT_TIERS: dict[str, dict[str, Any]] = {
    "default": {
        "max_channels": 500,  # Telegram refuses a 501st channel (CHANNELS_TOO_MUCH)
        "account_cooldown": 0,  # seconds between any two successes of one account
        "account_daily_cap": None,  # successes of one account per local day, all actions
        "actions": {},
    },
    "premium": {"max_channels": 1000, "actions": {"subscribe": {"daily_cap": 40}}},
}
TIER_KNOBS = ("max_channels", "account_cooldown", "account_daily_cap", "actions")

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
    "TIERS": DEFAULT_TIERS,
    # Beyond the contract's first list (docs/contract.md):
    "KEY_PREFIX": "tg",  # prefix of every Redis key (tests isolate by it)
    # The claims' Redis: the client of this django-redis cache, unless REDIS_CLUSTER_URL names a
    # Redis Cluster (any node; redis+cluster://host:port or redis://host:port).
    "REDIS_CACHE": "default",
    "REDIS_CLUSTER_URL": "",
    "SYNC_MAX_BATCH": 10_000,  # most accounts in one sync request
    # Largest sync body (other requests: Django's DATA_UPLOAD_MAX_MEMORY_SIZE, 2.5 MB).
    "SYNC_MAX_BODY_BYTES": 32 * 1024 * 1024,
    "REPORT_MAX_BATCH": 1000,  # most reports / leases in one report, extend or release request
    # Group commit: most single reports one web process applies together (those that arrived
    # while the batch before was applied; a lone report waits for nobody). 1: each alone.
    "REPORT_GROUP_MAX": 100,
    # Under load (the batch before had company), how long a batch waits for as many reports
    # as that one had. Never for a lone report. 0: no wait.
    "REPORT_GROUP_WAIT_MS": 2,
    "MAX_LEASE_SECONDS": 3600,  # a hand-out's total lease, heartbeats (extend) included
    "PULL_REPLAY_SECONDS": 300,  # how long a pull's request_id replays the same tasks
    # Long-poll pulls waiting at once in one web process, and of one provider in it;
    # beyond either, a pull that would wait answers 429 at once.
    "MAX_WAITING_PULLS": 500,
    "MAX_WAITING_PULLS_PER_PROVIDER": 100,
    # How long each web process keeps a token lookup: a revoked token is refused, and a new
    # one accepted, everywhere within this many seconds.
    "PROVIDER_AUTH_CACHE_SECONDS": 5,
    "MAX_WAIT_SECONDS": 7 * 86400,  # longest FLOOD_WAIT / SLOWMODE / retry_after waited for
    # Housekeeping re-applies the claim effects of what finished (and the locks of what was
    # written) this far back: longer than Redis can lose on a crash or failover.
    "HEAL_WINDOW_SECONDS": 300,
    "JSON_MAX_DEPTH": 32,  # deepest JSON a request may nest (every JSON field we store)
    "JSON_MAX_BYTES": 65536,  # largest JSON value stored per field (report data, account meta)
    # Finished tasks older than this are deleted (never below the longest claim TTL).
    "TASK_RETENTION_DAYS": 120,
    "RETENTION_PER_PASS": 50_000,  # most tasks one housekeeping pass deletes
    # Push mode (the seed's SendOrderToProvider beside pull):
    "DEFAULT_EXECUTION_MODE": "pull",  # an order's mode when none is given
    # Where the dispatcher POSTs the default provider's push tasks when its row names no URL
    # (other providers: their own push URL); https:// unless…
    "PROVIDER_PUSH_URL": "",
    "PUSH_ALLOW_HTTP": False,  # …this allows http:// (a provider on a private network, tests)
    # A push, from its connect to the last byte of the answer, takes at most this long; a pass
    # stops sending in time for every send to end before its lease does.
    "PUSH_TIMEOUT_SECONDS": 10,
    "PUSH_MAX_ANSWER_BYTES": 1024 * 1024,  # a longer answer is not read (as unreadable)
    "PUSH_CONCURRENCY": 16,  # pushes in flight at once
    "PUSH_BATCH": 500,  # most tasks one dispatch pass leases
    "PUSH_RETRY_SECONDS": 2,  # first backoff after a transport failure; doubles, with jitter
    "PUSH_RETRY_MAX_SECONDS": 300,
    "PUSH_MAX_RETRIES": 20,  # sends that never reached the provider before a task fails
    "PUSH_BREAKER_FAILURES": 5,  # transport failures in a row that open the circuit
    "PUSH_BREAKER_SECONDS": 30,  # how long it stays open before a probe (doubles, at most 16 times)
}


@dataclass(frozen=True, slots=True)
class Policy:
    """What RESERVE and COMMIT enforce for one action (of one tier's accounts)."""

    action: str
    cooldown: int
    daily_cap: int | None
    gate: str | None
    one_shot: bool


@dataclass(frozen=True, slots=True)
class TierPolicy:
    """The limits of an account as a whole, across every action."""

    tier: str
    max_channels: int | None
    account_cooldown: int
    account_daily_cap: int | None


class TelegramTasksSettings:
    def __init__(self) -> None:
        self._cached_attrs: set[str] = set()
        self._policies: dict[tuple[str, str], Policy] = {}
        self._tiers: dict[str, TierPolicy] = {}

    @property
    def user_settings(self) -> dict[str, Any]:
        return getattr(settings, "TELEGRAM_TASKS", None) or {}

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_") or attr not in DEFAULTS:
            raise AttributeError(f"Invalid TELEGRAM_TASKS setting: {attr!r}")
        if attr == "ACTIONS":
            value = self._merged_actions()
        elif attr == "TIERS":
            value = self._merged_tiers()
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

    def _merged_tiers(self) -> dict[str, dict[str, Any]]:
        """Tier by tier and knob by knob over the defaults; a tier's ``actions`` override
        merges action by action and knob by knob; a knob a tier leaves out comes from the
        "default" tier."""
        merged = {name: _copy_tier(knobs) for name, knobs in DEFAULT_TIERS.items()}
        for name, knobs in (self.user_settings.get("TIERS") or {}).items():
            if knobs is None:
                merged.pop(name, None)
                continue
            base = merged.setdefault(name, {"actions": {}})
            for knob, value in knobs.items():
                if knob == "actions":
                    for action, over in (value or {}).items():
                        base["actions"][action] = {**base["actions"].get(action, {}), **over}
                else:
                    base[knob] = value
        fallback = merged.get(DEFAULT_TIER, DEFAULT_TIERS[DEFAULT_TIER])
        for knobs in merged.values():
            for knob in TIER_KNOBS:
                if knob not in knobs:
                    knobs[knob] = _copy_tier(fallback)[knob]
        return merged

    def policy(self, action: str, tier: str = DEFAULT_TIER) -> Policy:
        """The policy of a configured action for accounts of ``tier`` (an unknown tier is the
        default tier); KeyError for an unknown action."""
        policy = self._policies.get((action, tier))
        if policy is None:
            policy = self._policies[(action, tier)] = self._policy(action, tier)
        return policy

    def tier(self, name: str = DEFAULT_TIER) -> TierPolicy:
        """The account-wide limits of a tier (an unknown tier is the default tier)."""
        found = self._tiers.get(name)
        if found is None:
            knobs = self.TIERS.get(name) or self.TIERS.get(DEFAULT_TIER) or {}
            found = self._tiers[name] = TierPolicy(
                tier=name,
                max_channels=_optional_int(knobs.get("max_channels")),
                account_cooldown=int(knobs.get("account_cooldown") or 0),
                account_daily_cap=_optional_int(knobs.get("account_daily_cap")),
            )
        return found

    def _policy(self, action: str, tier: str) -> Policy:
        knobs = self.ACTIONS[action]
        tier_knobs = self.TIERS.get(tier) or self.TIERS.get(DEFAULT_TIER) or {}
        knobs = {**knobs, **(tier_knobs.get("actions") or {}).get(action, {})}
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
        self._tiers.clear()


def _copy_tier(knobs: dict[str, Any]) -> dict[str, Any]:
    copied = dict(knobs)
    copied["actions"] = {a: dict(k) for a, k in (knobs.get("actions") or {}).items()}
    return copied


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


app_settings = TelegramTasksSettings()


def _reload(*, setting: str, **kwargs: Any) -> None:
    if setting == "TELEGRAM_TASKS":
        app_settings.reload()


setting_changed.connect(_reload)


def provider_tokens() -> list[str]:
    """PROVIDER_TOKEN (a Django setting, from the environment): tokens of the default provider
    (other providers' tokens are rows, ``telegram_tasks.providers``). Several comma-separated
    tokens allow a rotation without downtime."""
    return split_tokens(getattr(settings, "PROVIDER_TOKEN", "") or "")


def push_signing_secret() -> str | None:
    """The key that signs the default provider's pushes (X-Provider-Signature), as before
    providers were rows: PUSH_SIGNING_SECRET, else the first PROVIDER_TOKEN; None when there is
    neither (then its oldest live token signs, as any provider's does)."""
    secret = getattr(settings, "PUSH_SIGNING_SECRET", "") or ""
    if secret:
        return secret
    tokens = provider_tokens()
    return tokens[0] if tokens else None


def order_model_label() -> str:
    return app_settings.ORDER_MODEL


def get_order_model() -> type[models.Model]:
    """The order model, reached through ORDER_MODEL the way Django reaches AUTH_USER_MODEL."""
    return apps.get_model(order_model_label(), require_ready=False)
