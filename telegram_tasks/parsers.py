"""JSON request parsing that refuses what PostgreSQL cannot store."""

from __future__ import annotations

import json
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class StrictJSONParser(JSONParser):
    """JSON with no NUL characters and no lone surrogates anywhere: text columns and jsonb
    reject both, so they are refused here (400) instead of failing deep in a write."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise ParseError("JSON is nested too deeply") from exc
        try:
            json.dumps(data, ensure_ascii=False, allow_nan=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ParseError("JSON holds a lone surrogate (invalid Unicode)") from exc
        except ValueError as exc:
            raise ParseError("JSON holds NaN or Infinity, which are not JSON numbers") from exc
        if _has_nul(data):
            raise ParseError("JSON holds a NUL character (\\u0000), which cannot be stored")
        return data


def _has_nul(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
