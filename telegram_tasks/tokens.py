"""How strong a shared secret must be: the provider API token, the push signing secret, the
project's SECRET_KEY. One rule, used where a secret comes in (the settings refuse to start in
production with a weak one) and wherever tokens are made or accepted later.

Standard library only: the settings module imports it before Django is set up.
"""

from __future__ import annotations

# 32 characters of ``secrets.token_urlsafe(24)`` carry 192 bits; ``token_hex(16)``, 128. A
# guess per request at any rate the server can answer never comes near either.
MIN_LENGTH = 32
# A long secret of few distinct characters ("aaaa…", "test-test-…") is not random.
MIN_DISTINCT = 8
# Words that mark a value copied from an example rather than generated.
PLACEHOLDERS = ("changeme", "change-me", "placeholder", "example", "insecure", "not-a-secret")


def secret_problem(value: str, *, name: str) -> str | None:
    """Why ``value`` is too weak to serve as the secret ``name``, or None when it will do."""
    if len(value) < MIN_LENGTH:
        return f"{name} is {len(value)} characters long; use at least {MIN_LENGTH} random ones"
    if len(set(value)) < MIN_DISTINCT:
        return f"{name} repeats too few characters to be random"
    lowered = value.lower()
    for word in PLACEHOLDERS:
        if word in lowered:
            return f"{name} looks like a placeholder (it contains {word!r})"
    return None


def split_tokens(raw: str) -> list[str]:
    """The tokens of a comma-separated setting (several at once allow a rotation)."""
    return [t.strip() for t in (raw or "").split(",") if t.strip()]


def generate_hint() -> str:
    """The command that makes a good secret (for error messages and docs)."""
    return 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
