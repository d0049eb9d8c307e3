"""Tests for bandit_engine.features: profile fusion into context vectors.

The example tables are synthetic (made up here) with the columns the simulator uses.
Expected numbers are recomputed in the test from the documented formulas, never pasted.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bandit_engine.errors import ConfigError, ValidationError
from bandit_engine.features import (
    Boolean,
    Categorical,
    FeatureMap,
    FittedBlock,
    Numeric,
    ProfileSchema,
    Recency,
    Tags,
    fit_block,
    fit_fields,
    spec_from_dict,
    tag_bucket,
)

DAY = 86400.0
T0 = dt.datetime(2024, 3, 1, tzinfo=dt.UTC).timestamp()  # the latest timestamp in the tables
TZ8 = dt.timezone(dt.timedelta(hours=8))


def knowledge_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3", "u4", "u5"],
            "age_band": ["18-24", "25-34", "25-34", "45+", None],
            "membership": ["basic", "none", "premium", "none", "none"],
            "topics": [["python", "finance"], ["cooking"], [], None, ["python", "history"]],
            "courses_bought": [1, 0, 4, 2, 3],
            "spend_knowledge": [10.0, 0.0, 250.0, np.nan, 35.5],
            "last_course_at": pd.to_datetime(
                ["2024-01-01", "2024-02-15", None, "2023-11-30", "2024-03-01"]
            ),
        }
    )


def groupbuy_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["u2", "u6", "u1"],
            "city": ["shanghai", "beijing", "shanghai"],
            "cuisines": [["hotpot"], ["bbq", "sushi"], None],
            "avg_ticket": [55.0, 80.0, 120.0],
            "orders_90d": [3, 10, 0],
            "coupon_rate": [0.5, 0.1, np.nan],
            "last_order_at": ["2024-02-20T12:00:00+08:00", "2024-02-29T00:00:00", None],
        }
    )


def tables() -> dict[str, pd.DataFrame]:
    return {"knowledge": knowledge_table(), "groupbuy": groupbuy_table()}


def make_schema(**kwargs: Any) -> ProfileSchema:
    return ProfileSchema(
        {
            "knowledge": [
                Categorical("age_band"),
                Categorical("membership"),
                Tags("topics"),
                Numeric("courses_bought"),
                Numeric("spend_knowledge", log=True, missing_indicator=True),
                Recency("last_course_at"),
            ],
            "groupbuy": [
                Categorical("city"),
                Tags("cuisines"),
                Numeric("avg_ticket"),
                Numeric("orders_90d", log=True),
                Numeric("coupon_rate", missing_indicator=True),
                Recency("last_order_at", unit="hours", log=False),
            ],
        },
        **kwargs,
    )


@pytest.fixture(scope="module")
def fmap() -> FeatureMap:
    return make_schema().fit(tables())


def col(fm: FeatureMap, name: str) -> int:
    return fm.feature_names.index(name)


def batch_equals_one(fm: FeatureMap, data: dict[str, pd.DataFrame], now: float | None) -> None:
    X, keys = fm.transform_array(data, now=now)
    rows = dict(fm.profiles(data))
    assert list(rows) == keys
    for i, k in enumerate(keys):
        x = fm.transform_one(rows[k], now=now)
        assert np.array_equal(x, X[i]), (k, fm.feature_names, x - X[i])


# ----------------------------------------------------------------------------- specs


@pytest.mark.parametrize(
    ("make", "field", "value"),
    [
        (lambda: Numeric("1bad"), "name", "1bad"),
        (lambda: Numeric("x", log=1), "x.log", 1),
        (lambda: Categorical("c", max_categories=0), "c.max_categories", 0),
        (lambda: Categorical("c", min_count=True), "c.min_count", True),
        (lambda: Tags("t", hash_buckets=0), "t.hash_buckets", 0),
        (lambda: Tags("t", sep=""), "t.sep", ""),
        (lambda: Recency("r", unit="fortnights"), "r.unit", "fortnights"),
        (lambda: Boolean("b", missing_indicator="yes"), "b.missing_indicator", "yes"),
    ],
)
def test_spec_validation_names_field_and_value(make: Any, field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        make()
    assert info.value.field == field
    assert field in str(info.value) and repr(value) in str(info.value)


def test_spec_json_round_trip() -> None:
    specs = [
        Numeric("a", log=True, missing_indicator=True),
        Categorical("b", max_categories=3, min_count=2),
        Tags("c", max_vocabulary=5, hash_buckets=7, sep="|"),
        Recency("d", unit="weeks", log=False, missing_indicator=False),
        Boolean("e", missing_indicator=True),
    ]
    for spec in specs:
        assert spec_from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


@pytest.mark.parametrize(
    "data",
    [
        {"kind": "numeric"},
        {"kind": "nope", "name": "a"},
        {"kind": "numeric", "name": "a", "colour": "red"},
        {"kind": "categorical", "name": "a", "max_categories": -1},
        ["numeric", "a"],
    ],
)
def test_spec_from_dict_rejects_malformed(data: Any) -> None:
    with pytest.raises(ValidationError):
        spec_from_dict(data)


@pytest.mark.parametrize(
    ("platforms", "field"),
    [
        ({}, "platforms"),
        ({"knowledge": []}, "knowledge"),
        ({"knowledge": [Numeric("a"), Categorical("a")]}, "knowledge.a"),
        ({"know-ledge": [Numeric("a")]}, "platform"),
        ({"known": [Numeric("a")]}, "platform"),
        ({"knowledge": [Numeric("user_id")]}, "knowledge.user_id"),
        ({"knowledge": ["age"]}, "knowledge[0]"),
        ({"knowledge": "age"}, "knowledge"),
    ],
)
def test_schema_validation(platforms: Any, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        ProfileSchema(platforms)
    assert info.value.field == field


def test_schema_json_round_trip() -> None:
    schema = make_schema(key="uid", intercept=False)
    again = ProfileSchema.from_dict(json.loads(json.dumps(schema.to_dict())))
    assert again == schema and again.key == "uid" and again.intercept is False
    with pytest.raises(ValidationError):
        ProfileSchema.from_dict({**schema.to_dict(), "key": ""})


# ----------------------------------------------------------------------------- layout


def test_layout_and_names(fmap: FeatureMap) -> None:
    names = fmap.feature_names
    assert names[:3] == ["intercept", "known.knowledge", "known.groupbuy"]
    assert fmap.n_features == len(names) == len(set(names))
    # most frequent first, ties broken by label
    assert names[3:7] == [
        "knowledge.age_band=25-34",
        "knowledge.age_band=18-24",
        "knowledge.age_band=45+",
        "knowledge.age_band=<unknown>",
    ]
    assert names.index("knowledge.topics=python") < names.index("knowledge.topics=cooking")
    for name in (
        "knowledge.topics=<other>",
        "knowledge.spend_knowledge=<missing>",
        "knowledge.last_course_at=<missing>",
        "groupbuy.city=<unknown>",
        "groupbuy.avg_ticket",
    ):
        assert name in names
    # platform blocks follow declaration order
    assert col(fmap, "knowledge.last_course_at") < col(fmap, "groupbuy.city=beijing")


def test_no_intercept() -> None:
    fm = make_schema(intercept=False).fit(tables())
    assert fm.feature_names[:2] == ["known.knowledge", "known.groupbuy"]
    assert np.array_equal(fm.transform_one({}), np.zeros(fm.n_features))


def test_cold_start_and_absent_platform(fmap: FeatureMap) -> None:
    cold = fmap.transform_one({})
    expected = np.zeros(fmap.n_features)
    expected[0] = 1.0
    assert np.array_equal(cold, expected)
    assert np.array_equal(fmap.transform_one({"knowledge": None, "groupbuy": None}), expected)

    only_gb = fmap.transform_one({"groupbuy": {"city": "beijing", "avg_ticket": 80.0}})
    assert only_gb[col(fmap, "known.groupbuy")] == 1.0
    assert only_gb[col(fmap, "known.knowledge")] == 0.0
    kn_cols = [i for i, n in enumerate(fmap.feature_names) if n.startswith("knowledge.")]
    assert not only_gb[kn_cols].any()
    # absent differs from present-with-unknown-label: only the latter sets <unknown>
    present = fmap.transform_one({"knowledge": {}})
    assert present[col(fmap, "knowledge.age_band=<unknown>")] == 1.0
    assert only_gb[col(fmap, "knowledge.age_band=<unknown>")] == 0.0


# ----------------------------------------------------------------------------- numeric


def test_numeric_standardized_with_fitted_stats(fmap: FeatureMap) -> None:
    ticket = groupbuy_table()["avg_ticket"].to_numpy()
    mean, std = ticket.mean(), ticket.std()
    x = fmap.transform_one({"groupbuy": {"avg_ticket": 100.0}})
    assert x[col(fmap, "groupbuy.avg_ticket")] == pytest.approx((100.0 - mean) / std, rel=1e-12)

    spend = knowledge_table()["spend_knowledge"].dropna().to_numpy()
    lmean, lstd = np.log1p(spend).mean(), np.log1p(spend).std()
    x = fmap.transform_one({"knowledge": {"spend_knowledge": 99}})
    assert x[col(fmap, "knowledge.spend_knowledge")] == pytest.approx(
        (math.log1p(99) - lmean) / lstd, rel=1e-12
    )
    assert x[col(fmap, "knowledge.spend_knowledge=<missing>")] == 0.0


def test_numeric_missing_is_mean_plus_indicator(fmap: FeatureMap) -> None:
    for missing in (None, float("nan"), np.nan, pd.NA):
        x = fmap.transform_one({"knowledge": {"spend_knowledge": missing}})
        assert x[col(fmap, "knowledge.spend_knowledge")] == 0.0
        assert x[col(fmap, "knowledge.spend_knowledge=<missing>")] == 1.0
    # a field left out of the dict is missing too
    x = fmap.transform_one({"knowledge": {"membership": "basic"}})
    assert x[col(fmap, "knowledge.spend_knowledge=<missing>")] == 1.0


def test_numeric_constant_column_has_std_one() -> None:
    df = pd.DataFrame({"user_id": [1, 2, 3], "n": [5.0, 5.0, 5.0]})
    fm = ProfileSchema({"p": [Numeric("n")]}).fit({"p": df})
    assert fm.transform_one({"p": {"n": 7.0}})[col(fm, "p.n")] == 2.0


@pytest.mark.parametrize("bad", [True, np.bool_(False), "12.5", float("inf"), -np.inf, [1.0]])
def test_numeric_wrong_type_names_field_and_value(fmap: FeatureMap, bad: Any) -> None:
    with pytest.raises(ValidationError) as info:
        fmap.transform_one({"groupbuy": {"avg_ticket": bad}})
    assert info.value.field == "groupbuy.avg_ticket"
    assert "groupbuy.avg_ticket" in str(info.value) and repr(bad) in str(info.value)


def test_numeric_log_rejects_negative(fmap: FeatureMap) -> None:
    with pytest.raises(ValidationError, match=r"groupbuy\.orders_90d .*-2"):
        fmap.transform_one({"groupbuy": {"orders_90d": -2}})
    bad = groupbuy_table()
    bad.loc[1, "orders_90d"] = -3
    with pytest.raises(ValidationError, match=r"groupbuy\.orders_90d.*-3.*user_id='u6'"):
        make_schema().fit({"groupbuy": bad})


# ----------------------------------------------------------------------------- categorical


def test_categorical_unknown_bucket(fmap: FeatureMap) -> None:
    unknown = col(fmap, "groupbuy.city=<unknown>")
    for value in ("chengdu", None, np.nan, "<unknown>"):
        x = fmap.transform_one({"groupbuy": {"city": value}})
        assert x[unknown] == 1.0
        assert x[col(fmap, "groupbuy.city=shanghai")] == 0.0
    x = fmap.transform_one({"groupbuy": {"city": "shanghai"}})
    assert x[col(fmap, "groupbuy.city=shanghai")] == 1.0 and x[unknown] == 0.0


def test_categorical_min_count_and_max_categories() -> None:
    df = pd.DataFrame({"user_id": range(6), "c": ["a", "a", "a", "b", "b", "z"]})
    fm = ProfileSchema({"p": [Categorical("c", min_count=2)]}).fit({"p": df})
    assert fm.feature_names[2:] == ["p.c=a", "p.c=b", "p.c=<unknown>"]
    assert fm.transform_one({"p": {"c": "z"}})[col(fm, "p.c=<unknown>")] == 1.0
    fm = ProfileSchema({"p": [Categorical("c", max_categories=1)]}).fit({"p": df})
    assert fm.feature_names[2:] == ["p.c=a", "p.c=<unknown>"]


def test_categorical_integers_are_labels() -> None:
    df = pd.DataFrame({"user_id": [1, 2, 3], "tier": [1, 2, None]})  # float64 column
    fm = ProfileSchema({"p": [Categorical("tier")]}).fit({"p": df})
    assert fm.feature_names[2:] == ["p.tier=1", "p.tier=2", "p.tier=<unknown>"]
    for value in (2, np.int64(2), 2.0, "2"):
        assert fm.transform_one({"p": {"tier": value}})[col(fm, "p.tier=2")] == 1.0
    for bad in (2.5, True):
        with pytest.raises(ValidationError, match=r"p\.tier"):
            fm.transform_one({"p": {"tier": bad}})


# ----------------------------------------------------------------------------- tags


def test_tags_multi_hot_with_other(fmap: FeatureMap) -> None:
    x = fmap.transform_one({"knowledge": {"topics": ["python", "design", "python"]}})
    assert x[col(fmap, "knowledge.topics=python")] == 1.0
    assert x[col(fmap, "knowledge.topics=<other>")] == 1.0
    assert x[col(fmap, "knowledge.topics=finance")] == 0.0
    block = [i for i, n in enumerate(fmap.feature_names) if n.startswith("knowledge.topics")]
    for empty in ([], (), None, np.array([], dtype=object), set()):
        assert not fmap.transform_one({"knowledge": {"topics": empty}})[block].any()


def test_tags_types_and_separator() -> None:
    df = pd.DataFrame({"user_id": [1, 2], "t": ["a|b", " b | c |"]})
    fm = ProfileSchema({"p": [Tags("t", sep="|")]}).fit({"p": df})
    assert fm.feature_names[2:] == ["p.t=b", "p.t=a", "p.t=c", "p.t=<other>"]
    x = fm.transform_one({"p": {"t": "c|zz"}})
    assert x[col(fm, "p.t=c")] == 1.0 and x[col(fm, "p.t=<other>")] == 1.0
    strict = ProfileSchema({"p": [Tags("t")]}).fit(
        {"p": pd.DataFrame({"user_id": [1], "t": [["a"]]})}
    )
    with pytest.raises(ValidationError, match=r"p\.t .*sep"):
        strict.transform_one({"p": {"t": "a"}})
    with pytest.raises(ValidationError, match=r"p\.t .*3"):
        strict.transform_one({"p": {"t": ["a", 3]}})


def _crc32(data: bytes) -> int:
    # bitwise CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), independent of zlib
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_tag_hash_is_documented_crc32() -> None:
    # CRC-32("python") = 0xA4D64BB8 = 2765404344, and 2765404344 % 32 == 24
    assert _crc32(b"python") == 2765404344
    assert tag_bucket("python", 32) == 24
    for tag in ("finance", "火锅", "a b"):
        assert tag_bucket(tag, 32) == _crc32(tag.encode("utf-8")) % 32


def test_tag_hash_stable_across_processes() -> None:
    code = "from bandit_engine.features import tag_bucket; print(tag_bucket('python', 32))"
    seen = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        seen.add(int(out.stdout))
    assert seen == {24}


def test_tags_hashed_when_vocabulary_is_large() -> None:
    df = pd.DataFrame({"user_id": [1, 2], "t": [["a", "b", "c"], ["d"]]})
    fm = ProfileSchema({"p": [Tags("t", max_vocabulary=3, hash_buckets=8)]}).fit({"p": df})
    assert fm.feature_names[2:] == [f"p.t#{b}" for b in range(8)]
    x = fm.transform_one({"p": {"t": ["python", "never-seen"]}})
    expected = np.zeros(8)
    expected[_crc32(b"python") % 8] = 1.0
    expected[_crc32(b"never-seen") % 8] = 1.0
    assert np.array_equal(x[2:], expected)


# ----------------------------------------------------------------------------- recency


def test_recency_reference_time_is_latest_timestamp(fmap: FeatureMap) -> None:
    assert fmap.reference_time == T0
    # explicit now overrides
    fm = make_schema().fit(tables(), now=T0 + 10 * DAY)
    assert fm.reference_time == T0 + 10 * DAY


def test_recency_elapsed_units_and_timezones(fmap: FeatureMap) -> None:
    times = knowledge_table()["last_course_at"].dropna()
    elapsed = np.log1p([(T0 - t.timestamp()) / DAY for t in times])
    mean, std = elapsed.mean(), elapsed.std()
    i = col(fmap, "knowledge.last_course_at")
    now = T0 + 5 * DAY
    ten_days_before = now - 10 * DAY
    expected = (math.log1p(10.0) - mean) / std
    naive = dt.datetime.fromtimestamp(ten_days_before, dt.UTC).replace(tzinfo=None)
    same_instant = [
        ten_days_before,
        int(ten_days_before),
        naive,  # naive = UTC
        naive.replace(tzinfo=dt.UTC).astimezone(TZ8),
        pd.Timestamp(naive),
        np.datetime64(naive),
        naive.isoformat(),
        naive.replace(tzinfo=dt.UTC).astimezone(TZ8).isoformat(),
    ]
    for value in same_instant:
        x = fmap.transform_one({"knowledge": {"last_course_at": value}}, now=now)
        assert x[i] == pytest.approx(expected, rel=1e-12), value
    # hours, no log
    j = col(fmap, "groupbuy.last_order_at")
    gb = pd.to_datetime(groupbuy_table()["last_order_at"].dropna(), utc=True, format="ISO8601")
    hours = np.array([(T0 - t.timestamp()) / 3600.0 for t in gb])
    x = fmap.transform_one({"groupbuy": {"last_order_at": T0 - 7200.0}})
    assert x[j] == pytest.approx((2.0 - hours.mean()) / hours.std(), rel=1e-12)


def test_recency_future_and_missing(fmap: FeatureMap) -> None:
    i = col(fmap, "knowledge.last_course_at")
    future = fmap.transform_one({"knowledge": {"last_course_at": T0 + 99 * DAY}}, now=T0)
    at_now = fmap.transform_one({"knowledge": {"last_course_at": T0}}, now=T0)
    assert future[i] == at_now[i]
    missing = fmap.transform_one({"knowledge": {"last_course_at": None}})
    assert missing[i] == 0.0 and missing[col(fmap, "knowledge.last_course_at=<missing>")] == 1.0


@pytest.mark.parametrize("bad", ["yesterday", True, float("inf"), 1e13, {"t": 1}])
def test_recency_wrong_type(fmap: FeatureMap, bad: Any) -> None:
    with pytest.raises(ValidationError) as info:
        fmap.transform_one({"knowledge": {"last_course_at": bad}})
    assert info.value.field == "knowledge.last_course_at" and repr(bad) in str(info.value)


def test_now_validation_and_requirement() -> None:
    df = pd.DataFrame({"user_id": [1], "t": [None]})
    fm = ProfileSchema({"p": [Recency("t")]}).fit({"p": df})
    assert fm.reference_time is None
    with pytest.raises(ValidationError, match="now"):
        fm.transform_one({"p": {"t": 1.7e9}})
    assert fm.transform_one({"p": {"t": 1.7e9}}, now=1.7e9)[col(fm, "p.t=<missing>")] == 0.0
    for bad in (float("nan"), True, "2024-01-01"):
        with pytest.raises(ValidationError, match="now"):
            fm.transform_one({}, now=bad)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- boolean


def test_boolean() -> None:
    df = pd.DataFrame({"user_id": [1, 2, 3], "vip": [True, False, None]})
    fm = ProfileSchema({"p": [Boolean("vip", missing_indicator=True)]}).fit({"p": df})
    assert fm.feature_names[2:] == ["p.vip", "p.vip=<missing>"]
    for value, expected in ((True, [1, 0]), (0, [0, 0]), (1.0, [1, 0]), (None, [0, 1])):
        assert fm.transform_one({"p": {"vip": value}})[2:].tolist() == expected
    with pytest.raises(ValidationError, match=r"p\.vip .*'yes'"):
        fm.transform_one({"p": {"vip": "yes"}})
    batch_equals_one(fm, {"p": df}, None)


# ----------------------------------------------------------------------------- profile errors


def test_unknown_platform_and_field(fmap: FeatureMap) -> None:
    with pytest.raises(ValidationError) as info:
        fmap.transform_one({"shop": {"a": 1}})
    assert info.value.field == "shop"
    with pytest.raises(ValidationError) as info:
        fmap.transform_one({"groupbuy": {"avg_tiket": 12.5}})
    assert info.value.field == "groupbuy.avg_tiket" and "12.5" in str(info.value)
    # the key column is ignored; ignore_extra skips unknown keys
    with_key = fmap.transform_one({"groupbuy": {"user_id": "u2", "avg_ticket": 12.5}})
    loose = fmap.transform_one(
        {"groupbuy": {"avg_tiket": 1, "avg_ticket": 12.5}}, ignore_extra=True
    )
    assert np.array_equal(with_key, loose)
    with pytest.raises(ValidationError, match="groupbuy"):
        fmap.transform_one({"groupbuy": [("avg_ticket", 1.0)]})  # type: ignore[dict-item]


def test_out_parameter(fmap: FeatureMap) -> None:
    out = np.full(fmap.n_features, 7.0)
    res = fmap.transform_one({"groupbuy": {"city": "beijing"}}, out=out)
    assert res is out
    assert np.array_equal(out, fmap.transform_one({"groupbuy": {"city": "beijing"}}))
    with pytest.raises(ValidationError, match="out"):
        fmap.transform_one({}, out=np.zeros(fmap.n_features + 1))
    with pytest.raises(ValidationError, match="out"):
        fmap.transform_one({}, out=np.zeros(fmap.n_features, dtype=np.float32))


# ----------------------------------------------------------------------------- batch


def test_batch_matches_one_and_user_order(fmap: FeatureMap) -> None:
    df = fmap.transform(tables())
    assert df.index.name == "user_id"
    assert list(df.index) == ["u1", "u2", "u3", "u4", "u5", "u6"]  # first-seen order
    assert list(df.columns) == fmap.feature_names
    assert df.loc["u6", "known.knowledge"] == 0.0 and df.loc["u3", "known.groupbuy"] == 0.0
    batch_equals_one(fmap, tables(), None)
    batch_equals_one(fmap, tables(), T0 + 3.5 * DAY)


def test_batch_absent_and_empty_tables(fmap: FeatureMap) -> None:
    only_gb = fmap.transform({"groupbuy": groupbuy_table()})
    assert list(only_gb.index) == ["u2", "u6", "u1"]
    assert not only_gb["known.knowledge"].any()
    empty = fmap.transform({"knowledge": pd.DataFrame(), "groupbuy": None})
    assert empty.shape == (0, fmap.n_features)
    # fitting with a platform absent still gives a valid map
    fm = make_schema().fit({"knowledge": knowledge_table()})
    x = fm.transform_one({"groupbuy": {"city": "x", "avg_ticket": 3.0}})
    assert x[col(fm, "groupbuy.city=<unknown>")] == 1.0
    assert x[col(fm, "groupbuy.avg_ticket")] == 3.0  # no data: mean 0, std 1


def test_batch_errors() -> None:
    fm = make_schema().fit(tables())
    extra = knowledge_table().assign(email="a@b")
    with pytest.raises(ValidationError) as info:
        fm.transform({"knowledge": extra})
    assert info.value.field == "knowledge.email"
    assert fm.transform({"knowledge": extra}, ignore_extra=True).shape[0] == 5
    with pytest.raises(ValidationError, match=r"knowledge\.email"):
        make_schema().fit({"knowledge": extra})
    with pytest.raises(ValidationError, match=r"knowledge\.topics.*declared"):
        fm.transform({"knowledge": knowledge_table().drop(columns="topics")})
    with pytest.raises(ValidationError, match="shop"):
        fm.transform({"shop": knowledge_table()})
    dup = pd.concat([groupbuy_table(), groupbuy_table().iloc[:1]])
    with pytest.raises(ValidationError, match=r"groupbuy\.user_id .*unique.*'u2'"):
        fm.transform({"groupbuy": dup})
    with pytest.raises(ValidationError, match=r"groupbuy\.user_id .*missing"):
        fm.transform({"groupbuy": groupbuy_table().assign(user_id=["a", None, "c"])})
    with pytest.raises(ValidationError, match="user_id"):
        fm.transform({"groupbuy": groupbuy_table().drop(columns="user_id")})
    bad = groupbuy_table()
    bad["avg_ticket"] = ["55", 80.0, 120.0]
    with pytest.raises(ValidationError) as info:
        fm.transform({"groupbuy": bad})
    assert info.value.field == "groupbuy.avg_ticket" and "'55'" in str(info.value)
    assert "user_id='u2'" in str(info.value)
    bad = groupbuy_table().assign(city=[1.5, "x", "y"])
    with pytest.raises(ValidationError, match=r"groupbuy\.city .*1\.5.*'u2'"):
        fm.transform({"groupbuy": bad})
    bad = groupbuy_table().assign(avg_ticket=[1.0, np.inf, 2.0])
    with pytest.raises(ValidationError, match=r"groupbuy\.avg_ticket .*inf.*'u6'"):
        fm.transform({"groupbuy": bad})
    bad = groupbuy_table().assign(orders_90d=[True, False, True])
    with pytest.raises(ValidationError, match=r"groupbuy\.orders_90d .*bool"):
        fm.transform({"groupbuy": bad})
    with pytest.raises(ValidationError, match="DataFrame"):
        fm.transform({"groupbuy": groupbuy_table().to_dict()})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"shop": knowledge_table()}, "shop"),
        (
            {"groupbuy": pd.concat([groupbuy_table(), groupbuy_table().iloc[:1]])},
            "groupbuy.user_id",
        ),
        ({"knowledge": knowledge_table().drop(columns="membership")}, "knowledge.membership"),
        ({"knowledge": knowledge_table().assign(topics="python")}, "knowledge.topics"),
        (
            {"groupbuy": groupbuy_table().assign(last_order_at=["soon", None, None])},
            "groupbuy.last_order_at",
        ),
    ],
)
def test_fit_errors_name_the_field(data: dict[str, pd.DataFrame], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        make_schema().fit(data)
    assert info.value.field == field


def test_fit_on_empty_tables() -> None:
    empty = {"knowledge": knowledge_table().iloc[:0], "groupbuy": pd.DataFrame()}
    fm = make_schema().fit(empty)
    assert fm.reference_time is None
    with pytest.raises(ValidationError, match="now"):
        fm.transform_one({})
    x = fm.transform_one({"knowledge": {"courses_bought": 2, "age_band": "45+"}}, now=T0)
    assert x[col(fm, "knowledge.courses_bought")] == 2.0  # no data: mean 0, std 1
    assert x[col(fm, "knowledge.age_band=<unknown>")] == 1.0
    with pytest.raises(ValidationError, match="tables"):
        make_schema().fit([knowledge_table()])  # type: ignore[arg-type]


def test_batch_typed_columns_match_one() -> None:
    """Nullable, categorical, str and tz-aware dtypes take vectorized paths; they must agree."""
    df = pd.DataFrame(
        {
            "user_id": pd.array([10, 11, 12], dtype="Int64"),
            "n": pd.array([1, None, 3], dtype="Int64"),
            "c": pd.Series(["x", None, "y"], dtype="category"),
            "s": pd.Series(["a", "b", None], dtype="string"),
            "t": pd.to_datetime(["2024-01-01T05:00", None, "2024-01-03T00:00"]).tz_localize(TZ8),
            "b": pd.array([True, None, False], dtype="boolean"),
        }
    )
    specs = [Numeric("n"), Categorical("c"), Categorical("s"), Recency("t"), Boolean("b")]
    fm = ProfileSchema({"p": specs}).fit({"p": df})
    batch_equals_one(fm, {"p": df}, None)


def test_profiles_are_json_native(fmap: FeatureMap) -> None:
    profiles = dict(fmap.profiles(tables()))
    assert json.loads(json.dumps(profiles)) == profiles
    assert profiles["u6"]["knowledge"] is None
    assert profiles["u1"]["groupbuy"] == {
        "city": "shanghai",
        "cuisines": [],
        "avg_ticket": 120.0,
        "orders_90d": 0.0,
        "coupon_rate": None,
        "last_order_at": None,
    }


# ----------------------------------------------------------------------------- persistence


def test_feature_map_json_round_trip(fmap: FeatureMap) -> None:
    data = fmap.to_dict()
    text = json.dumps(data, allow_nan=False)  # only plain JSON types, no NaN
    again = FeatureMap.from_dict(json.loads(text))
    assert again.feature_names == fmap.feature_names
    assert again.reference_time == fmap.reference_time
    assert again.schema == fmap.schema
    assert np.array_equal(again.transform(tables()).to_numpy(), fmap.transform(tables()).to_numpy())
    probe = {"knowledge": {"topics": ["design"], "spend_knowledge": 3.0}, "groupbuy": {}}
    assert np.array_equal(again.transform_one(probe), fmap.transform_one(probe))


def _corrupt(data: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    clone = json.loads(json.dumps(data))
    target = clone
    for p in path[:-1]:
        target = target[p]
    target[path[-1]] = value
    return clone  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (["format"], "other/9"),
        (["key"], 3),
        (["intercept"], "yes"),
        (["reference_time"], "soon"),
        (["platforms"], []),
        (["platforms", 0, "name"], "groupbuy"),
        (["platforms", 0, "name"], "known"),
        (["platforms", 0, "fields", 0, "state", "categories"], ["a", "a"]),
        (["platforms", 0, "fields", 0, "state", "categories"], ["<unknown>"]),
        (["platforms", 0, "fields", 3, "state", "std"], 0.0),
        (["platforms", 0, "fields", 3, "state", "mean"], None),
        (["platforms", 0, "fields", 2, "state", "hashed"], 1),
        (["platforms", 0, "fields", 0, "spec", "kind"], "vector"),
        (["platforms", 0, "fields", 0, "spec", "max_categories"], 0),
        (["platforms", 0, "fields", 0], {"spec": {}}),
        (
            ["platforms", 0, "fields"],
            [
                {
                    "spec": {
                        "kind": "numeric",
                        "name": "user_id",
                        "log": False,
                        "missing_indicator": False,
                    },
                    "state": {"mean": 0.0, "std": 1.0},
                }
            ],
        ),
    ],
)
def test_feature_map_from_dict_rejects_corruption(
    fmap: FeatureMap, path: list[Any], value: Any
) -> None:
    with pytest.raises(ValidationError):
        FeatureMap.from_dict(_corrupt(fmap.to_dict(), path, value))


def test_from_dict_rejects_non_dict() -> None:
    for bad in (None, [], "x", {"format": "bandit_engine.features/1"}):
        with pytest.raises(ValidationError):
            FeatureMap.from_dict(bad)


# ----------------------------------------------------------------------------- reusable block


def test_fitted_block_for_catalogs() -> None:
    deals = pd.DataFrame(
        {
            "deal_id": ["d1", "d2", "d3"],
            "title": ["A", "B", "C"],
            "cuisine": ["hotpot", "bbq", "hotpot"],
            "price": [88.0, 120.0, 60.0],
        }
    )
    block = fit_block(
        [Categorical("cuisine"), Numeric("price")], deals, prefix="deal", key="deal_id"
    )
    assert fit_fields is fit_block
    assert block.names == [
        "deal.cuisine=hotpot",
        "deal.cuisine=bbq",
        "deal.cuisine=<unknown>",
        "deal.price",
    ]
    assert block.width == 4
    Z = block.encode_frame(deals)  # extra columns (title) are ignored by default
    for i, row in enumerate(deals.to_dict("records")):
        assert np.array_equal(block.encode_one(row), Z[i])
    buf = np.full(10, 5.0)
    block.encode_one(deals.iloc[1].to_dict(), buf, 3)
    assert np.array_equal(buf[3:7], Z[1]) and buf[2] == 5.0 and buf[7] == 5.0
    with pytest.raises(ValidationError, match=r"deal\.title"):
        block.encode_frame(deals, ignore_extra=False)
    again = FittedBlock.from_dict(json.loads(json.dumps(block.to_dict())))
    assert np.array_equal(again.encode_frame(deals), Z)
    assert block.records(deals)[0] == {"cuisine": "hotpot", "price": 88.0}


# ----------------------------------------------------------------------------- hypothesis

_WORDS = ["python", "finance", "cooking", "history", "design", "zz"]
_INSTANTS = st.datetimes(
    min_value=dt.datetime(2023, 1, 1),
    max_value=dt.datetime(2024, 6, 1),
    timezones=st.sampled_from([None, dt.UTC, TZ8]),
)


def _timestamp() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        _INSTANTS,
        _INSTANTS.map(lambda d: d.isoformat()),
        _INSTANTS.map(pd.Timestamp),
        st.floats(1.67e9, 1.72e9),
        st.integers(1_670_000_000, 1_720_000_000),
    )


def _number(nonneg: bool) -> st.SearchStrategy[Any]:
    low = 0 if nonneg else -1000
    return st.one_of(
        st.none(),
        st.just(float("nan")),
        st.integers(low, 1000),
        st.floats(float(low), 1e6, allow_nan=False),
    )


_FIELDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "knowledge": {
        "age_band": st.one_of(st.none(), st.sampled_from(["18-24", "25-34", "35-44", "45+", "x"])),
        "membership": st.one_of(st.none(), st.sampled_from(["none", "basic"]), st.integers(0, 2)),
        "topics": st.one_of(st.none(), st.lists(st.sampled_from(_WORDS), max_size=4)),
        "courses_bought": _number(True),
        "spend_knowledge": _number(True),
        "last_course_at": _timestamp(),
        "vip": st.one_of(st.none(), st.booleans()),
    },
    "groupbuy": {
        "city": st.one_of(st.none(), st.sampled_from(["sh", "bj", "gz"])),
        "cuisines": st.one_of(st.none(), st.frozensets(st.sampled_from(_WORDS), max_size=3)),
        "avg_ticket": _number(False),
        "coupon_rate": st.one_of(st.none(), st.floats(0.0, 1.0)),
        "last_order_at": _timestamp(),
    },
}
_HYPO_SCHEMA = ProfileSchema(
    {
        "knowledge": [
            Categorical("age_band", min_count=2),
            Categorical("membership", max_categories=2),
            Tags("topics", max_vocabulary=4, hash_buckets=5),
            Numeric("courses_bought", log=True),
            Numeric("spend_knowledge", log=True, missing_indicator=True),
            Recency("last_course_at"),
            Boolean("vip", missing_indicator=True),
        ],
        "groupbuy": [
            Categorical("city"),
            Tags("cuisines"),
            Numeric("avg_ticket", missing_indicator=True),
            Numeric("coupon_rate"),
            Recency("last_order_at", unit="hours", log=False),
        ],
    }
)


@st.composite
def _population(draw: st.DrawFn) -> dict[str, list[dict[str, Any]]]:
    n = draw(st.integers(1, 8))
    out: dict[str, list[dict[str, Any]]] = {}
    for platform, fields in _FIELDS.items():
        present = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        out[platform] = [
            {"user_id": f"u{i}", **{f: draw(s) for f, s in fields.items()}}
            for i in range(n)
            if present[i]
        ]
    return out


def _frames(pop: dict[str, list[dict[str, Any]]]) -> dict[str, pd.DataFrame]:
    return {p: pd.DataFrame(rows, columns=["user_id", *_FIELDS[p]]) for p, rows in pop.items()}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fit_pop=_population(), pop=_population(), shift=st.floats(-30 * DAY, 30 * DAY))
def test_batch_equals_transform_one_property(
    fit_pop: dict[str, list[dict[str, Any]]], pop: dict[str, list[dict[str, Any]]], shift: float
) -> None:
    fm = _HYPO_SCHEMA.fit(_frames(fit_pop))
    now = None if fm.reference_time is None else fm.reference_time + shift
    if now is None:
        now = 1.7e9
    frames = _frames(pop)
    X, keys = fm.transform_array(frames, now=now)
    by_user: dict[str, dict[str, Any]] = {}
    for platform, rows in pop.items():
        for row in rows:
            by_user.setdefault(row["user_id"], {})[platform] = row
    assert sorted(keys) == sorted(by_user)
    for i, k in enumerate(keys):
        # raw dicts (the key column included) on the serving path, pandas-inferred dtypes in batch
        x = fm.transform_one(by_user[k], now=now)
        assert np.array_equal(x, X[i]), (k, by_user[k])
    # and the round trip through profiles() (what the profile store keeps)
    for i, (k, profile) in enumerate(fm.profiles(frames)):
        assert keys[i] == k
        assert np.array_equal(fm.transform_one(profile, now=now), X[i])
