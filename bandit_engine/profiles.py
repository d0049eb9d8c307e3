"""Where an engine finds a user's profile: one dict per platform, keyed by user id.

The engine looks a user's stored profile up when a decision names the user, and merges an inline
profile over it (inline values win, field by field). Anything with the :class:`ProfileSource`
methods can be the engine's store (``engine.profiles``). Two exist:

* :class:`ProfileStore`, in memory (the default): **not** saved with the engine file, because raw
  user ids must not reach disk. Reload it with :meth:`Engine.load_profiles
  <bandit_engine.Engine.load_profiles>`.
* the event log's profile table, under keyed pseudonyms (:class:`bandit_engine.service.LogProfiles`),
  which the HTTP server uses: one durable store, so what the server forgets the engine forgets.

Consent (issue 15)
------------------
A profile may carry, under the reserved key :data:`CONSENT`, the user's choices:
``{"<platform>": bool, ..., "personalisation": bool}``. ``<platform>: false`` withholds that
platform from fusion for cross-platform marketing; ``personalisation: false`` opts the user out of
personalisation altogether (the engine then serves a non-personalised control decision and keeps
no behaviour state for them). A scope never recorded counts as granted (the model before consent
existed: an opt-out model; an opt-in deployment records ``false`` for every user it has not asked).
Stores keep the record like a platform's (field by field); :func:`withhold` is the one place that
applies it, so a withheld platform looks exactly like a platform the user is absent from.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from .errors import ValidationError

__all__ = [
    "CONSENT",
    "PERSONALISATION",
    "Profile",
    "ProfileSource",
    "ProfileStore",
    "check_consent",
    "merge_profiles",
    "withhold",
]

Profile = dict[str, dict[str, Any] | None]

#: The reserved key of a profile holding the user's consent record (not a platform).
CONSENT = "consent"
#: The consent scope of personalisation as a whole (the global opt-out).
PERSONALISATION = "personalisation"


def check_consent(
    consent: Any, platforms: Sequence[str] | None = None, *, where: str = CONSENT
) -> dict[str, bool]:
    """A consent record checked: a mapping of scopes (the ``platforms``, when given, and
    :data:`PERSONALISATION`) to booleans (``True`` / ``False`` only: ``"yes"``, ``1`` or ``None``
    are refused, since a guessed consent is no consent).

    Raises
    ------
    ValidationError
        Not a mapping, an unknown scope, or a flag that is not a boolean, naming
        ``<where>.<scope>`` and the value sent.
    """
    if not isinstance(consent, Mapping):
        raise ValidationError.for_field(where, consent, "must be a mapping scope -> true/false")
    out: dict[str, bool] = {}
    for scope, flag in consent.items():
        if platforms is not None and scope != PERSONALISATION and scope not in platforms:
            allowed = ", ".join([*platforms, PERSONALISATION])
            raise ValidationError.for_field(
                f"{where}.{scope}", flag, f"is not a consent scope (scopes: {allowed})"
            )
        if not isinstance(scope, str) or not scope:
            raise ValidationError.for_field(where, scope, "must have non-empty str scopes")
        if not isinstance(flag, bool):
            raise ValidationError.for_field(f"{where}.{scope}", flag, "must be true or false")
        out[scope] = flag
    return out


def withhold(profile: Mapping[str, Mapping[str, Any] | None]) -> tuple[Profile, bool]:
    """Apply a profile's consent record: ``(what fusion may use, personalised)``.

    The result has no :data:`CONSENT` key, and a platform whose consent is ``false`` is left out
    entirely: to the feature map it is a platform the user is absent from (flag 0, block 0), to
    eligibility a user whose city is unknown. ``personalised`` is ``False`` for a user who opted
    out of personalisation; the caller then uses nothing of the profile. A profile without a
    consent record is returned as it is (the same object: the serving path copies nothing).
    """
    record = profile.get(CONSENT)
    if record is None:
        if CONSENT in profile:
            return {p: v for p, v in profile.items() if p != CONSENT}, True  # type: ignore[misc]
        return profile, True  # type: ignore[return-value]
    withheld = {s for s, v in record.items() if v is False}
    out: Profile = {
        p: (dict(v) if v is not None else None)
        for p, v in profile.items()
        if p != CONSENT and p not in withheld
    }
    return out, PERSONALISATION not in withheld


def merge_profiles(
    stored: Mapping[str, Mapping[str, Any] | None] | None,
    inline: Mapping[str, Mapping[str, Any] | None] | None,
) -> Profile:
    """Merge ``inline`` over ``stored`` per platform, field by field (inline wins).

    A platform given as ``None`` inline leaves the stored part unchanged. Consent is the
    exception: an inline :data:`CONSENT` record can withhold more for this call, never grant
    what the stored record withholds (a scope is granted only when neither says ``false``).
    """
    out: Profile = {}
    if stored:
        for platform, part in stored.items():
            out[platform] = dict(part) if part is not None else None
    if inline:
        for platform, part in inline.items():
            if part is None:
                out.setdefault(platform, None)
                continue
            if platform == CONSENT:
                kept = out.get(CONSENT) or {}
                given = check_consent(part, where="profile.consent")
                out[CONSENT] = {
                    s: bool(kept.get(s, True)) and bool(given.get(s, True)) for s in {*kept, *given}
                }
                continue
            base = out.get(platform)
            merged = dict(base) if base else {}
            merged.update(part)
            out[platform] = merged
    return out


@runtime_checkable
class ProfileSource(Protocol):
    """What an engine needs of a profile store."""

    def get(self, user_id: str) -> Profile | None:
        """The stored profile of ``user_id`` or ``None``."""
        ...

    def put(self, user_id: str, profile: Mapping[str, Mapping[str, Any] | None]) -> None:
        """Store a whole profile (replacing what was stored)."""
        ...

    def upsert(
        self, user_id: str, platform: str, fields: Mapping[str, Any], *, replace: bool = False
    ) -> None:
        """Set (``replace=True``) or update a user's fields on one platform."""
        ...

    def forget(self, user_id: str) -> bool:
        """Delete a user's profile; returns whether there was one."""
        ...


class ProfileStore:
    """User id -> ``{platform: fields}``, in memory (a :class:`ProfileSource`)."""

    def __init__(self) -> None:
        self._data: dict[str, Profile] = {}

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def get(self, user_id: str) -> Profile | None:
        """The stored profile of ``user_id`` or ``None``."""
        return self._data.get(user_id)

    def upsert(
        self, user_id: str, platform: str, fields: Mapping[str, Any], *, replace: bool = False
    ) -> None:
        """Set (``replace=True``) or update a user's fields on one platform. Updating the
        :data:`CONSENT` record to withhold a platform also drops that platform's stored record
        (as the event log's store does: withheld data is not kept)."""
        profile = self._data.setdefault(user_id, {})
        current = profile.get(platform)
        if replace or current is None:
            profile[platform] = dict(fields)
        else:
            current.update(fields)
        if platform == CONSENT:
            for scope, flag in fields.items():
                if flag is False and scope != PERSONALISATION:
                    profile.pop(scope, None)

    def put(self, user_id: str, profile: Mapping[str, Mapping[str, Any] | None]) -> None:
        """Store a whole profile (replacing what was stored)."""
        self._data[user_id] = {p: (dict(v) if v is not None else None) for p, v in profile.items()}

    def forget(self, user_id: str) -> bool:
        """Delete a user's profile; returns whether there was one."""
        return self._data.pop(user_id, None) is not None
