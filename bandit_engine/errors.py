"""Exception hierarchy.

Every error the library raises on purpose derives from :class:`BanditError` and carries the
field and the value that were wrong, so that the CLI (exit codes) and the server (HTTP statuses)
can each map them in one place without parsing messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "BanditError",
    "ConfigError",
    "ConflictError",
    "DataError",
    "ModelFileError",
    "NoOfferError",
    "NotFoundError",
    "StoreBusyError",
    "ValidationError",
    "lookup_by_type",
]


def lookup_by_type(
    exc: BaseException, table: Mapping[type[BaseException], int], default: int
) -> int:
    """The value ``table`` gives the most specific class of ``exc`` (walking its MRO), else
    ``default``. The CLI (exit codes) and the server (HTTP statuses) each keep one such table."""
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return default


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


class BanditError(Exception):
    """Base class of all errors raised deliberately by bandit-engine.

    Parameters
    ----------
    message
        Human-readable explanation. It already names the field and the value.
    field
        Dotted name of the offending field, when there is one.
    value
        The offending value, when there is one.
    """

    def __init__(self, message: str, *, field: str | None = None, value: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.value = value

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly description (used by the server's error responses)."""
        out: dict[str, Any] = {"error": type(self).__name__, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        if self.value is not None:
            out["value"] = _show(self.value)
        return out

    @classmethod
    def for_field(cls, field: str, value: Any, requirement: str) -> BanditError:
        """Build ``"<field> <requirement>, got <value>"``, the house error message shape."""
        return cls(f"{field} {requirement}, got {_show(value)}", field=field, value=value)


class ConfigError(BanditError, ValueError):
    """A hyperparameter, schema or scenario setting is invalid."""


class ValidationError(BanditError, ValueError):
    """Input data (a profile, an event, a logged row) is invalid."""


class DataError(BanditError, ValueError):
    """A data set as a whole cannot support the requested computation."""


class NotFoundError(BanditError, KeyError):
    """An id (decision, bundle, deal, course, user) is unknown."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return self.message


class ConflictError(BanditError):
    """The request contradicts stored state (for example a reused decision id)."""


class ModelFileError(BanditError):
    """A saved engine file is corrupted, truncated or of an incompatible format version."""


class NoOfferError(BanditError):
    """Nothing is eligible for this decision and the rules' fallback is an explicit no-offer
    (:class:`~bandit_engine.rules.Fallback` ``kind="no_offer"``). Not a failure: ``reason`` says
    why, and the HTTP server answers 200 with ``"offer": false``."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"no offer: {reason}", field="candidates")
        self.reason = reason


class StoreBusyError(BanditError):
    """The event log could not be used: another process held its write lock past ``busy_timeout``,
    or the disk failed (full, read-only, I/O error). Nothing of the failed call was written; retry
    later. The HTTP server answers 503."""

    @classmethod
    def during(cls, path: str, exc: BaseException) -> StoreBusyError:
        """The error of a failed transaction on the log at ``path`` (SQLite's own words kept)."""
        return cls(f"the event log {path!r} is busy or failing ({exc}); retry later", field="db")

    @classmethod
    def opening(cls, path: str, exc: BaseException) -> StoreBusyError:
        """The error of a log that could not be opened because another process held it."""
        return cls(f"the event log {path!r} is locked by another process ({exc})", field="db")
