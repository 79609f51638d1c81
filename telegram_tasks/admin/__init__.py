"""The admin of telegram_tasks: providers, accounts, tasks and memberships (the orders app
registers its own model and uses the rendering helpers of ``display``)."""

from telegram_tasks.admin import accounts, memberships, providers, tasks  # noqa: F401  (registers)
from telegram_tasks.admin.display import (
    limits_table,
    pass_stats_html,
    pass_stats_short,
    pretty_json,
)

__all__ = ["limits_table", "pass_stats_html", "pass_stats_short", "pretty_json"]
