"""Structured log lines: the fields a pass or a failed report carries beside its message.

With ``LOG_FORMAT=json`` every record is one JSON object (python-json-logger) and these fields
are its keys, so a log pipeline filters on ``event``, ``action`` or ``reason`` without parsing
the human-readable message, which stays the same in both formats.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

# Attributes every LogRecord has: an ``extra`` key among them raises, so such a field is renamed.
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_RENAMED = {"created": "tasks_created"}


def log_fields(event: str, summary: Any) -> dict[str, Any]:
    """``extra`` for ``logger.info``: ``event`` and the summary dataclass's fields (counters
    as plain dicts, seconds rounded to the millisecond)."""
    fields: dict[str, Any] = {"event": event}
    for item in dataclasses.fields(summary):
        value = getattr(summary, item.name)
        if isinstance(value, dict):
            value = dict(value)
        elif isinstance(value, float):
            value = round(value, 3)
        name = _RENAMED.get(item.name, item.name)
        fields[name if name not in _RESERVED else f"{event}_{name}"] = value
    return fields
