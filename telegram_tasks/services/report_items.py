"""What a report says and what it gets back: the values ``report`` and ``outcomes`` share (kept
apart from both, so neither imports the other's module for its types)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from telegram_tasks.exceptions import DomainError


class ReportState(enum.StrEnum):
    """What a provider says of a task it was handed."""

    DONE = "done"
    FAILED = "failed"
    PENDING = "pending"


@dataclass(frozen=True)
class ReportIn:
    task_id: str
    state: str  # a ReportState
    error_code: str | None = None
    error_message: str | None = None
    retry_after: int | None = None
    provider_task_id: str | None = None
    data: Any = None
    lease_id: str | None = None


@dataclass
class ReportOut:
    """One report's outcome: the task's status after it, or the domain error refusing it."""

    task_id: str
    duplicate: bool = False
    status: str | None = None
    error: DomainError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None
