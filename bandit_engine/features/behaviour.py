"""Live behaviour: per-user state the engine maintains from its own decisions and events.

A :class:`Behaviour` block is declared in a :class:`~bandit_engine.features.ProfileSchema` like
any platform's fields (``ProfileSchema({..., "behaviour": [Behaviour("recent")]})``). It is not
read from a table: the engine keeps it up to date from what it shows (impressions) and from the
clicks and orders reported for its decisions, so the embedding API, ``bandit simulate``, the HTTP
server and ``bandit evaluate --model`` all share one code path (:class:`BehaviourStore`, owned by
the :class:`~bandit_engine.Engine`).

What is kept per user (one float32 row, see :meth:`BehaviourStore.bytes_per_user`)
---------------------------------------------------------------------------------
For each summarised bundle field ``f`` (default ``deal.cuisine``, ``course.topic``,
``deal.city``) and each of its values (up to ``max_values``; later values share the last slot):
exponentially decayed counts of impressions, clicks and orders, with half-life ``half_life_days``.
Plus: decayed decisions seen, clicks and orders in total; the decayed click-weighted sum and
weight of the log price of clicked deals (``price_field``); time of the last update, last click,
last order; the last ``max_bought`` courses ordered and ``max_clicked`` bundles clicked. Decay is lazy: a row holds counts as of its
own timestamp and is scaled by ``2 ** (-(t - t_row) / half_life)`` when read or written.

What it adds to a decision
--------------------------
*Per-candidate features* appended to each candidate's bundle row (:meth:`BehaviourStore.pair`)
for the policies that declare ``pair_features`` (``pair_ucb``, ``pair_ts``): for each summarised
field, ``log1p`` of the decayed impressions, clicks and orders on *this candidate's value* ("this
user clicked hotpot twice lately"), the squared distance between the candidate's log price and
the user's clicked log prices, "already ordered this course", "clicked this bundle" and "clicked
a bundle of this deal". *User features* (:data:`USER_FEATURES`: has history, log1p of decayed
decisions / clicks / orders, log1p hours since the last click, never clicked) are appended to
the context ``x`` only with ``in_context=True``.

Rules for odd input
-------------------
Events reach the state only through the engine, for decisions it made (unknown decision ids are
refused by :meth:`Engine.report <bandit_engine.Engine.report>` before anything changes). A time
earlier than a row's clock (a clock going backwards, a late order) is taken as the row's own
time: nothing is decayed backwards and the event counts in full. Counts decay, so a user with
100,000 events keeps one fixed-size row with finite values. A missing or non-finite price in the
catalog counts as 0 (``log1p(0)``); a missing categorical value is summarised as a value of its
own (its text, e.g. ``"nan"``), and values beyond ``max_values - 1`` share the last slot. Rows idle for more than ``ttl_days`` read as no history
whether or not :meth:`BehaviourStore.sweep` has freed them yet.

Privacy and memory
------------------
Users are keyed by a 12-byte pseudonym: a keyed BLAKE2b digest under a random per-engine secret,
or, when a :class:`~bandit_engine.service.LoggedEngine` serves the engine, the first 12 bytes of
the event log's HMAC pseudonym (so the journal names the row a decision read, and a restart
redoes it). Raw ids never enter the state or the model file. The secret is saved with the model
(so a loaded engine finds its users again); whoever holds the file can test a guessed id against
it. Memory is bounded: at most ``max_users`` rows (least recently seen evicted, 1% at a time).
Measured with the defaults: about 0.7 KB per user for 1,000,000 users
(``python benchmarks/bench_behaviour.py --decisions 0 --users 1000000``).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, fields, replace
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError, ValidationError
from .specs import check_name

__all__ = ["KEY_BYTES", "USER_FEATURES", "Behaviour", "BehaviourStore"]

FloatArray = NDArray[np.float64]
_DAY = 86400.0
KEY_BYTES = 12
_KEY_BYTES = KEY_BYTES
#: Names of the user-level behaviour features appended to ``x`` (prefixed with the block name).
USER_FEATURES = (
    "has_history",
    "decisions",
    "clicks",
    "orders",
    "hours_since_click",
    "never_clicked",
)
_PAIR_STATS = ("impressions", "clicks", "orders")
#: Largest automatic ``part_slots``: the shared model is dense (``p x p``), so one column per
#: part stops paying beyond a few hundred parts (issue 9 is about a sparse model for those).
MAX_AUTO_PART_SLOTS = 256


@dataclass(frozen=True)
class Behaviour:
    """Declare a live-behaviour block (see the module docstring).

    Parameters
    ----------
    name
        Block name (feature names are ``<name>.<feature>``).
    half_life_days
        Half-life of every decayed count.
    fields
        Bundle fields summarised per value: ``deal.<column>`` or ``course.<column>`` of the
        catalog's deal and course tables (categorical values).
    price_field
        A numeric deal or course column whose clicked log values are averaged (``None``: none).
    max_values
        Value slots per field; values beyond the first ``max_values - 1`` share the last slot.
    in_context
        Also append the user-level features (:data:`USER_FEATURES`) to the context ``x``. Off by
        default: they are the same for every candidate, so a shared model over candidate rows
        cannot use them, and per-bundle models (LinUCB) learned more slowly with them on the
        shipped new-users scenario (-16% against popularity instead of -4%, 20,000 decisions x
        4 seeds).
    max_clicked
        How many clicked bundles are remembered per user (features "clicked this bundle" and
        "clicked a bundle of this deal"; 0 turns them off).
    max_bought
        How many ordered courses are remembered per user.
    max_users
        Rows kept at most; the least recently seen users are evicted first.
    ttl_days
        Rows idle this long are dropped by :meth:`BehaviourStore.sweep`.
    bundle_crosses
        Pairs of categorical bundle fields whose one-hots are crossed (``course.topic`` x
        ``deal.cuisine``: complementarity shared by all bundles with those values).
    part_slots
        One-hot columns for the first ``part_slots`` deals and courses (by catalog row): a part's
        quality is shared by all its bundles. An int applies to deals and courses alike, a pair
        gives (deal slots, course slots); 0 turns them off; ``None`` (the default) sizes them
        when the engine is built: each count plus a quarter for growth, rounded up to a multiple
        of 8, at most 256 (:meth:`resolved`).
    known_crosses
        Also append "known on platform P" x bundle columns (separate population estimates for
        users without a profile).
    profile_match, crosses
        Also append profile-match flags ("user lists cuisine X" x "deal is X") and numeric
        profile x bundle crosses to the candidate rows (:class:`~bandit_engine.features.pairs.PairFeatures`).
    """

    kind: ClassVar[str] = "behaviour"
    name: str
    _: KW_ONLY
    half_life_days: float = 7.0
    fields: tuple[str, ...] = ("deal.cuisine", "course.topic", "deal.city")
    price_field: str | None = "deal.price"
    max_values: int = 12
    max_bought: int = 4
    max_clicked: int = 4
    in_context: bool = False
    max_users: int = 1_000_000
    ttl_days: float = 90.0
    profile_match: bool = True
    crosses: bool = True
    known_crosses: bool = False
    bundle_crosses: tuple[tuple[str, str], ...] = (("course.topic", "deal.cuisine"),)
    part_slots: int | tuple[int, int] | None = None

    def __post_init__(self) -> None:
        check_name("name", self.name)
        object.__setattr__(self, "fields", tuple(self.fields))
        crosses = []
        for pair in self.bundle_crosses:
            if isinstance(pair, str) or len(pair) != 2 or not all(isinstance(f, str) for f in pair):
                raise ConfigError.for_field(
                    f"{self.name}.bundle_crosses", pair, "must be pairs of bundle field names"
                )
            a, b = pair
            crosses.append((str(a), str(b)))
        object.__setattr__(self, "bundle_crosses", tuple(crosses))
        for f in (*self.fields, *([self.price_field] if self.price_field else [])):
            part, _, col = str(f).partition(".")
            if part not in ("deal", "course") or not col:
                raise ConfigError.for_field(
                    f"{self.name}.fields", f, "must look like 'deal.<column>' or 'course.<column>'"
                )
        for key in ("half_life_days", "ttl_days"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0:
                raise ConfigError.for_field(f"{self.name}.{key}", v, "must be > 0")
        slots = self.part_slots
        if slots is not None:
            given: tuple[Any, ...] = (
                (slots, slots) if not isinstance(slots, list | tuple) else tuple(slots)
            )
            if len(given) != 2 or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in given
            ):
                raise ConfigError.for_field(
                    f"{self.name}.part_slots",
                    slots,
                    "must be None ('auto'), an int >= 0 or a pair (deal slots, course slots)",
                )
            object.__setattr__(self, "part_slots", (int(given[0]), int(given[1])))
        for key in ("profile_match", "crosses", "known_crosses", "in_context"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError.for_field(
                    f"{self.name}.{key}", getattr(self, key), "must be a bool"
                )
        for key, low in (
            ("max_values", 2),
            ("max_bought", 0),
            ("max_clicked", 0),
            ("max_users", 1),
        ):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ConfigError.for_field(f"{self.name}.{key}", v, f"must be an int >= {low}")

    def resolved(self, catalog: Any) -> Behaviour:
        """This spec with ``part_slots=None`` replaced by a size for ``catalog``."""
        if self.part_slots is not None:
            return self

        def size(n: int) -> int:
            return int(min(MAX_AUTO_PART_SLOTS, 8 * math.ceil(1.25 * n / 8)))

        return replace(self, part_slots=(size(len(catalog.deals())), size(len(catalog.courses()))))

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["fields"] = list(self.fields)
        d["bundle_crosses"] = [list(p) for p in self.bundle_crosses]
        if isinstance(self.part_slots, tuple):
            d["part_slots"] = list(self.part_slots)
        return {"kind": self.kind, **d}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Behaviour:
        if not isinstance(data, Mapping) or data.get("kind") != cls.kind:
            raise ValidationError.for_field("behaviour", data, "must be a behaviour spec dict")
        params = {k: v for k, v in data.items() if k != "kind"}
        params["fields"] = tuple(params.get("fields", ()))
        if "bundle_crosses" in params:
            params["bundle_crosses"] = tuple(tuple(p) for p in params["bundle_crosses"])
        try:
            return cls(**params)
        except (ConfigError, TypeError) as err:
            raise ValidationError.for_field(
                "behaviour", dict(data), f"is invalid ({err})"
            ) from None

    # layout of one row ---------------------------------------------------------------------
    @property
    def n_user_features(self) -> int:
        return len(USER_FEATURES) if self.in_context else 0

    @property
    def n_pair_features(self) -> int:
        return (
            3 * len(self.fields)
            + (1 if self.price_field else 0)
            + (1 if self.max_bought else 0)
            + (2 if self.max_clicked else 0)
        )

    def user_feature_names(self) -> list[str]:
        return [f"{self.name}.{n}" for n in USER_FEATURES] if self.in_context else []

    def pair_feature_names(self) -> list[str]:
        out = [f"{self.name}.{f}.{s}" for f in self.fields for s in _PAIR_STATS]
        if self.price_field:
            out.append(f"{self.name}.{self.price_field}.distance")
        if self.max_bought:
            out.append(f"{self.name}.course.bought")
        if self.max_clicked:
            out += [f"{self.name}.bundle.clicked", f"{self.name}.deal.clicked"]
        return out


# Scalar slots at the end of a float32 row (after the per-field counts); the three timestamps
# live in a separate float64 matrix (float32 cannot hold epoch seconds: ~128 s resolution).
_N_DEC, _N_CLICK, _N_ORDER, _P_SUM, _P_W = range(5)
_N_SCALARS = 5
_T, _T_CLICK, _T_ORDER = range(3)


class BehaviourStore:
    """The live per-user state of one :class:`Behaviour` block, bound to a catalog.

    Rows are float32 in one preallocated matrix (capacity doubles up to ``max_users``); a dict maps
    a user's 12-byte pseudonym to its row. Not thread-safe (the engine serialises access).
    """

    def __init__(self, spec: Behaviour, *, secret: bytes | None = None, save_secret: bool = True):
        self.spec = spec
        self.secret = os.urandom(16) if secret is None else bytes(secret)
        self.save_secret = save_secret
        self.half_life = spec.half_life_days * _DAY
        self._ln2_h = math.log(2.0) / self.half_life
        V, F = spec.max_values, len(spec.fields)
        self._n_counts = 3 * F * V  # impressions, clicks, orders per field and value
        self._scal = self._n_counts
        self._bought = self._scal + _N_SCALARS
        self._clicked = self._bought + spec.max_bought
        self.width = self._clicked + spec.max_clicked
        self.index: dict[bytes, int] = {}
        self.keys: list[bytes | None] = []
        self.rows = np.zeros((0, self.width), dtype=np.float32)
        self.times = np.zeros((0, 3))  # last update, last click, last order (epoch seconds)
        self._free: list[int] = []
        # vocabularies: per field, value label -> slot (grown as the catalog grows)
        self.vocab: list[dict[str, int]] = [{} for _ in spec.fields]
        self._catalog_version = -1
        self._slots = np.zeros((0, F), dtype=np.intp)  # per catalog bundle row: slot per field
        self._flat = np.zeros((0, 3 * F), dtype=np.intp)
        self._logprice = np.zeros(0)
        self._course = np.zeros(0, dtype=np.float64)  # per bundle row: its course row (as float)
        self._deal = np.zeros(0, dtype=np.intp)  # per bundle row: its deal row
        self.n_evicted = 0
        #: Optional user id -> 12-byte pseudonym (not saved: the server sets it when it attaches)
        self.key_fn: Callable[[str], bytes] | None = None

    # -- keys ------------------------------------------------------------------------------
    def key(self, user_id: str) -> bytes:
        """The pseudonym of a user id: ``key_fn(user_id)`` when set (a served engine uses the
        event log's pseudonym, so the journal can name the user's row), else a keyed BLAKE2b
        digest under this store's secret (12 bytes either way)."""
        if self.key_fn is not None:
            return self.key_fn(user_id)
        return hashlib.blake2b(
            user_id.encode("utf-8"), key=self.secret, digest_size=_KEY_BYTES
        ).digest()

    def __len__(self) -> int:
        return len(self.index)

    # -- catalog binding -------------------------------------------------------------------
    def bind(self, catalog: Any) -> None:
        """(Re)build per-bundle slot indices when the catalog changed (cheap when it did not)."""
        if catalog.version == self._catalog_version and self._slots.shape[0] == len(catalog):
            return
        bundles = catalog.bundles()
        deals = catalog.deals().set_index("deal_id")
        courses = catalog.courses().set_index("course_id")
        V = self.spec.max_values
        slots = np.zeros((len(bundles), len(self.spec.fields)), dtype=np.intp)
        for j, f in enumerate(self.spec.fields):
            part, _, col = f.partition(".")
            table, ids = (
                (deals, bundles["deal_id"]) if part == "deal" else (courses, bundles["course_id"])
            )
            if col not in table.columns:
                raise ValidationError.for_field(
                    f"{self.spec.name}.fields", f, f"is not a column of the catalog's {part}s"
                )
            values = table[col].reindex(ids.to_numpy()).astype(str).tolist()
            vocab = self.vocab[j]
            for i, v in enumerate(values):
                s = vocab.get(v)
                if s is None:
                    s = vocab[v] = min(len(vocab), V - 1)
                slots[i, j] = s
        self._slots = slots
        # flat positions in a row of (impressions, clicks, orders) x field for every bundle row, so
        # that a decision gathers all its per-candidate counts in one indexing operation
        F = len(self.spec.fields)
        flat = np.empty((len(bundles), 3 * F), dtype=np.intp)
        for j in range(F):
            for st in range(3):
                flat[:, 3 * j + st] = st * F * V + j * V + slots[:, j]
        self._flat = flat
        if self.spec.price_field:
            part, _, col = self.spec.price_field.partition(".")
            table, ids = (
                (deals, bundles["deal_id"]) if part == "deal" else (courses, bundles["course_id"])
            )
            price = table[col].reindex(ids.to_numpy()).astype(float).to_numpy()
            self._logprice = np.log1p(np.maximum(np.where(np.isfinite(price), price, 0.0), 0.0))
        cidx = {c: i for i, c in enumerate(courses.index.astype(str))}
        self._course = np.asarray([cidx[str(c)] for c in bundles["course_id"]], dtype=np.float64)
        didx = {d: i for i, d in enumerate(deals.index.astype(str))}
        self._deal = np.asarray([didx[str(d)] for d in bundles["deal_id"]], dtype=np.intp)
        self._catalog_version = catalog.version

    # -- rows ------------------------------------------------------------------------------
    def _row(self, key: bytes, t: float, create: bool) -> int:
        r = self.index.get(key)
        if r is not None and t - float(self.times[r, _T]) > self.spec.ttl_days * _DAY:
            self._drop(r)  # expired but not yet swept: start the user afresh
            r = None
        if r is not None or not create:
            return -1 if r is None else r
        if self._free:
            r = self._free.pop()
        else:
            n = len(self.keys)
            if n >= self.spec.max_users:
                self._evict(max(1, self.spec.max_users // 100))
                return self._row(key, t, create)
            if n >= self.rows.shape[0]:
                cap = min(self.spec.max_users, max(1024, 2 * self.rows.shape[0]))
                grown = np.zeros((cap, self.width), dtype=np.float32)
                grown[:n] = self.rows[:n]
                self.rows = grown
                gt = np.zeros((cap, 3))
                gt[:n] = self.times[:n]
                self.times = gt
            self.keys.append(None)
            r = n
        self.keys[r] = key
        self.index[key] = r
        row = self.rows[r]
        row[:] = 0.0
        row[self._bought :] = -1.0
        self.times[r] = (t, np.nan, np.nan)
        return r

    def _evict(self, n: int) -> None:
        """Drop the ``n`` least recently seen users."""
        live = np.asarray([i for i, k in enumerate(self.keys) if k is not None], dtype=np.intp)
        if live.size == 0:
            return
        t = self.times[live, _T]
        n = min(n, live.size)
        drop = live[np.argpartition(t, n - 1)[:n]]
        for r in drop.tolist():
            self._drop(r)
        self.n_evicted += n

    def _drop(self, r: int) -> None:
        k = self.keys[r]
        if k is not None:
            del self.index[k]
            self.keys[r] = None
            self._free.append(r)

    def sweep(self, now: float) -> int:
        """Forget users idle for more than ``ttl_days``; returns how many."""
        cutoff = now - self.spec.ttl_days * _DAY
        n = len(self.keys)
        old = [r for r in np.flatnonzero(self.times[:n, _T] < cutoff).tolist() if self.keys[r]]
        for r in old:
            self._drop(r)
            self.rows[r] = 0.0
            self.times[r] = 0.0
        return len(old)

    def forget(self, user_id: str) -> bool:
        """Erase one user's behaviour (right to be forgotten)."""
        r = self.index.get(self.key(user_id))
        if r is None:
            return False
        self._drop(r)
        self.rows[r] = 0.0  # the freed row holds nothing of the user until it is reused
        self.times[r] = 0.0
        return True

    # -- one row as bytes (the shared store of the split roles) ----------------------------
    def export_row(self, key: bytes) -> bytes | None:
        """The user's row as stored in the event log's ``user_behaviour`` table: its ``width``
        float32 values, then its three timestamps as float64 (``None``: no row). The counts are
        as of the row's own clock (decay is lazy), so the bytes need no time to be read back."""
        r = self.index.get(key)
        if r is None:
            return None
        row: bytes = self.rows[r].astype("<f4").tobytes()
        times: bytes = self.times[r].astype("<f8").tobytes()
        return row + times

    def load_row(self, key: bytes, data: bytes | None) -> bool:
        """Set the user's row from :meth:`export_row`'s bytes (``None``: drop it). Returns
        ``False`` (and drops the row) when the bytes are of another width: a row written for
        another behaviour spec is no history of this one."""
        if data is None or len(data) != 4 * self.width + 24:
            r = self.index.get(key)
            if r is not None:
                self._drop(r)
                self.rows[r] = 0.0
                self.times[r] = 0.0
            return data is None
        times = np.frombuffer(data, dtype="<f8", count=3, offset=4 * self.width)
        r = self._row(key, float(times[_T]), create=True)
        self.rows[r] = np.frombuffer(data, dtype="<f4", count=self.width)
        self.times[r] = times
        return True

    def _decay_to(self, r: int, t: float) -> np.ndarray:
        row = self.rows[r]
        t0 = float(self.times[r, _T])
        if t > t0:
            f = math.exp(-(t - t0) * self._ln2_h)
            row[: self._n_counts + _N_SCALARS] *= f  # counts and scalar sums decay together
            self.times[r, _T] = t
        out: NDArray[np.float32] = row
        return out

    def _live_row(self, key: bytes | None, t: float) -> int | None:
        """The user's row, or ``None`` when unknown or idle beyond ``ttl_days``: an expired row
        reads as no history whether or not :meth:`sweep` has freed it yet, so when sweeps run
        does not change any decision (a journal replay sweeps at other moments)."""
        r = self.index.get(key) if key is not None else None
        if r is None or t - float(self.times[r, _T]) > self.spec.ttl_days * _DAY:
            return None
        return r

    # -- features --------------------------------------------------------------------------
    def user_vector(self, key: bytes | None, t: float, out: FloatArray) -> None:
        """Write the user features (:data:`USER_FEATURES`) into ``out`` (zeros when unknown)."""
        out[:] = 0.0
        r = self._live_row(key, t)
        if r is None:
            out[5] = 1.0
            return
        row = self.rows[r]
        s = self._scal
        f = math.exp(-max(0.0, t - float(self.times[r, _T])) * self._ln2_h)
        out[0] = 1.0
        out[1] = math.log1p(f * float(row[s + _N_DEC]))
        out[2] = math.log1p(f * float(row[s + _N_CLICK]))
        out[3] = math.log1p(f * float(row[s + _N_ORDER]))
        tc = float(self.times[r, _T_CLICK])
        if math.isnan(tc):
            out[5] = 1.0
        else:
            out[4] = math.log1p(max(0.0, t - tc) / 3600.0)

    def snapshot(self, key: bytes | None, t: float) -> tuple[FloatArray, float] | None:
        """A copy of the user's row and its decay time as :meth:`pair` reads them at ``t``
        (``None``: no live history), for :meth:`pair` ``(..., snap=)`` later: an explanation
        rebuilds the candidate rows a decision saw, before the decision itself changed them."""
        r = self._live_row(key, t)
        if r is None:
            return None
        return self.rows[r].copy(), float(self.times[r, _T])

    def pair(
        self,
        key: bytes | None,
        t: float,
        bundle_rows: NDArray[np.intp],
        *,
        snap: tuple[FloatArray, float] | bool | None = False,
    ) -> FloatArray:
        """Per-candidate features, shape ``(len(bundle_rows), n_pair_features)``; from the
        :meth:`snapshot` ``snap`` instead of the live row when one is given (``None``: none)."""
        spec = self.spec
        k = bundle_rows.shape[0]
        out = np.zeros((k, spec.n_pair_features))
        if snap is False:
            r = self._live_row(key, t)
            if r is None:
                return out
            row, last = self.rows[r], float(self.times[r, _T])
        elif snap is None or snap is True:
            return out
        else:
            row, last = snap
        s = self._scal
        f = math.exp(-max(0.0, t - last) * self._ln2_h)
        col = 3 * len(spec.fields)
        np.multiply(row[self._flat[bundle_rows]], f, out=out[:, :col])
        np.log1p(out[:, :col], out=out[:, :col])
        if spec.price_field:
            w = float(row[s + _P_W])
            if w > 0.0:
                mean = float(row[s + _P_SUM]) / w
                out[:, col] = (self._logprice[bundle_rows] - mean) ** 2
            col += 1
        if spec.max_bought:
            bought = row[self._bought : self._clicked]
            if bought[0] >= 0.0:
                out[:, col] = np.isin(self._course[bundle_rows], bought)
            col += 1
        if spec.max_clicked:
            clicked = row[self._clicked :]
            if clicked[0] >= 0.0:
                seen = clicked[clicked >= 0.0].astype(np.intp)
                seen = seen[seen < self._deal.shape[0]]
                # "clicked this very bundle" and "clicked another bundle of this deal": the
                # user's own taste for an offer, which no profile column shows
                out[:, col] = np.isin(bundle_rows, seen)
                out[:, col + 1] = np.isin(self._deal[bundle_rows], self._deal[seen])
        return out

    # -- updates ---------------------------------------------------------------------------
    def observe_decision(self, key: bytes, bundle_row: int, t: float) -> None:
        """The engine showed bundle ``bundle_row`` to this user at ``t``."""
        r = self._row(key, t, create=True)
        row = self._decay_to(r, t)
        self._add(row, 0, bundle_row, 1.0)
        row[self._scal + _N_DEC] += 1.0

    def observe_event(self, key: bytes, bundle_row: int, kind: str, t: float) -> None:
        """A click or an order on a decision that showed ``bundle_row`` to this user."""
        r = self._row(key, t, create=True)
        row = self._decay_to(r, t)
        s = self._scal
        if kind == "click":
            self._add(row, 1, bundle_row, 1.0)
            row[s + _N_CLICK] += 1.0
            self.times[r, _T_CLICK] = t
            if self.spec.price_field and bundle_row < self._logprice.shape[0]:
                row[s + _P_SUM] += self._logprice[bundle_row]
                row[s + _P_W] += 1.0
            if self.spec.max_clicked:
                _remember(row[self._clicked :], float(bundle_row))
        else:
            self._add(row, 2, bundle_row, 1.0)
            row[s + _N_ORDER] += 1.0
            self.times[r, _T_ORDER] = t
            if self.spec.max_bought and bundle_row < self._course.shape[0]:
                _remember(row[self._bought : self._clicked], float(self._course[bundle_row]))
        # timestamps of events earlier than the row's clock (late orders) are kept as is

    def _add(self, row: np.ndarray, stat: int, bundle_row: int, w: float) -> None:
        if bundle_row >= self._slots.shape[0]:
            return
        V, F = self.spec.max_values, len(self.spec.fields)
        base = stat * F * V
        for j, sl in enumerate(self._slots[bundle_row].tolist()):
            row[base + j * V + sl] += w

    # -- measurement and persistence -------------------------------------------------------
    def bytes_per_user(self) -> float:
        """Bytes of the row matrix per row, plus the key and index entry (measured by tests)."""
        return float(self.width * 4 + 3 * 8)

    def to_state(self) -> dict[str, Any]:
        live = [r for r, k in enumerate(self.keys) if k is not None]
        keys = np.frombuffer(b"".join(self.keys[r] for r in live), dtype=np.uint8)  # type: ignore[misc]
        return {
            "spec": self.spec.to_dict(),
            "secret": self.secret.hex() if self.save_secret else None,
            "vocab": [sorted(v.items(), key=lambda kv: kv[1]) for v in self.vocab],
            "keys": keys.reshape(-1, _KEY_BYTES).copy(),
            "rows": self.rows[live].copy(),
            "times": self.times[live].copy(),
            "n_evicted": self.n_evicted,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], *, secret: bytes | None = None) -> BehaviourStore:
        spec = Behaviour.from_dict(state["spec"])
        sec = secret if secret is not None else state.get("secret")
        if sec is None:
            raise ValidationError.for_field(
                "behaviour.secret", None, "was not saved: pass the engine's behaviour secret"
            )
        store = cls(
            spec,
            secret=bytes.fromhex(sec) if isinstance(sec, str) else sec,
            save_secret=state.get("secret") is not None,
        )
        store.vocab = [{str(k): int(v) for k, v in items} for items in state["vocab"]]
        keys = np.asarray(state["keys"], dtype=np.uint8).reshape(-1, _KEY_BYTES)
        rows = np.asarray(state["rows"], dtype=np.float32).reshape(-1, store.width)
        if keys.shape[0] != rows.shape[0]:
            raise ValidationError.for_field("behaviour.rows", rows.shape, "must match the keys")
        store.rows = rows.copy()
        store.times = np.asarray(state["times"], dtype=np.float64).reshape(-1, 3).copy()
        store.keys = [bytes(k) for k in keys]
        store.index = {k: i for i, k in enumerate(store.keys)}  # type: ignore[misc]
        store.n_evicted = int(state.get("n_evicted", 0))
        return store


def _remember(ring: NDArray[np.float32], value: float) -> None:
    """Put ``value`` first in a most-recent-first ring of ids (-1 = empty), once."""
    if value in ring:
        return
    ring[1:] = ring[:-1].copy()
    ring[0] = value
