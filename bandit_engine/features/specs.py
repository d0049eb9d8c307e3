"""Declarative field specs: what a column is and how it should be encoded.

Specs are frozen dataclasses holding only hyperparameters; the statistics learned from data
live in the fitted encoders (:mod:`bandit_engine.features.fields`). ``to_dict`` /
``from_dict`` round-trip through JSON; ``from_dict`` raises :class:`ValidationError` because
its input may come from a corrupted file, while the constructors raise :class:`ConfigError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, fields
from typing import Any, ClassVar

from ..errors import ConfigError, ValidationError

__all__ = [
    "RECENCY_UNITS",
    "Boolean",
    "Categorical",
    "FieldSpec",
    "Numeric",
    "Recency",
    "Tags",
    "check_name",
    "spec_from_dict",
]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
RECENCY_UNITS: dict[str, float] = {
    "seconds": 1.0,
    "minutes": 60.0,
    "hours": 3600.0,
    "days": 86400.0,
    "weeks": 604800.0,
}


def check_name(field: str, value: Any) -> str:
    """``value`` if it is an identifier (``[A-Za-z_][A-Za-z0-9_]*``), else :class:`ConfigError`."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigError.for_field(field, value, "must be an identifier ([A-Za-z_][A-Za-z0-9_]*)")
    return value


def _check_bool(field: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError.for_field(field, value, "must be a bool")


def _check_int(field: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError.for_field(field, value, f"must be an int >= {minimum}")


@dataclass(frozen=True)
class _Spec:
    """Base of the specs: ``to_dict`` lists the dataclass fields, so a new hyperparameter is saved
    (and read back by :func:`spec_from_dict`) without a second list to keep in step."""

    kind: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {"kind": self.kind, **{f.name: getattr(self, f.name) for f in fields(self)}}


@dataclass(frozen=True)
class Numeric(_Spec):
    """A real-valued column, standardized with the fitted mean and standard deviation.

    Parameters
    ----------
    name
        Column name.
    log
        Apply ``log1p`` before standardizing (negative values are then rejected).
    missing_indicator
        Add a 0/1 column ``<field>=<missing>``; a missing value is imputed with the fitted mean.
    """

    kind: ClassVar[str] = "numeric"
    name: str
    _: KW_ONLY
    log: bool = False
    missing_indicator: bool = False

    def __post_init__(self) -> None:
        check_name("name", self.name)
        _check_bool(f"{self.name}.log", self.log)
        _check_bool(f"{self.name}.missing_indicator", self.missing_indicator)


@dataclass(frozen=True)
class Categorical(_Spec):
    """A single-valued label, one-hot over the fitted vocabulary plus an ``<unknown>`` bucket.

    Parameters
    ----------
    name
        Column name.
    max_categories
        Keep at most this many categories (most frequent first, ties by label).
    min_count
        Categories seen fewer times at fit go to ``<unknown>``.
    """

    kind: ClassVar[str] = "categorical"
    name: str
    _: KW_ONLY
    max_categories: int = 50
    min_count: int = 1

    def __post_init__(self) -> None:
        check_name("name", self.name)
        _check_int(f"{self.name}.max_categories", self.max_categories, 1)
        _check_int(f"{self.name}.min_count", self.min_count, 1)


@dataclass(frozen=True)
class Tags(_Spec):
    """A multi-valued label set: multi-hot over a small vocabulary, hashed over a large one.

    Parameters
    ----------
    name
        Column name.
    max_vocabulary
        If the fitted vocabulary has at most this many tags, encode multi-hot plus ``<other>``;
        otherwise hash every tag into ``hash_buckets`` columns.
    hash_buckets
        Number of hashed columns (``zlib.crc32`` of the UTF-8 tag, modulo ``hash_buckets``).
    sep
        If set, a ``str`` value is split on it; if ``None``, a ``str`` value is an error.
    """

    kind: ClassVar[str] = "tags"
    name: str
    _: KW_ONLY
    max_vocabulary: int = 64
    hash_buckets: int = 32
    sep: str | None = None

    def __post_init__(self) -> None:
        check_name("name", self.name)
        _check_int(f"{self.name}.max_vocabulary", self.max_vocabulary, 1)
        _check_int(f"{self.name}.hash_buckets", self.hash_buckets, 1)
        if self.sep is not None and (not isinstance(self.sep, str) or not self.sep):
            raise ConfigError.for_field(
                f"{self.name}.sep", self.sep, "must be None or a non-empty str"
            )


@dataclass(frozen=True)
class Recency(_Spec):
    """A timestamp turned into the time elapsed since it, then standardized.

    Parameters
    ----------
    name
        Column name.
    unit
        One of ``seconds``, ``minutes``, ``hours``, ``days``, ``weeks``.
    log
        Apply ``log1p`` to the elapsed time before standardizing.
    missing_indicator
        Add a 0/1 column ``<field>=<missing>``; a missing timestamp is imputed with the mean.
    """

    kind: ClassVar[str] = "recency"
    name: str
    _: KW_ONLY
    unit: str = "days"
    log: bool = True
    missing_indicator: bool = True

    def __post_init__(self) -> None:
        check_name("name", self.name)
        if self.unit not in RECENCY_UNITS:
            raise ConfigError.for_field(
                f"{self.name}.unit", self.unit, f"must be one of {sorted(RECENCY_UNITS)}"
            )
        _check_bool(f"{self.name}.log", self.log)
        _check_bool(f"{self.name}.missing_indicator", self.missing_indicator)


@dataclass(frozen=True)
class Boolean(_Spec):
    """A 0/1 flag. Missing is 0, with an optional ``<field>=<missing>`` indicator column.

    Parameters
    ----------
    name
        Column name.
    missing_indicator
        Add a 0/1 column saying the flag was missing (otherwise missing and False coincide).
    """

    kind: ClassVar[str] = "boolean"
    name: str
    _: KW_ONLY
    missing_indicator: bool = False

    def __post_init__(self) -> None:
        check_name("name", self.name)
        _check_bool(f"{self.name}.missing_indicator", self.missing_indicator)


FieldSpec = Numeric | Categorical | Tags | Recency | Boolean
_KINDS: dict[str, type[FieldSpec]] = {
    cls.kind: cls for cls in (Numeric, Categorical, Tags, Recency, Boolean)
}


def spec_from_dict(data: Any, where: str = "spec") -> FieldSpec:
    """Rebuild a spec from :meth:`to_dict` output; :class:`ValidationError` if malformed."""
    if not isinstance(data, Mapping):
        raise ValidationError.for_field(where, data, "must be a dict")
    kind = data.get("kind")
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ValidationError.for_field(f"{where}.kind", kind, f"must be one of {sorted(_KINDS)}")
    params = {k: v for k, v in data.items() if k != "kind"}
    try:
        return cls(**params)
    except ConfigError as err:
        raise ValidationError(f"{where}: {err.message}", field=err.field, value=err.value) from None
    except TypeError as err:
        # unexpected or missing keys
        raise ValidationError.for_field(where, dict(data), f"has bad keys ({err})") from None
