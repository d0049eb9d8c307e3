"""Keys: the secret that pseudonymizes user ids, and the pseudonyms themselves.

Raw user ids never reach disk: every user id is replaced by ``HMAC-SHA256(key, user_id)`` (hex)
before it is written. The key comes from the environment variable ``BANDIT_HMAC_KEY`` or from a key
file (:func:`load_hmac_key`), never from the database, which keeps only a short one-way *check value*
of the key (:func:`key_check`) so that opening a log with the wrong key fails loudly.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import secrets
import warnings
from collections import Counter
from pathlib import Path

from ..errors import ConfigError

__all__ = [
    "MIN_KEY_BYTES",
    "MIN_SECRET_BITS",
    "MIN_TOKEN_LENGTH",
    "check_secret_strength",
    "key_check",
    "load_hmac_key",
    "pseudonymize",
]

_KEY_CHECK_LABEL = b"bandit-engine event log key check v1"
MIN_KEY_BYTES = 16
MIN_TOKEN_LENGTH = 16
MIN_SECRET_BITS = 40.0
_KEY_HINT = (
    "set the environment variable {env} to a random secret of at least 16 characters, for example "
    "`export {env}=$(python -c 'import secrets; print(secrets.token_hex(32))')`, "
    "or pass a key file; "
    "keep it: the same key is needed to find a user's rows again"
)


def load_hmac_key(
    env: str = "BANDIT_HMAC_KEY",
    file: str | os.PathLike[str] | None = None,
    *,
    ephemeral: bool = False,
) -> bytes:
    """The secret key that pseudonymizes user ids.

    Parameters
    ----------
    env
        Environment variable holding the key (used when ``file`` is not given).
    file
        A file holding the key (surrounding whitespace stripped); takes precedence over ``env``.
    ephemeral
        When no key is configured, generate a random one for this process only (demos and tests). A
        log written with an ephemeral key cannot be reopened (its key check fails), and users cannot
        be forgotten after the process ends. Never the default.

    Raises
    ------
    ConfigError
        No key configured (with a hint how to set one), or a key shorter than 16 bytes.
    """
    if file is not None:
        p = Path(file)
        if not p.is_file():
            raise ConfigError.for_field("hmac_key_file", str(p), "must be an existing file")
        key = p.read_bytes().strip()
        source = "hmac_key_file"
    else:
        text = os.environ.get(env)
        if text is None or not text.strip():
            if ephemeral:
                warnings.warn(
                    "no HMAC key configured: using an ephemeral key; pseudonyms will not match "
                    "after a restart",
                    RuntimeWarning,
                    stacklevel=2,
                )
                return secrets.token_bytes(32)
            raise ConfigError(
                f"no HMAC key for user pseudonyms: {_KEY_HINT.format(env=env)}", field=env
            )
        key = text.strip().encode("utf-8")
        source = env
    if len(key) < MIN_KEY_BYTES:
        # never echo the key itself: only its length
        raise ConfigError(
            f"{source} must hold at least {MIN_KEY_BYTES} bytes, got {len(key)}", field=source
        )
    check_secret_strength(source, key)
    return key


def pseudonymize(key: bytes, user_id: str) -> str:
    """``HMAC-SHA256(key, user_id)`` as 64 hex characters."""
    return hmac.new(key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()


def key_check(key: bytes) -> str:
    """A short one-way check value of ``key`` (what a log stores to recognise its key)."""
    return hmac.new(key, _KEY_CHECK_LABEL, hashlib.sha256).hexdigest()[:16]


def check_secret_strength(source: str, value: bytes) -> None:
    """Refuse a secret shorter than 16 bytes or with under 40 bits of empirical entropy.

    The estimate is ``len(value) * H``, where ``H = -sum(p_c log2 p_c)`` over the frequencies of its
    characters: repeated or alternating characters score near zero. The message names ``source``
    and the length, never the secret."""
    if len(value) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"{source} must hold at least {MIN_TOKEN_LENGTH} characters, got {len(value)}",
            field=source,
        )
    n = len(value)
    bits = -n * sum((c / n) * math.log2(c / n) for c in Counter(value).values())
    if bits < MIN_SECRET_BITS:
        raise ConfigError(
            f"{source} must be a random secret (at least {MIN_SECRET_BITS:.0f} bits by the "
            f"entropy of its characters), got one of about {bits:.0f} bits: generate one with "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`",
            field=source,
        )
