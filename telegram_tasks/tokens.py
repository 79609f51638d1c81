"""How strong a shared secret must be: the provider API token, the push signing secret, the
project's SECRET_KEY. One rule, used where a secret comes in (the settings refuse to start in
production with a weak one) and wherever tokens are made or accepted later. And the tokens the
broker issues to providers: how they are made, found (their prefix) and kept (their digest).

Standard library only: the settings module imports it before Django is set up.
"""

from __future__ import annotations

import hashlib
import secrets

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


# --- the tokens the broker issues: ``<prefix>.<secret>`` ---------------------------------------

PREFIX_LENGTH = 12  # hex characters: 48 random bits, unique per token (the table's index)
SECRET_BYTES = 32  # 256 random bits: the part that is never stored


def token_digest(token: str) -> str:
    """What the table keeps of a token: SHA-256 of the whole of it (a random secret needs no
    slow hash; a fast digest keeps every request cheap)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def token_prefix(token: str) -> str:
    """The public part of a token (before its first dot), as the lookup takes it: PREFIX_LENGTH
    lowercase hex characters, or "" (which no row has) for anything else — whatever a client
    sends, the lookup gets a short, plain value."""
    head, dot, _ = token.partition(".")
    if dot and len(head) == PREFIX_LENGTH and all(c in "0123456789abcdef" for c in head):
        return head
    return ""


def new_token() -> tuple[str, str, str]:
    """A new token: (the token, its prefix, its digest). Shown once; only the prefix and the
    digest are kept."""
    prefix = secrets.token_hex(PREFIX_LENGTH // 2)
    token = f"{prefix}.{secrets.token_urlsafe(SECRET_BYTES)}"
    return token, prefix, token_digest(token)
