"""Encryption at rest of the log's profile values and context vectors (AES-256-GCM).

The key comes from the environment like the pseudonym key (:mod:`~bandit_engine.store.keys`):
``BANDIT_ENCRYPTION_KEY`` holds the active key as 64 hex characters (32 random bytes), for
example ``export BANDIT_ENCRYPTION_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))')``.
``BANDIT_ENCRYPTION_OLD_KEYS`` optionally holds earlier keys (comma-separated, same form), kept
for reading only. Every log (SQLite or PostgreSQL) opened in a process with the key set encrypts
what it writes; without it nothing is encrypted (opt-in: see the README's section on encryption
for why), and reading an encrypted value without its key is a :class:`DataError` naming the
variable.

What is encrypted: each decision's context vector ``x`` (the fused profile as the model sees it)
and each stored profile's fields. What stays readable, and why: the pseudonym (the join key:
forgetting a user and per-user reads look rows up by it; it is already a keyed hash), timestamps
(retention and purge select by them; the journal is replayed in their order), bundle, deal and
course ids, candidate lists, propensities, scores, rewards, event types and values (catalog facts
and outcomes that ``bandit evaluate``, the reports and SQL dashboards aggregate without a key;
they say what was shown and what happened, not who the user is), and the bundle features ``z``
(derived from the catalog alone).

A sealed value is ``version (1 byte) | key id (4 bytes) | nonce (12 bytes) | ciphertext | tag
(16 bytes)``: 33 bytes more than the plaintext. The key id is the first 4 bytes of an HMAC of a
fixed label under the key, so a reader finds the key a value was written with, and the row it
belongs to is bound as associated data (the decision id, or the pseudonym and platform), so a
sealed value copied into another row fails to open. Nonces are random (96 bits): rotate a key
before it has sealed about 2^32 values (NIST SP 800-38D's bound for random nonces).

Rotation: put the new key in ``BANDIT_ENCRYPTION_KEY`` and the old one in
``BANDIT_ENCRYPTION_OLD_KEYS``, restart; new writes use the new key, old rows still open with the
old one. :func:`~bandit_engine.store.rekey.reencrypt_log` rewrites every sealed value under
the active key, after which the old key may be dropped.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigError, DataError

__all__ = [
    "ENV_KEY",
    "ENV_OLD_KEYS",
    "FieldCipher",
    "cipher_from_env",
    "open_text",
    "open_vector",
    "seal_text",
    "seal_vector",
]

ENV_KEY = "BANDIT_ENCRYPTION_KEY"
ENV_OLD_KEYS = "BANDIT_ENCRYPTION_OLD_KEYS"
KEY_BYTES = 32
_VERSION = 1
_HEADER = 1 + 4 + 12
OVERHEAD = _HEADER + 16
# A sealed profile is stored as a JSON string (PostgreSQL's column is JSON) starting with this;
# a plaintext profile is a JSON object, starting with "{".
_TEXT_PREFIX = '"!e1:'

_KEY_ID_LABEL = b"bandit-engine field encryption key id v1"


def _parse_key(source: str, text: str) -> bytes:
    """A 32-byte key from its hex form; errors name ``source`` and the length, never the key."""
    text = text.strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ConfigError(
            f"{source} must be {KEY_BYTES} random bytes as {2 * KEY_BYTES} hex characters, "
            f"got {len(text)} characters that are not hex: generate one with "
            "`python3 -c 'import secrets; print(secrets.token_hex(32))'`",
            field=source,
        ) from None
    if len(key) != KEY_BYTES:
        raise ConfigError(
            f"{source} must be {KEY_BYTES} bytes ({2 * KEY_BYTES} hex characters) for "
            f"AES-256-GCM, got {len(key)} bytes",
            field=source,
        )
    return key


def key_id(key: bytes) -> bytes:
    """The 4-byte id stored with every value sealed under ``key``."""
    return hmac.new(key, _KEY_ID_LABEL, hashlib.sha256).digest()[:4]


class FieldCipher:
    """AES-256-GCM with one active key (for writing) and older keys (for reading)."""

    def __init__(self, active: bytes, old: Sequence[bytes] = ()) -> None:
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError:
            raise ConfigError(
                f"{ENV_KEY} is set but the `cryptography` package is not installed: "
                'pip install "bandit-engine[encrypt]"',
                field=ENV_KEY,
            ) from None

        self._aead: dict[bytes, Any] = {}
        for key in (active, *old):
            if len(key) != KEY_BYTES:
                raise ConfigError(
                    f"encryption keys must be {KEY_BYTES} bytes, got {len(key)}", field=ENV_KEY
                )
            kid = key_id(key)
            if kid in self._aead and self._aead[kid][1] != key:
                raise ConfigError(
                    f"two configured encryption keys share the key id {kid.hex()}: "
                    "generate a new key",
                    field=ENV_OLD_KEYS,
                )
            self._aead.setdefault(kid, (AESGCM(key), key))
        self.active_id = key_id(active)

    def seal(self, data: bytes, aad: bytes) -> bytes:
        """``data`` encrypted and authenticated under the active key, bound to ``aad``."""
        nonce = os.urandom(12)
        aead = self._aead[self.active_id][0]
        sealed: bytes = aead.encrypt(nonce, data, aad)
        return bytes([_VERSION]) + self.active_id + nonce + sealed

    def open(self, sealed: bytes, aad: bytes, field: str) -> bytes:
        """The plaintext of :meth:`seal` output; a :class:`DataError` naming ``field`` when the
        key is not configured or the value was altered or belongs to another row."""
        from cryptography.exceptions import InvalidTag

        kid = bytes(sealed[1:5])
        entry = self._aead.get(kid)
        if entry is None:
            raise DataError(
                f"{field} was encrypted with key id {kid.hex()}, which is neither {ENV_KEY} nor "
                f"in {ENV_OLD_KEYS}: add the key it was written with to {ENV_OLD_KEYS}",
                field=ENV_OLD_KEYS,
                value=kid.hex(),
            )
        try:
            return bytes(entry[0].decrypt(bytes(sealed[5:17]), bytes(sealed[17:]), aad))
        except InvalidTag:
            raise DataError(
                f"{field} failed authentication: altered, truncated or moved from another row",
                field=field,
            ) from None


def cipher_from_env(env: str = ENV_KEY, old_env: str = ENV_OLD_KEYS) -> FieldCipher | None:
    """The cipher configured in the environment, or ``None`` when ``env`` is unset or empty."""
    text = os.environ.get(env, "")
    if not text.strip():
        old = os.environ.get(old_env, "")
        if old.strip():
            raise ConfigError(
                f"{old_env} is set but {env} is not: set the active key too", field=env
            )
        return None
    active = _parse_key(env, text)
    old_keys = [
        _parse_key(f"{old_env}[{i}]", part)
        for i, part in enumerate(os.environ.get(old_env, "").split(","))
        if part.strip()
    ]
    return FieldCipher(active, old_keys)


def _is_sealed_vector(stored: bytes, dim: int) -> bool:
    return len(stored) == 8 * dim + OVERHEAD and stored[0] == _VERSION


def seal_vector(cipher: FieldCipher | None, raw: bytes, aad: bytes) -> bytes:
    """A float64 blob as stored: sealed when a cipher is configured, else as it is."""
    return raw if cipher is None else cipher.seal(raw, aad)


def open_vector(
    cipher: FieldCipher | None, stored: bytes | None, dim: int, aad: bytes, field: str = "x"
) -> bytes | None:
    """The float64 blob of a stored vector: plaintext blobs (``8 * dim`` bytes, written without a
    key) pass through, sealed ones (``8 * dim + 33``) are opened."""
    if stored is None:
        return None
    stored = bytes(stored)
    if not _is_sealed_vector(stored, dim):
        return stored
    if cipher is None:
        raise DataError(
            f"{field} is encrypted in the event log: set {ENV_KEY} (and {ENV_OLD_KEYS} for "
            "rotated keys) to read it",
            field=ENV_KEY,
        )
    return cipher.open(stored, aad, field)


def seal_text(cipher: FieldCipher | None, text: str, aad: bytes) -> str:
    """A JSON text as stored: the JSON string ``"!e1:<base64url(sealed)>"`` with a cipher, else
    as it is."""
    if cipher is None:
        return text
    sealed = cipher.seal(text.encode("utf-8"), aad)
    return _TEXT_PREFIX + base64.urlsafe_b64encode(sealed).decode("ascii") + '"'


def open_text(cipher: FieldCipher | None, stored: str, aad: bytes, field: str) -> str:
    """The JSON text of a stored value (plaintext passes through)."""
    if not stored.lstrip().startswith(_TEXT_PREFIX):
        return stored
    if cipher is None:
        raise DataError(
            f"{field} is encrypted in the event log: set {ENV_KEY} (and {ENV_OLD_KEYS} for "
            "rotated keys) to read it",
            field=ENV_KEY,
        )
    try:
        sealed = base64.urlsafe_b64decode(stored.strip()[len(_TEXT_PREFIX) : -1])
    except (binascii.Error, ValueError):
        raise DataError(f"{field} is not a valid encrypted value", field=field) from None
    return cipher.open(sealed, aad, field).decode("utf-8")


def x_aad(decision_id: str) -> bytes:
    """Associated data of a decision's context vector: its decision id."""
    return b"x\x00" + decision_id.encode("utf-8")


def profile_aad(pseudonym: str, platform: str) -> bytes:
    """Associated data of a stored profile: the user's pseudonym (hex) and the platform."""
    return b"profile\x00" + pseudonym.encode("ascii") + b"\x00" + platform.encode("utf-8")
