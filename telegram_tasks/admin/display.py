"""How the admin renders values: JSON, time left, limits, what generation passes found."""

from __future__ import annotations

import json
from typing import Any

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from telegram_tasks import selectors
from telegram_tasks.models import OrderPassStats


def pretty_json(value: Any) -> str:
    """Read-only JSON, indented, for admin change pages."""
    if value is None:
        return "—"
    text = json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
    return format_html('<pre style="margin:0;white-space:pre-wrap">{}</pre>', text)


def seconds_left(value: float) -> str:
    if value <= 0:
        return "—"
    minutes, seconds = divmod(int(value + 0.999), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {seconds:02d}s"


def of_limit(count: int, limit: int | None) -> str:
    return f"{count} / {limit}" if limit is not None else f"{count} (no cap)"


def limits_table(limits: selectors.AccountLimits) -> SafeString:
    """An account's limits as RESERVE sees them now (one row per action)."""
    head = format_html(
        "<p>tier <b>{}</b> · hold {} · account cooldown {} ({} s) · today {} · channels {}{}</p>",
        limits.tier,
        seconds_left(limits.hold_left),
        seconds_left(limits.account_cooldown_left),
        limits.account_cooldown,
        of_limit(limits.today, limits.account_daily_cap),
        of_limit(limits.channels, limits.max_channels),
        " · CHANNELS_TOO_MUCH" if limits.channels_too_much else "",
    )
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                a.action,
                of_limit(a.today, a.daily_cap),
                f"{seconds_left(a.cooldown_left)} (policy {a.cooldown} s)",
                a.lock_token or "—",
            )
            for a in limits.actions
        ),
    )
    return format_html(
        "{}<table><thead><tr><th>action</th><th>today</th><th>cooldown left</th>"
        "<th>held by task</th></tr></thead><tbody>{}</tbody></table>",
        head,
        rows,
    )


def pass_stats_html(stats: OrderPassStats | None) -> SafeString:
    """What the last generation passes found for an order: why it is slow, if it is."""
    if stats is None:
        return format_html("{}", "no pass has found this order short of accounts")
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                p.get("at", ""),
                p.get("created", 0),
                p.get("starved", 0),
                ", ".join(f"{k} {v}" for k, v in sorted((p.get("refusals") or {}).items())) or "—",
            )
            for p in stats.recent
        ),
    )
    return format_html(
        "<p>{}; {} slot(s) starved in all passes that found it short</p><table><thead><tr>"
        "<th>pass</th><th>made</th><th>starved</th><th>refusals by reason</th></tr></thead>"
        "<tbody>{}</tbody></table>",
        "short of accounts now" if stats.troubled else "fine again since the last pass",
        stats.starved_total,
        rows,
    )


def pass_stats_short(stats: OrderPassStats | None) -> str:
    if stats is None:
        return "—"
    refusals = ", ".join(
        f"{k} {v}" for k, v in sorted(stats.refusals.items(), key=lambda kv: -kv[1])[:3]
    )
    return f"made {stats.created}, starved {stats.starved_slots}" + (
        f" ({refusals})" if refusals else ""
    )
