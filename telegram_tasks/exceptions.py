"""Domain errors: what services raise (or put on a per-item result) for the caller to see. Each
has a stable ``code`` and a human ``message``; the HTTP status an interface answers with is the
interface's business (``exception_handlers``)."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "bad_request"

    def __init__(
        self, message: str, details: dict[str, Any] | None = None, *, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if code is not None:
            self.code = code

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class TaskNotFound(DomainError):
    code = "task_not_found"


class TaskConflict(DomainError):
    """The request contradicts the task's state (never handed out, stale lease, a pull with
    that request_id still running)."""

    code = "conflict"


class BatchTooLarge(DomainError):
    code = "batch_too_large"


class TooManyWaiting(DomainError):
    """A pull asked to wait while as many pulls as allowed already wait (in this process, or
    of this provider): answered at once, nothing leased; the client pulls again later."""

    code = "too_many_waiting_pulls"
    retry_after = 5
