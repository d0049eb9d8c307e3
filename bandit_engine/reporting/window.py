"""Report windows: ``--since`` / ``--until`` as ISO dates, ISO times (UTC unless an offset is
given) or epoch seconds."""

from __future__ import annotations

import datetime as dt
import math

from ..errors import ValidationError

__all__ = ["check_window", "parse_time"]


def parse_time(field: str, text: str | None) -> float | None:
    """Epoch seconds of ``2026-12-01``, ``2026-12-01T08:00``, ``2026-12-01T08:00+08:00`` or
    ``1764547200``; ``None`` for ``None``. Anything else is a
    :class:`~bandit_engine.errors.ValidationError` naming ``field``."""
    if text is None:
        return None
    raw = str(text).strip()
    try:
        value = float(raw)
    except ValueError:
        pass
    else:
        if math.isfinite(value):
            return value
        raise ValidationError.for_field(field, text, "must be a finite time")
    try:
        when = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError.for_field(
            field,
            text,
            "must be an ISO date or time (2026-12-01, 2026-12-01T08:00Z) or epoch seconds",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


def check_window(since: float | None, until: float | None) -> None:
    """Refuse a window that ends before it starts (``since`` is included, ``until`` not)."""
    if since is not None and until is not None and until <= since:
        raise ValidationError.for_field(
            "until", until, f"must be after since ({since}): the window [since, until) is empty"
        )
