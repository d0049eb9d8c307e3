"""Two platforms' profiles -> one context vector: :class:`ProfileSchema` and :class:`FeatureMap`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ConfigError, ValidationError
from ..profiles import CONSENT
from ._columns import canonical_frame, check_fields, check_now, check_out, check_time
from ._values import FloatArray, RowLabel, invalid, show
from .behaviour import Behaviour
from .block import FittedBlock, fit_canonical, latest_time
from .specs import FieldSpec, check_name, spec_from_dict

__all__ = ["FORMAT", "FeatureMap", "ProfileSchema"]

FORMAT = "bandit_engine.features/1"
_RESERVED_PLATFORMS = frozenset({"known", "intercept", CONSENT})  # consent: profiles.CONSENT


class ProfileSchema:
    """Which columns each platform's profile table has, and how to encode them.

    Parameters
    ----------
    platforms
        Platform name -> field specs, e.g. ``{"knowledge": [...], "groupbuy": [...]}``. The order
        of platforms and fields fixes the vector layout.
    key
        The user id column of every table (ignored as a feature).
    intercept
        Put a constant 1.0 first in every vector.

    Raises
    ------
    ConfigError
        No platforms, a platform with no fields, a bad or reserved (``known``, ``intercept``)
        platform name, a bad or duplicated field name, or a field named like the key.
    """

    def __init__(
        self,
        platforms: Mapping[str, Sequence[FieldSpec | Behaviour]],
        *,
        key: str = "user_id",
        intercept: bool = True,
    ) -> None:
        if not isinstance(key, str) or not key:
            raise ConfigError.for_field("key", key, "must be a non-empty str")
        if not isinstance(intercept, bool):
            raise ConfigError.for_field("intercept", intercept, "must be a bool")
        if not isinstance(platforms, Mapping) or not platforms:
            raise ConfigError.for_field("platforms", platforms, "must be a non-empty dict")
        self.key = key
        self.intercept = intercept
        self._platforms: dict[str, tuple[FieldSpec, ...]] = {}
        #: The live-behaviour block (:mod:`bandit_engine.features.behaviour`), if declared: a
        #: platform whose only field is a :class:`Behaviour` spec. It is not read from tables.
        self.behaviour: Behaviour | None = None
        for name, fields in platforms.items():
            check_name("platform", name)
            if name in _RESERVED_PLATFORMS:
                raise ConfigError.for_field("platform", name, "is reserved")
            if isinstance(fields, Sequence) and any(isinstance(f, Behaviour) for f in fields):
                if len(fields) != 1 or self.behaviour is not None:
                    raise ConfigError.for_field(
                        name, fields, "a behaviour block is one Behaviour spec, declared once"
                    )
                block = fields[0]
                if not isinstance(block, Behaviour):
                    raise ConfigError.for_field(
                        name, fields, "a behaviour block is one Behaviour spec, declared once"
                    )
                self.behaviour = block
                continue
            self._platforms[name] = check_fields(fields, name, key)
        if not self._platforms:
            raise ConfigError.for_field("platforms", platforms, "must declare a profile platform")

    @property
    def platforms(self) -> dict[str, tuple[FieldSpec, ...]]:
        """Platform name -> its field specs (a copy)."""
        return dict(self._platforms)

    @property
    def platform_names(self) -> list[str]:
        """Platform names in declaration order."""
        return list(self._platforms)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{p}: {len(f)} fields" for p, f in self._platforms.items())
        return f"ProfileSchema({{{sizes}}}, key={self.key!r}, intercept={self.intercept})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ProfileSchema):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def fit(
        self,
        tables: Mapping[str, pd.DataFrame | None],
        *,
        now: float | None = None,
        ignore_extra: bool = False,
    ) -> FeatureMap:
        """Learn vocabularies and standardization statistics from the platform tables.

        Parameters
        ----------
        tables
            Platform name -> its table (one row per user; a platform may be absent or empty).
        now
            Reference time (epoch seconds) for recency statistics. Default: the latest timestamp
            in any recency column of any table (deterministic; never the wall clock).
        ignore_extra
            Ignore undeclared columns instead of raising :class:`ValidationError`.
        """
        canon = {}
        for name, df in _check_tables(self, tables).items():
            canon[name], _ = canonical_frame(
                self._platforms[name], df, prefix=name, key=self.key, ignore_extra=ignore_extra
            )
        if now is None:
            times = [latest_time(self._platforms[p], c) for p, c in canon.items()]
            seen = [t for t in times if t is not None]
            ref = max(seen) if seen else None
        else:
            ref = check_now(now)
        blocks = []
        for name, specs in self._platforms.items():
            cols = canon[name] if name in canon else [_empty_canonical(s) for s in specs]
            fields = fit_canonical(specs, name, cols, ref)
            blocks.append(FittedBlock(name, fields, key=self.key, reference_time=ref))
        fm = FeatureMap(blocks, key=self.key, intercept=self.intercept, reference_time=ref)
        fm.behaviour = self.behaviour
        return fm

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable description."""
        out: dict[str, Any] = {
            "key": self.key,
            "intercept": self.intercept,
            "platforms": {p: [s.to_dict() for s in f] for p, f in self._platforms.items()},
        }
        if self.behaviour is not None:
            out["behaviour"] = self.behaviour.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Any) -> ProfileSchema:
        """Rebuild from :meth:`to_dict` output; :class:`ValidationError` if malformed."""
        if not isinstance(data, Mapping) or set(data) - {"behaviour"} != {
            "key",
            "intercept",
            "platforms",
        }:
            raise ValidationError.for_field(
                "schema", data, "must be a dict with keys key, intercept, platforms[, behaviour]"
            )
        platforms = data["platforms"]
        if not isinstance(platforms, Mapping):
            raise ValidationError.for_field("schema.platforms", platforms, "must be a dict")
        specs: dict[str, list[FieldSpec | Behaviour]] = {}
        for name, fields in platforms.items():
            if not isinstance(fields, list):
                raise ValidationError.for_field(
                    f"schema.platforms.{name}", fields, "must be a list"
                )
            specs[name] = [
                spec_from_dict(d, f"schema.platforms.{name}[{i}]") for i, d in enumerate(fields)
            ]
        if data.get("behaviour") is not None:
            specs["behaviour"] = [Behaviour.from_dict(data["behaviour"])]
        try:
            return cls(specs, key=data["key"], intercept=data["intercept"])
        except ConfigError as err:
            raise ValidationError(
                f"schema: {err.message}", field=err.field, value=err.value
            ) from None


