"""ULIDs: the tasks' ids, sortable by creation (a range of ids is a range of times)."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Two Crockford characters per 10 bits: a ULID in 13 steps, not 26.
_PAIRS = [a + b for a in CROCKFORD for b in CROCKFORD]


_last_ulid = [0]
_ulid_lock = threading.Lock()


def new_ulid() -> str:
    """A new ULID (48 bits of milliseconds, 80 random bits), as 26 Crockford characters, each
    greater than the last this process made (within one millisecond the random part counts
    up), so ids sort by creation. Written out here rather than through python-ulid's object:
    generation makes one per task, and this is several times cheaper."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    with _ulid_lock:
        if value <= _last_ulid[0]:
            value = _last_ulid[0] + 1
        _last_ulid[0] = value
    # 130 bits as 13 pairs: the leading two bits are always zero.
    return "".join([_PAIRS[(value >> shift) & 0x3FF] for shift in range(120, -10, -10)])


def ulid_floor(moment: datetime) -> str:
    """The smallest ULID of that millisecond: task ids made from then on are >= it (ids are
    ULIDs, so a range of ids is a range of creation times)."""
    value = int(moment.timestamp() * 1000)
    chars = []
    for _ in range(10):
        chars.append(CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars)) + "0" * 16


def ulid_time(ulid: str) -> datetime:
    value = 0
    for char in ulid[:10]:
        value = value * 32 + CROCKFORD.index(char)
    return datetime.fromtimestamp(value / 1000, tz=UTC)
