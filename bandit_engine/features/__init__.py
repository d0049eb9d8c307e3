"""Profile fusion: a user's two platform profiles -> one fixed-length context vector ``x``.

Declare each platform's columns with field specs, fit on the platform tables, transform::

    schema = ProfileSchema({
        "knowledge": [Categorical("membership"), Tags("topics"),
                      Numeric("spend_knowledge", log=True), Recency("last_course_at")],
        "groupbuy": [Categorical("city"), Tags("cuisines"), Numeric("avg_ticket"),
                     Recency("last_order_at")],
    })
    fmap = schema.fit({"knowledge": knowledge_df, "groupbuy": groupbuy_df})
    x = fmap.transform_one({"knowledge": {...}, "groupbuy": None}, now=time.time())
    X = fmap.transform({"knowledge": knowledge_df, "groupbuy": groupbuy_df})  # batch, same rows

Vector layout: ``intercept`` (if enabled), ``known.<platform>`` per platform (declaration order),
then per platform per field its block: ``<platform>.<field>`` (standardized numeric / recency),
``<platform>.<field>=<value>`` (one-hot, multi-hot), ``<platform>.<field>=<unknown>`` /
``=<other>`` / ``=<missing>`` (special buckets), ``<platform>.<field>#<bucket>`` (hashed tags).

Behaviour
---------
=========================== ==================================================================
Situation                   Result
=========================== ==================================================================
missing value               ``None``, NaN, ``pd.NA``, NaT, or a field absent from the dict.
                            Numeric / Recency: the fitted mean (0 after standardizing), plus 1
                            in ``=<missing>`` if ``missing_indicator``. Categorical: the
                            ``<unknown>`` bucket. Tags: all zeros (same as an empty list).
                            Boolean: 0, plus ``=<missing>`` if ``missing_indicator``.
unseen category             ``<unknown>`` bucket (as are categories rarer than ``min_count``,
                            beyond ``max_categories``, and the literal label ``"<unknown>"``).
unseen tag                  Multi-hot mode: the ``<other>`` column (also the literal tag
                            ``"<other>"``). Hashed mode: its CRC-32 bucket, like any tag.
user absent from a platform ``known.<platform>`` = 0 and all of that platform's columns 0 (the
                            fitted mean for numerics; categorical blocks all zero, *not*
                            ``<unknown>``, so "absent" differs from "present, unknown label").
user absent from both       Cold start: intercept 1, everything else 0.
platform withheld (consent) Exactly "absent from that platform": the engine leaves the platform
                            out before fusion (:func:`bandit_engine.profiles.withhold`); the
                            name ``consent`` is reserved for the consent record.
future timestamp            Elapsed time 0 (then log / standardize as usual).
wrong type                  :class:`~bandit_engine.errors.ValidationError` naming
                            ``<platform>.<field>`` and the value (and the row, in batch): bool
                            or str (even ``"12.5"``) or inf for a number; a non-integral
                            float or a bool for a category; a bare str for tags without
                            ``sep``; unparsable or out-of-range timestamps; a negative value
                            with ``log=True``; anything but bool / 0 / 1 for a flag.
unknown column / key        ``ValidationError`` naming ``<platform>.<column>`` (pass
                            ``ignore_extra=True`` to skip); an unknown platform likewise.
=========================== ==================================================================

Value rules. Categories are ``str``; integers (and integral floats, as pandas stores integer
columns with missing values as float) are accepted and written in decimal (``3`` -> ``"3"``).
Tags are a list / tuple / set / 1-d array of non-empty ``str``, or a ``str`` split on ``sep``
(pieces stripped, empties dropped). Timestamps are ``pd.Timestamp``, ``datetime``,
``np.datetime64``, ISO 8601 strings (``datetime.fromisoformat``) or epoch seconds; naive times
are UTC, aware ones are converted; resolution is one microsecond. Recency is
``max(now - t, 0)`` in ``unit``, then optional ``log1p``, then standardized.

``now``: :meth:`ProfileSchema.fit` uses the latest timestamp in the tables (never the wall
clock) unless given; it is stored as :attr:`FeatureMap.reference_time` and is the default at
transform time, which is deterministic but stale for serving: pass ``now=time.time()`` there.

Batch and serving agree bit for bit (``np.array_equal``): both paths validate values with the
same scalar rules, apply the same float64 arithmetic in the same order, and use numpy's
``log1p`` for both (libm's can differ in the last bit). Batch rows are the union of users over
the tables in first-seen order (first declared platform's table order, then new users of the
next). :meth:`FeatureMap.profiles` yields the per-user dicts in the same order.

Standardization uses the population std over observed values; a std of 0 (or no observed values)
becomes 1. Hashing uses ``zlib.crc32(tag.encode("utf-8")) % hash_buckets``, which is stable
across processes (Python's ``hash`` is salted per process).

Reusable layer (for catalogs: deals, courses). :func:`fit_block` fits a
list of specs on one table into a :class:`FittedBlock` with ``.width``, ``.names``,
``.encode_one(row, out=None, offset=0, *, now=None) -> (width,)``,
``.encode_frame(df, *, now=None) -> (n, width)``, ``.records(df)`` and ``to_dict`` /
``from_dict``: no known flags, no intercept, and undeclared columns ignored by default
(``ignore_extra=True``), unlike :class:`ProfileSchema` / :class:`FeatureMap`, which are strict.

Limitations: dicts may omit fields (missing) but tables must have every declared column;
object-dtype columns are validated element by element in Python (typed numeric, bool and
datetime64 columns are vectorized); keys that compare equal across types (``1``, ``1.0``,
``True``) are the same user in batch.
"""

from __future__ import annotations

from ._values import tag_bucket
from .behaviour import Behaviour, BehaviourStore
from .block import FittedBlock, fit_block
from .schema import FeatureMap, ProfileSchema
from .specs import Boolean, Categorical, FieldSpec, Numeric, Recency, Tags, spec_from_dict

__all__ = [
    "Behaviour",
    "BehaviourStore",
    "Boolean",
    "Categorical",
    "FeatureMap",
    "FieldSpec",
    "FittedBlock",
    "Numeric",
    "ProfileSchema",
    "Recency",
    "Tags",
    "fit_block",
    "spec_from_dict",
    "tag_bucket",
]
