"""Bearer-token authentication for the policy server.

The token comes from the environment variable ``BANDIT_API_TOKEN`` or from a token file. It is held in
a :class:`Secret` whose ``repr`` and ``str`` never show it, compared in constant time
(:func:`hmac.compare_digest`), and never echoed in responses or logs.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from ..errors import ConfigError

__all__ = ["MIN_TOKEN_LENGTH", "Secret", "bearer_ok", "generate_token_file", "load_api_token"]

MIN_TOKEN_LENGTH = 16


class Secret:
    """A secret byte string that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = bytes(value)

    def reveal(self) -> bytes:
        """The secret itself (only for comparing or handing to a client the operator chose)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(Secret)

    def __reduce__(self) -> tuple[object, ...]:  # never pickle a secret by accident
        raise TypeError("a Secret cannot be pickled")


def load_api_token(
    env: str = "BANDIT_API_TOKEN", file: str | os.PathLike[str] | None = None
) -> Secret:
    """The API token from ``file`` (whitespace stripped) or else the environment variable ``env``.

    Raises :class:`~bandit_engine.errors.ConfigError` with a hint when none is configured or when it
    is shorter than 16 characters (the message gives the length, never the token).
    """
    if file is not None:
        p = Path(file)
        if not p.is_file():
            raise ConfigError.for_field("token_file", str(p), "must be an existing file")
        value = p.read_bytes().strip()
        source = "token_file"
    else:
        text = os.environ.get(env, "").strip()
        if not text:
            raise ConfigError(
                f"no API token: set the environment variable {env} (for example "
                f"`export {env}=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')`), "
                "pass --token-file, or use --dev for a throw-away token",
                field=env,
            )
        value = text.encode("utf-8")
        source = env
    if len(value) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"{source} must hold at least {MIN_TOKEN_LENGTH} characters, got {len(value)}",
            field=source,
        )
    return Secret(value)


def generate_token_file(path: str | os.PathLike[str]) -> Secret:
    """Write a fresh random token to ``path`` (mode 0600) and return it (``--dev`` mode).

    The token goes to a file, not to the terminal, so it never lands in a log.
    """
    value = secrets.token_urlsafe(32).encode("ascii")
    p = Path(path)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(value + b"\n")
    return Secret(value)


def bearer_ok(header: bytes | None, token: Secret) -> bool:
    """Whether an ``Authorization`` header value carries ``Bearer <token>`` (constant-time compare)."""
    if header is None:
        return False
    scheme, _, given = header.partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    return hmac.compare_digest(given.strip(), token.reveal())
