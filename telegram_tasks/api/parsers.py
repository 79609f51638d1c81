"""JSON request parsing that refuses what we would not store: NUL characters and lone
surrogates (PostgreSQL's text and jsonb reject both), NaN, and JSON nested deeper than
``JSON_MAX_DEPTH`` — refused here, at parse time, with a 400, so nothing deeper in the stack
ever meets a document it cannot encode, store or render."""

from __future__ import annotations

import json
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from telegram_tasks.conf import app_settings


class StrictJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError("JSON is nested too deeply") from exc
        check_json(data)
        return data


def check_json(data: Any) -> None:
    """Raise ParseError for JSON we refuse to store (see the module's doc); iterative, so a
    deep document costs no recursion."""
    limit = app_settings.JSON_MAX_DEPTH
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise ParseError("JSON holds a NUL character (\\u0000), which cannot be stored")
            continue
        if isinstance(item, dict | list):
            if depth >= limit:
                raise ParseError(f"JSON is nested deeper than {limit} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    try:
        json.dumps(data, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ParseError("JSON holds a lone surrogate (invalid Unicode)") from exc
    except ValueError as exc:
        raise ParseError("JSON holds NaN or Infinity, which are not JSON numbers") from exc


def stored_json_size(value: Any) -> int:
    """Bytes a JSON value takes once stored (compact UTF-8)."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