def _empty_canonical(spec: FieldSpec) -> Any:
    # the canonical form of a column with no rows (for a platform table that was not given)
    return canonical_frame([spec], pd.DataFrame(), prefix="", key=None, ignore_extra=True)[0][0]


def _check_tables(schema: ProfileSchema | FeatureMap, tables: Any) -> dict[str, pd.DataFrame]:
    """The given, non-None tables keyed by declared platform; unknown platforms rejected."""
    if not isinstance(tables, Mapping):
        raise ValidationError.for_field(
            "tables", type(tables).__name__, "must be a dict of DataFrames"
        )
    declared = schema.platform_names
    out: dict[str, pd.DataFrame] = {}
    for name, df in tables.items():
        if name not in declared:
            raise ValidationError.for_field(
                str(name), name, f"is not a declared platform (declared: {', '.join(declared)})"
            )
        if df is None:
            continue
        if not isinstance(df, pd.DataFrame):
            raise ValidationError.for_field(name, type(df).__name__, "must be a pandas DataFrame")
        _check_keys(name, schema.key, df)
        out[name] = df
    return out


def _check_keys(platform: str, key: str, df: pd.DataFrame) -> None:
    field = f"{platform}.{key}"
    if key not in df.columns:
        if len(df) == 0:
            return
        raise ValidationError(
            f"{field} (the key column) is missing from the table "
            f"(columns: {show(list(df.columns))})",
            field=field,
            value=list(df.columns),
        )
    keys = df[key]
    if isinstance(keys, pd.DataFrame):
        raise ValidationError.for_field(field, key, "is a duplicated column")
    missing = keys.isna().to_numpy()
    if missing.any():
        i = int(np.argmax(missing))
        raise invalid(field, keys.iloc[i], "must not be missing", f"row {i}")
    dup = keys.duplicated().to_numpy()
    if dup.any():
        i = int(np.argmax(dup))
        raise invalid(field, keys.iloc[i], "must be unique within the table", f"row {i}")


