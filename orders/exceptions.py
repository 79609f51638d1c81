"""The panel API's errors: each says, in the market's words, what is wrong. Services raise them;
the panel view answers ``{"error": str(exc)}`` (HTTP 200, as the market does)."""

from __future__ import annotations

from orders import money


class PanelError(Exception):
    """An error a panel reads in ``{"error": …}``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidKey(PanelError):
    def __init__(self) -> None:
        super().__init__("Invalid API key")


class CustomerDisabled(PanelError):
    def __init__(self) -> None:
        super().__init__("Your account is disabled")


class IncorrectOrder(PanelError):
    def __init__(self) -> None:
        super().__init__("Incorrect order ID")


class IncorrectService(PanelError):
    def __init__(self) -> None:
        super().__init__("Incorrect service ID")


class IncorrectRefill(PanelError):
    def __init__(self) -> None:
        super().__init__("Refill not found")


class NotEnoughFunds(PanelError):
    def __init__(self) -> None:
        super().__init__("Not enough funds on balance")


class QuantityTooSmall(PanelError):
    def __init__(self, least: int) -> None:
        super().__init__(f"Quantity less than minimal {least}")


class QuantityTooLarge(PanelError):
    def __init__(self, most: int) -> None:
        super().__init__(f"Quantity more than maximal {most}")


class RequestKeyReused(PanelError):
    def __init__(self) -> None:
        super().__init__("This request_id (Idempotency-Key) was used for another order")


class RateLimited(PanelError):
    def __init__(self, retry_after: int) -> None:
        super().__init__("Too many requests: slow down")
        self.retry_after = retry_after


class BalanceTooLarge(ValueError):
    """An adjustment that would take a balance past the largest amount a balance can hold."""

    def __init__(self) -> None:
        most = money.text(money.LIMIT - money.MONEY)
        super().__init__(f"the balance would be more than {most}, the most a balance holds")
