"""Hyperparameter validation and seeding shared by every policy.

Each check raises :class:`~bandit_engine.errors.ConfigError` in the house form
``"<name> must ..., got <value>"`` and returns the value as a plain Python number.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError

__all__ = [
    "SeedLike",
    "check_choice",
    "check_finite",
    "check_in_range",
    "check_int",
    "check_positive",
    "is_real",
    "make_rng",
]

SeedLike = int | np.random.Generator | None


def make_rng(seed: SeedLike) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a seed, a generator (used as is) or ``None`` (fresh
    entropy)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
        raise ConfigError.for_field("seed", seed, "must be an int, a numpy Generator or None")
    if seed is not None and seed < 0:
        raise ConfigError.for_field("seed", seed, "must be >= 0")
    return np.random.default_rng(seed)


def is_real(value: object) -> bool:
    """A real number: Python or numpy int or float, not a bool."""
    return isinstance(value, int | float | np.floating | np.integer) and not isinstance(
        value, bool | np.bool_
    )


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    """Validate a hyperparameter that must be > 0 (or >= 0)."""
    if not is_real(value) or not np.isfinite(value) or (value < 0 if allow_zero else value <= 0):
        raise ConfigError.for_field(name, value, "must be >= 0" if allow_zero else "must be > 0")
    return float(value)


def check_in_range(
    name: str,
    value: float,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Validate ``low <= value <= high`` (ends optionally open)."""
    if is_real(value) and np.isfinite(value):
        v = float(value)
        lo_ok = v > low if low_open else v >= low
        hi_ok = v < high if high_open else v <= high
        if lo_ok and hi_ok:
            return v
    lb = "(" if low_open else "["
    hb = ")" if high_open else "]"
    raise ConfigError.for_field(name, value, f"must be in {lb}{low}, {high}{hb}")


def check_finite(name: str, value: float) -> float:
    """Validate a hyperparameter that may be any finite real number."""
    if not is_real(value) or not np.isfinite(value):
        raise ConfigError.for_field(name, value, "must be a finite number")
    return float(value)


def check_int(name: str, value: int, *, minimum: int) -> int:
    """Validate an integer hyperparameter ``>= minimum``."""
    if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < minimum:
        raise ConfigError.for_field(name, value, f"must be an integer >= {minimum}")
    return int(value)


def check_choice(name: str, value: str, allowed: Sequence[str]) -> str:
    """Validate a string hyperparameter against its allowed values."""
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError.for_field(name, value, f"must be one of {list(allowed)}")
    return value
