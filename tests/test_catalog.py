"""Catalog: bundles, feature vectors, eligibility rules, availability masks, add / retire at run time."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import T0

from bandit_engine import Catalog, EligibilityRules, NotFoundError, ValidationError
from bandit_engine.errors import ConfigError


def test_all_pairs_and_feature_vectors(catalog: Catalog) -> None:
    assert len(catalog) == 8
    assert catalog.bundle_ids[0] == "d1+c1"
    z = catalog.features(["d1+c1", "d1+c2"])
    assert z.shape == (2, catalog.n_arm_features)
    assert np.all(z[:, 0] == 1.0)  # bias column
    names = catalog.feature_names
    assert len(names) == catalog.n_arm_features
    # the two bundles share the deal block and differ in the course block
    deal_cols = [i for i, n in enumerate(names) if n.startswith("deal.")]
    course_cols = [i for i, n in enumerate(names) if n.startswith("course.")]
    assert np.array_equal(z[0, deal_cols], z[1, deal_cols])
    assert not np.array_equal(z[0, course_cols], z[1, course_cols])
    assert catalog.parts("d3+c2") == ("d3", "c2")


def test_eligibility_by_city_and_validity(catalog: Catalog) -> None:
    shanghai = catalog.candidates(city="shanghai", now=T0).ids
    # d1 (shanghai) and d3 (no city, valid until T0+5000); d4 not valid before T0+1000
    assert set(shanghai) == {"d1+c1", "d1+c2", "d3+c1", "d3+c2"}
    later = catalog.candidates(city="shanghai", now=T0 + 2000).ids
    assert set(later) == {"d1+c1", "d1+c2", "d3+c1", "d3+c2", "d4+c1", "d4+c2"}
    after_d3 = catalog.candidates(city="shanghai", now=T0 + 6000).ids
    assert set(after_d3) == {"d1+c1", "d1+c2", "d4+c1", "d4+c2"}
    # going back in time is served correctly too (cache keyed by validity interval)
    assert catalog.candidates(city="shanghai", now=T0).ids == shanghai
    unknown = catalog.candidates(city=None, now=T0).ids
    assert {"d2+c1", "d1+c1", "d3+c1"} <= set(unknown)


def test_unknown_city_none_rule(deals: pd.DataFrame, courses: pd.DataFrame) -> None:
    cat = Catalog(deals, courses, rules=EligibilityRules(unknown_city="none"))
    assert set(cat.candidates(city=None, now=T0).ids) == {"d3+c1", "d3+c2"}
    # what is offered to someone, anywhere, ignores the city rule (batch scoring uses it)
    offered = {b.split("+")[0] for b in cat.offered(T0).ids}
    assert offered == {"d1", "d2", "d3"}  # d4 is not valid yet
    with pytest.raises(ConfigError, match="unknown_city"):
        EligibilityRules(unknown_city="some")  # type: ignore[arg-type]


def test_candidate_cache_returns_same_object_until_change(catalog: Catalog) -> None:
    a = catalog.candidates(city="beijing", now=T0)
    b = catalog.candidates(city="beijing", now=T0 + 10)
    assert a is b  # identity lets policies skip id lookups
    catalog.retire_bundles(["d2+c1"])
    c = catalog.candidates(city="beijing", now=T0 + 10)
    assert c is not a and "d2+c1" not in c.ids


def test_availability_mask(catalog: Catalog) -> None:
    cs = catalog.candidates(city="shanghai", now=T0, restrict=["d3+c2", "d2+c1", "d1+c1"])
    assert cs.ids == ("d3+c2", "d1+c1")  # caller order kept, ineligible d2 (beijing) dropped
    np.testing.assert_array_equal(cs.features, catalog.features(["d3+c2", "d1+c1"]))
    with pytest.raises(NotFoundError, match="nope"):
        catalog.candidates(city="shanghai", now=T0, restrict=["nope"])
    with pytest.raises(ValidationError, match="candidates"):
        catalog.candidates(city="shanghai", now=T0, restrict=["d2+c1"])


def test_add_and_retire_at_run_time(catalog: Catalog, courses: pd.DataFrame) -> None:
    new = catalog.add_deals(
        pd.DataFrame(
            {
                "deal_id": ["d9"],
                "city": ["beijing"],
                "cuisine": ["dessert"],
                "price": [30.0],
                "discount": [0.5],
            }
        )
    )
    assert new == ["d9+c1", "d9+c2"]  # all-pairs mode pairs it with every active course
    # an unseen cuisine gets the unknown bucket, a valid vector all the same
    z = catalog.features(["d9+c1"])[0]
    assert np.isfinite(z).all()
    assert "d9+c1" in catalog.candidates(city="beijing", now=T0).ids
    catalog.retire_courses(["c2"])
    assert all(not b.endswith("+c2") for b in catalog.candidates(city="beijing", now=T0).ids)
    added = catalog.add_courses(
        pd.DataFrame(
            {
                "course_id": ["c3"],
                "topic": ["design"],
                "format": ["column"],
                "price": [19.0],
                "rating": [4.9],
            }
        )
    )
    assert "d9+c3" in added and "d1+c3" in added
    catalog.retire_deals(["d9"])
    assert not any(b.startswith("d9+") for b in catalog.candidates(city="beijing", now=T0).ids)
    # retired bundles keep their id and features (pending decisions still learn)
    assert catalog.bundle("d9+c1")["active"] is False
    assert catalog.features(["d9+c1"]).shape == (1, catalog.n_arm_features)
    with pytest.raises(NotFoundError, match="zz"):
        catalog.retire_deals(["zz"])


def test_explicit_bundles(deals: pd.DataFrame, courses: pd.DataFrame) -> None:
    pairs = pd.DataFrame(
        {
            "deal_id": ["d1", "d2"],
            "course_id": ["c2", "c1"],
            "bundle_id": ["wine-night", "python-lunch"],
        }
    )
    cat = Catalog(deals, courses, bundles=pairs)
    assert cat.bundle_ids == ("wine-night", "python-lunch")
    # explicit mode: a new deal does not pair automatically
    assert cat.add_deals(deals.iloc[[0]].assign(deal_id="d7")) == []
    with pytest.raises(NotFoundError, match="d8"):
        cat.add_bundles(pd.DataFrame({"deal_id": ["d8"], "course_id": ["c1"]}))
    with pytest.raises(ValidationError, match="different"):
        cat.add_bundles(
            pd.DataFrame({"deal_id": ["d1"], "course_id": ["c1"], "bundle_id": ["wine-night"]})
        )


def test_bad_tables_name_the_field(deals: pd.DataFrame, courses: pd.DataFrame) -> None:
    with pytest.raises(ValidationError, match=r"deals\.discount"):
        Catalog(deals.drop(columns=["discount"]), courses)
    with pytest.raises(ValidationError, match=r"deals\.deal_id"):
        Catalog(pd.concat([deals, deals.iloc[[0]]]), courses)
    bad = deals.copy()
    bad.loc[0, "valid_to"] = T0 - 2e6
    with pytest.raises(ValidationError, match=r"valid_to\[d1\]"):
        Catalog(bad, courses)
    with pytest.raises(ValidationError, match="price"):
        Catalog(deals.assign(price=["cheap", "x", "y", "z"]), courses)


def test_round_trip_keeps_encoders_and_state(catalog: Catalog) -> None:
    catalog.retire_bundles(["d1+c2"])
    data = json.loads(json.dumps(catalog.to_dict()))
    back = Catalog.from_dict(data)
    assert back.bundle_ids == catalog.bundle_ids
    np.testing.assert_array_equal(
        back.features(list(back.bundle_ids)), catalog.features(list(catalog.bundle_ids))
    )
    for city in ("shanghai", "beijing", None):
        assert back.candidates(city=city, now=T0).ids == catalog.candidates(city=city, now=T0).ids
    with pytest.raises(ValidationError, match="catalog"):
        Catalog.from_dict({**data, "bundles": [["x"]]})


def test_readding_a_deal_updates_its_bundles_in_place(
    catalog: Catalog, deals: pd.DataFrame
) -> None:
    before = catalog.features(["d1+c1", "d1+c2", "d2+c1"])
    ids = catalog.bundle_ids
    catalog.retire_deals(["d1"])
    assert catalog.add_deals(deals.iloc[[0]].assign(price=400.0, city="beijing")) == []
    after = catalog.features(["d1+c1", "d1+c2", "d2+c1"])
    assert catalog.bundle_ids == ids  # same rows, nothing re-paired
    price = catalog.feature_names.index("deal.price")
    assert after[0, price] > before[0, price] and after[1, price] == after[0, price]
    np.testing.assert_array_equal(after[2], before[2])  # other deals untouched
    # re-activated, and eligibility follows its new city
    assert catalog.bundle("d1+c1")["active"] is True
    assert "d1+c1" in catalog.candidates(city="beijing", now=T0).ids
    assert "d1+c1" not in catalog.candidates(city="shanghai", now=T0).ids


def test_a_rejected_table_changes_nothing(catalog: Catalog, deals: pd.DataFrame) -> None:
    state = json.dumps(catalog.to_dict())
    bad = deals.assign(deal_id=["n1", "n2", "n3", "n4"])
    bad.loc[2, "valid_to"] = T0 - 2e6  # the third row is invalid: the first two must not land
    with pytest.raises(ValidationError, match=r"valid_to\[n3\]"):
        catalog.add_deals(bad)
    with pytest.raises(ValidationError, match="different"):
        catalog.add_bundles(
            pd.DataFrame(
                {"deal_id": ["d1", "d1"], "course_id": ["c1", "c2"], "bundle_id": ["new", "d2+c1"]}
            )
        )
    assert json.dumps(catalog.to_dict()) == state
    assert len(catalog.candidates(city="beijing", now=T0).ids) == 4


def test_bundle_listed_twice_in_one_frame_is_added_once(
    deals: pd.DataFrame, courses: pd.DataFrame
) -> None:
    pairs = pd.DataFrame({"deal_id": ["d1", "d1", "d2"], "course_id": ["c1", "c1", "c2"]})
    cat = Catalog(deals, courses, bundles=pairs)
    assert cat.bundle_ids == ("d1+c1", "d2+c2")
    cat.retire_bundles(["d1+c1"])
    assert cat.add_bundles(pairs.iloc[[0]]) == []  # known: re-activated, not new
    assert cat.bundle("d1+c1")["active"] is True


def test_saved_state_layout_is_stable(catalog: Catalog) -> None:
    # Saved model files embed this dict: its keys and bundle rows must not change shape.
    catalog.retire_bundles(["d1+c2"])
    catalog.retire_courses(["c1"])
    data = catalog.to_dict()
    assert list(data) == [
        "rules",
        "pair_all",
        "deal_features",
        "course_features",
        "deal_block",
        "course_block",
        "deals",
        "deal_active",
        "courses",
        "course_active",
        "bundles",
    ]
    assert data["bundles"][:2] == [["d1+c1", "d1", "c1", False], ["d1+c2", "d1", "c2", True]]
    assert data["course_active"] == [False, True]
    assert data["deal_active"] == [True, True, True, True]
    assert data["deals"][2] == {
        "deal_id": "d3",
        "cuisine": "bbq",
        "price": 60.0,
        "discount": 0.1,
        "city": None,
        "valid_from": T0 - 1e6,
        "valid_to": T0 + 5000.0,
    }
    assert all(type(v) is bool for v in data["deal_active"] + data["course_active"])
