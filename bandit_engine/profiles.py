"""Where an engine finds a user's profile: one dict per platform, keyed by user id.

The engine looks a user's stored profile up when a decision names the user, and merges an inline
profile over it (inline values win, field by field). Anything with the :class:`ProfileSource`
methods can be the engine's store (``engine.profiles``). Two exist:

* :class:`ProfileStore`, in memory (the default): **not** saved with the engine file, because raw
  user ids must not reach disk. Reload it with :meth:`Engine.load_profiles
  <bandit_engine.Engine.load_profiles>`.
* the event log's profile table, under keyed pseudonyms (:class:`bandit_engine.service.LogProfiles`),
  which the HTTP server uses: one durable store, so what the server forgets the engine forgets.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = ["Profile", "ProfileSource", "ProfileStore", "merge_profiles"]

Profile = dict[str, dict[str, Any] | None]


def merge_profiles(
    stored: Mapping[str, Mapping[str, Any] | None] | None,
    inline: Mapping[str, Mapping[str, Any] | None] | None,
) -> Profile:
    """Merge ``inline`` over ``stored`` per platform, field by field (inline wins).

    A platform given as ``None`` inline leaves the stored part unchanged.
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
        """Set (``replace=True``) or update a user's fields on one platform."""
        profile = self._data.setdefault(user_id, {})
        current = profile.get(platform)
        if replace or current is None:
            profile[platform] = dict(fields)
        else:
            current.update(fields)

    def put(self, user_id: str, profile: Mapping[str, Mapping[str, Any] | None]) -> None:
        """Store a whole profile (replacing what was stored)."""
        self._data[user_id] = {p: (dict(v) if v is not None else None) for p, v in profile.items()}

    def forget(self, user_id: str) -> bool:
        """Delete a user's profile; returns whether there was one."""
        return self._data.pop(user_id, None) is not None
