"""Rows as Python values: journal entries and float64 vectors stored as blobs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ..errors import DataError, ValidationError

__all__ = ["FloatArray", "JournalEntry", "blob", "unblob", "vector"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class JournalEntry:
    """One journal row, in commit order.

    ``kind`` is ``"decision"``, ``"event"``, ``"learned"`` or ``"admin"``; ``data`` holds the row's
    fields (for a decision ``x`` is a float64 array and ``candidates`` a list).
    """

    seq: int
    kind: Literal["decision", "event", "learned", "admin"]
    data: dict[str, Any]


def blob(a: FloatArray) -> bytes:
    """``a`` as little-endian float64 bytes."""
    return np.ascontiguousarray(a, dtype="<f8").tobytes()


def unblob(b: bytes | None, dim: int | None) -> FloatArray:
    """The vector of :func:`blob` bytes (checked against its stored length ``dim``)."""
    if b is None:
        return np.empty(0)
    out = np.frombuffer(b, dtype="<f8").astype(np.float64)
    if dim is not None and out.shape[0] != dim:
        raise DataError.for_field(
            "x_dim", dim, f"does not match the stored vector ({out.shape[0]})"
        )
    return out


def vector(name: str, value: Any) -> FloatArray:
    """``value`` as a 1-D float64 array, or a ValidationError naming ``name``."""
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationError.for_field(name, value, "must be a 1-D array of numbers") from None
    if a.ndim != 1:
        raise ValidationError.for_field(name, a.shape, "must be a 1-D array (shape given)")
    return a
