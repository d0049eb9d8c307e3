"""Bearer-token authentication for the policy server, with one token per role.

Roles (:data:`ROLES`): ``decide`` (``POST /v1/decisions``, ``POST /v1/events``: what a product
calls on every page), ``read`` (``GET /v1/decisions/{id}``, ``/metrics``, the OpenAPI pages) and
``admin`` (catalog changes, profiles, forgetting users). Each role's token comes from its own
environment variable (``BANDIT_DECIDE_TOKEN``, ``BANDIT_READ_TOKEN``, ``BANDIT_ADMIN_TOKEN``);
``BANDIT_API_TOKEN`` (or a token file) stands in for any role whose variable is unset, so one token
still works for everything, at the price of every caller holding the admin role.

A token is held in a :class:`Secret` whose ``repr`` and ``str`` never show it, compared in constant
time (:func:`hmac.compare_digest`), and never echoed in responses or logs. Weak secrets are refused
at start (:func:`check_strength`): at least 16 characters and at least 40 bits by the empirical
entropy of their characters, which stops ``aaaaaaaaaaaaaaaa`` or ``1212121212121212`` but cannot
tell a random string from a cleverly chosen password: generate tokens with ``secrets``.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path
from typing import Literal

from ..errors import ConfigError
from ..store.keys import MIN_SECRET_BITS, MIN_TOKEN_LENGTH
from ..store.keys import check_secret_strength as check_strength

__all__ = [
    "MIN_SECRET_BITS",
    "MIN_TOKEN_LENGTH",
    "ROLES",
    "ROLE_ENV",
    "Role",
    "Secret",
    "bearer_ok",
    "check_strength",
    "generate_token_file",
    "load_api_token",
    "load_role_tokens",
    "roles_of",
]

Role = Literal["decide", "read", "admin"]
ROLES: tuple[Role, ...] = ("decide", "read", "admin")
ROLE_ENV: dict[Role, str] = {
    "decide": "BANDIT_DECIDE_TOKEN",
    "read": "BANDIT_READ_TOKEN",
    "admin": "BANDIT_ADMIN_TOKEN",
}


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
    check_strength(source, value)
    return Secret(value)


def load_role_tokens(fallback: Secret | None = None) -> dict[Role, Secret]:
    """Each role's token from its environment variable (:data:`ROLE_ENV`), ``fallback`` (the
    ``BANDIT_API_TOKEN``) for the roles whose variable is unset. Raises
    :class:`~bandit_engine.errors.ConfigError` naming the variable of a role left without one."""
    out: dict[Role, Secret] = {}
    for role in ROLES:
        env = ROLE_ENV[role]
        text = os.environ.get(env, "").strip()
        if text:
            value = text.encode("utf-8")
            check_strength(env, value)
            out[role] = Secret(value)
        elif fallback is not None:
            out[role] = fallback
        else:
            raise ConfigError(
                f"no token for the {role} role: set {env} or BANDIT_API_TOKEN", field=env
            )
    return out


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
    given = _bearer(header)
    return given is not None and hmac.compare_digest(given, token.reveal())


def _bearer(header: bytes | None) -> bytes | None:
    if header is None:
        return None
    scheme, _, given = header.partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    return given.strip()


def roles_of(header: bytes | None, tokens: dict[Role, Secret]) -> frozenset[Role]:
    """The roles whose token the header carries (every token compared, in constant time)."""
    given = _bearer(header)
    if given is None:
        return frozenset()
    return frozenset(r for r, t in tokens.items() if hmac.compare_digest(given, t.reveal()))
