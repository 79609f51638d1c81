"""A panel script's view of the API: form-POST ``key`` and ``action`` (and the action's
fields), read the JSON answer. The standard library only, no project import: the tests drive
/api/v2 the way panel software does."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any


class Panel:
    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.key = key

    def call(self, action: str, headers: dict[str, str] | None = None, **fields: Any) -> Any:
        return self.raw(action, headers=headers, **fields)[1]

    def raw(
        self, action: str, headers: dict[str, str] | None = None, **fields: Any
    ) -> tuple[int, Any, dict[str, str]]:
        """(HTTP status, decoded JSON body, headers)."""
        body = urllib.parse.urlencode({"key": self.key, "action": action, **fields}).encode()
        request = urllib.request.Request(  # noqa: S310
            self.url,
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return response.status, json.loads(response.read()), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read()), dict(error.headers)