class FeatureMap:
    """A fitted :class:`ProfileSchema`: turns profiles into fixed-length float64 vectors.

    Build with :meth:`ProfileSchema.fit` or :meth:`from_dict`. Layout: ``[intercept]`` +
    ``known.<platform>`` per platform + each platform's block (declaration order).

    Attributes
    ----------
    key
        User id column.
    intercept
        Whether position 0 is a constant 1.0.
    reference_time
        The ``now`` used for recency statistics at fit; the default ``now`` at transform time.
    n_features, feature_names
        Vector length and the name of every position.
    """

    def __init__(
        self,
        blocks: Sequence[FittedBlock],
        *,
        key: str,
        intercept: bool,
        reference_time: float | None,
    ) -> None:
        self.key = key
        self.intercept = intercept
        self.reference_time = reference_time
        self.blocks = {b.prefix: b for b in blocks}
        self.platform_names = list(self.blocks)
        head = ["intercept"] if intercept else []
        head += [f"known.{p}" for p in self.platform_names]
        self.feature_names: list[str] = head + [n for b in blocks for n in b.names]
        self.n_features = len(self.feature_names)
        self._needs_now = any(b.has_recency for b in blocks)
        flag = len(head) - len(self.platform_names)
        offset = len(head)
        plan = []
        for i, b in enumerate(blocks):
            plan.append((b.prefix, b, flag + i, offset))
            offset += b.width
        self._plan: tuple[tuple[str, FittedBlock, int, int], ...] = tuple(plan)
        self._platform_set = frozenset(self.platform_names)
        #: The schema's live-behaviour block (the engine keeps its state), or ``None``.
        self.behaviour: Behaviour | None = None

    @property
    def schema(self) -> ProfileSchema:
        """The schema this map was fitted from."""
        platforms: dict[str, Any] = {p: b.specs for p, b in self.blocks.items()}
        if self.behaviour is not None:
            platforms[self.behaviour.name] = [self.behaviour]
        return ProfileSchema(platforms, key=self.key, intercept=self.intercept)

    def __repr__(self) -> str:
        return (
            f"FeatureMap(platforms={self.platform_names}, n_features={self.n_features}, "
            f"reference_time={self.reference_time})"
        )

    def _resolve_now(self, now: Any) -> float:
        if now is not None:
            return check_now(now)
        if self.reference_time is not None:
            return self.reference_time
        if self._needs_now:
            raise ValidationError.for_field(
                "now", None, "must be given (no timestamps were seen at fit)"
            )
        return float("nan")

    # -- serving

    def transform_one(
        self,
        profile: Mapping[str, Mapping[str, Any] | None],
        *,
        now: float | None = None,
        out: FloatArray | None = None,
        ignore_extra: bool = False,
    ) -> FloatArray:
        """The context vector of one user.

        Parameters
        ----------
        profile
            Platform name -> that platform's field dict, or ``None`` / absent when the user is not
            known there. A field absent from a dict is missing; the key column is ignored.
        now
            Epoch seconds for recency; default :attr:`reference_time` (pass the current time
            when serving).
        out
            Optional float64 array of shape ``(n_features,)`` to write into (and return).
        ignore_extra
            Ignore undeclared field keys instead of raising :class:`ValidationError`.
        """
        t = self._resolve_now(now)
        if out is None:
            x = np.zeros(self.n_features)
        else:
            check_out(out, self.n_features, exact=True)
            x = out
            x.fill(0.0)
        if type(profile) is not dict and not isinstance(profile, Mapping):
            raise ValidationError.for_field(
                "profile", profile, "must be a dict of platform -> fields"
            )
        if not self._platform_set.issuperset(profile):
            bad = next(p for p in profile if p not in self._platform_set)
            raise ValidationError.for_field(
                str(bad),
                profile[bad],
                f"is not a declared platform (declared: {', '.join(self.platform_names)})",
            )
        if self.intercept:
            x[0] = 1.0
        for name, block, flag, offset in self._plan:
            row = profile.get(name)
            if row is not None:
                x[flag] = 1.0
                block.write_row(row, x, offset, t, ignore_extra)
        return x

    # -- batch

    def _keys(self, given: Mapping[str, pd.DataFrame]) -> pd.Index:
        cols = [given[p][self.key] for p in self.platform_names if p in given and len(given[p])]
        return _union_keys(cols)

    def transform_array(
        self,
        tables: Mapping[str, pd.DataFrame | None],
        *,
        now: float | None = None,
        ignore_extra: bool = False,
    ) -> tuple[FloatArray, list[Any]]:
        """Vectors of every user in the tables: ``(X, keys)``, ``X[i]`` the vector of ``keys[i]``.

        Users are the union over the platform tables in first-seen order: the rows of the first
        declared platform's table in table order, then the new users of the next platform, etc.
        """
        t = self._resolve_now(now)
        given = _check_tables(self, tables)
        canon: dict[str, tuple[list[Any], RowLabel]] = {
            name: self.blocks[name].canonical(df, ignore_extra) for name, df in given.items()
        }
        keys = self._keys(given)
        X = np.zeros((len(keys), self.n_features))
        if self.intercept:
            X[:, 0] = 1.0
        for name, block, flag, offset in self._plan:
            if name not in given or len(given[name]) == 0:
                continue
            df = given[name]
            rows = keys.get_indexer(pd.Index(df[self.key]))
            part = np.zeros((len(df), block.width))
            cols, where = canon[name]
            block.write_frame(cols, part, where, t)
            X[rows, flag] = 1.0
            X[rows, offset : offset + block.width] = part
        return X, keys.tolist()

    def transform(
        self,
        tables: Mapping[str, pd.DataFrame | None],
        *,
        now: float | None = None,
        ignore_extra: bool = False,
    ) -> pd.DataFrame:
        """:meth:`transform_array` as a DataFrame indexed by the key, one column per feature."""
        X, keys = self.transform_array(tables, now=now, ignore_extra=ignore_extra)
        index = pd.Index(keys, name=self.key, dtype=object if not keys else None)
        return pd.DataFrame(X, index=index, columns=self.feature_names)

    def profiles(
        self, tables: Mapping[str, pd.DataFrame | None], *, ignore_extra: bool = False
    ) -> Iterator[tuple[Any, dict[str, dict[str, Any] | None]]]:
        """Per-user profile dicts (the input of :meth:`transform_one`), in the order of
        :meth:`transform_array`.

        Values are validated and JSON-native: numbers as float, timestamps as epoch seconds,
        categories as str, tags as lists, flags as bool, missing as ``None``; the key is left out.
        ``transform_one`` of each yields exactly the matching row of ``transform``.
        """
        given = _check_tables(self, tables)
        records = {
            name: self.blocks[name].records(df, ignore_extra=ignore_extra)
            for name, df in given.items()
        }
        keys = self._keys(given)
        lookup: dict[str, dict[Any, dict[str, Any]]] = {}
        for name, df in given.items():
            if len(df):
                lookup[name] = dict(zip(df[self.key].tolist(), records[name], strict=True))
        for k in keys.tolist():
            yield k, {p: lookup.get(p, {}).get(k) for p in self.platform_names}

    # -- persistence

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable state (str / int / float / bool / None / list / dict only)."""
        out: dict[str, Any] = {
            "format": FORMAT,
            "key": self.key,
            "intercept": self.intercept,
            "reference_time": self.reference_time,
            "platforms": [
                {"name": name, "fields": b.fields_to_list()} for name, b in self.blocks.items()
            ],
        }
        if self.behaviour is not None:
            out["behaviour"] = self.behaviour.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Any) -> FeatureMap:
        """Rebuild from :meth:`to_dict` output; :class:`ValidationError` if malformed."""
        expected = {"format", "key", "intercept", "reference_time", "platforms"}
        if not isinstance(data, Mapping) or set(data) - {"behaviour"} != expected:
            raise ValidationError.for_field(
                "feature_map", data, f"must be a dict with keys {sorted(expected)}"
            )
        if data["format"] != FORMAT:
            raise ValidationError.for_field(
                "feature_map.format", data["format"], f"must be {FORMAT!r}"
            )
        ref = check_time("feature_map.reference_time", data["reference_time"])
        platforms = data["platforms"]
        if not isinstance(platforms, list) or not platforms:
            raise ValidationError.for_field(
                "feature_map.platforms", platforms, "must be a non-empty list"
            )
        blocks: list[FittedBlock] = []
        for i, entry in enumerate(platforms):
            where = f"feature_map.platforms[{i}]"
            if not isinstance(entry, Mapping) or set(entry) != {"name", "fields"}:
                raise ValidationError.for_field(
                    where, entry, "must be a dict with keys name, fields"
                )
            if not isinstance(entry["name"], str) or any(b.prefix == entry["name"] for b in blocks):
                raise ValidationError.for_field(
                    f"{where}.name",
                    entry["name"],
                    "must be a str distinct from the other platforms",
                )
            blocks.append(
                FittedBlock.from_parts(
                    entry["name"], entry["fields"], key=data["key"], reference_time=ref, where=where
                )
            )
        try:
            # the schema's own checks: names, reserved platforms, duplicates, key, intercept
            ProfileSchema(
                {b.prefix: b.specs for b in blocks}, key=data["key"], intercept=data["intercept"]
            )
        except ConfigError as err:
            raise ValidationError(
                f"feature_map: {err.message}", field=err.field, value=err.value
            ) from None
        fm = cls(blocks, key=data["key"], intercept=data["intercept"], reference_time=ref)
        if data.get("behaviour") is not None:
            fm.behaviour = Behaviour.from_dict(data["behaviour"])
        return fm


def _union_keys(columns: Sequence[pd.Series]) -> pd.Index:
    """Distinct keys in first-seen order (dtype kept when the tables agree)."""
    if not columns:
        return pd.Index([], dtype=object)
    merged: pd.Series = pd.concat([c.reset_index(drop=True) for c in columns], ignore_index=True)
    keys: pd.Index = pd.Index(merged.drop_duplicates())
    return keys
