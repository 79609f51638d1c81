"""Settings of the end-to-end simulation: the project's, with timings short enough to exercise
leases, cooldowns, caps and pending timeouts within a minute."""

import os

from config.settings import *  # noqa: F403

TELEGRAM_TASKS = {
    "ORDER_MODEL": "orders.Order",
    # The Redis Cluster, when REDIS_URL names one (--redis cluster).
    "REDIS_CLUSTER_URL": TELEGRAM_TASKS.get("REDIS_CLUSTER_URL", ""),  # noqa: F405
    "KEY_PREFIX": "sim",
    "LEASE_SECONDS": 3,
    "RESERVE_LOCK_SECONDS": 8,
    "PENDING_TTL_SECONDS": 6,
    "GENERATION_TICK_SECONDS": 2,
    "MAX_TASKS_PER_ORDER_PER_PASS": 5,
    "MAX_ATTEMPTS": 5,
    "MAX_LEASE_SECONDS": 10,
    "ACTIONS": {
        "subscribe": {"cooldown": 2, "daily_cap": 6},
        "unsubscribe": {"cooldown": 2, "daily_cap": 6},
        "view": {"cooldown": 1, "daily_cap": 12},
        "reaction": {"cooldown": 1, "daily_cap": 8},
        "poll_vote": {"cooldown": 1, "daily_cap": 8},
        "bot_start": {"cooldown": 1, "daily_cap": 8},
    },
    # Few channels per account, so the channel limit is reached; premium accounts work one task
    # at a time with an account-wide cooldown and cap.
    # A push provider answers beside the pulling ones (sim/run.py starts it on loopback).
    "PROVIDER_PUSH_URL": os.environ.get("SIM_PUSH_URL", ""),
    "PUSH_ALLOW_HTTP": True,
    "PUSH_TIMEOUT_SECONDS": 2,
    "PUSH_RETRY_SECONDS": 1,
    "PUSH_BREAKER_SECONDS": 2,
    "TIERS": {
        "default": {"max_channels": 3},
        "premium": {
            "max_channels": 4,
            "account_cooldown": 1,
            "account_daily_cap": 14,
            "actions": {"subscribe": {"daily_cap": 8}},
        },
    },
}
LOGGING = {**LOGGING, "root": {"handlers": ["console"], "level": "WARNING"}}  # noqa: F405
