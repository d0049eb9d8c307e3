"""``fixed_rule:column=deal.discount`` everywhere (issue 14, item 5), and new deals / courses in a
catalog with an explicit bundle list (paired by ``pair_with``, or a warning naming them)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_policy_eval import make_engine, write_engine_log
from typer.testing import CliRunner

from bandit_engine import Catalog, Engine, ProfileSchema
from bandit_engine.cli import app
from bandit_engine.demo import demo_engine
from bandit_engine.errors import ConfigError, NotFoundError
from bandit_engine.policies import UniformRandom, make_policy
from bandit_engine.policies.baselines import FixedRule

T0 = 1_700_000_000.0


def _best_discount(engine: Engine, candidates: tuple[str, ...]) -> set[str]:
    z = engine.catalog.features(list(candidates))
    col = engine.catalog.feature_names.index("deal.discount")
    top = z[:, col].max()
    return {b for b, v in zip(candidates, z[:, col], strict=True) if v == top}


def test_make_policy_takes_a_column_name_and_an_engine_resolves_it(tmp_path: Path) -> None:
    policy = make_policy("fixed_rule", column="deal.discount", seed=0)
    engine = demo_engine(seed=0, policy="fixed_rule", column="deal.discount")
    for user in ("U000001", "U000002", "U000007"):
        d = engine.decide(user)
        assert d.bundle_id in _best_discount(engine, d.candidates)
    # saved as the name, and the loaded engine finds it again
    assert engine.policy.get_params()["column"] == "deal.discount"
    engine.save(tmp_path / "rule.bandit")
    loaded = Engine.load(tmp_path / "rule.bandit")
    d = loaded.decide("U000003")
    assert d.bundle_id in _best_discount(loaded, d.candidates)
    # the same rule given by index chooses the same bundles
    index = engine.catalog.feature_names.index("deal.discount")
    by_index = demo_engine(seed=0, policy="fixed_rule", column=index)
    named, numbered = engine.decide("U000003"), by_index.decide("U000003")
    assert named.candidates == numbered.candidates
    assert named.probabilities == numbered.probabilities  # the same rule, the same distribution
    assert isinstance(policy, FixedRule) and policy.feature_names_needed


def test_unknown_and_unbound_names_say_what_to_do() -> None:
    with pytest.raises(ConfigError, match=r"did you mean \['deal.discount'"):
        demo_engine(seed=0, policy="fixed_rule", column="deal.discont")
    rule = FixedRule(column="deal.discount", seed=0)
    with pytest.raises(ConfigError, match="was not told the bundle feature names"):
        rule.choose(np.ones(3), ["a", "b"], np.eye(2))
    rule.bind_feature_names(["intercept", "deal.discount"])
    assert rule.choose(np.ones(3), ["a", "b"], np.eye(2)).index == 1
    with pytest.raises(ConfigError, match="feature name or an index"):
        FixedRule(column=" ")


def test_evaluate_with_a_named_column(
    tmp_path: Path, schema: ProfileSchema, tables: dict[str, pd.DataFrame], catalog: Catalog
) -> None:
    db = tmp_path / "events.sqlite"
    engine = make_engine(schema, tables, catalog, UniformRandom(seed=1))
    write_engine_log(db, engine, 200, 4)
    model = tmp_path / "model.bandit"
    engine.save(model)
    runner = CliRunner()
    spec = "fixed_rule:column=deal.discount"
    args = ["evaluate", str(db), "--policy", spec, "--estimators", "ips,snips", "--json"]
    named = runner.invoke(app, [*args, "--catalog", str(model)])
    assert named.exit_code == 0, named.stderr
    index = engine.catalog.feature_names.index("deal.discount")
    by_index = runner.invoke(
        app, [*args[:3], f"fixed_rule:column={index}", *args[4:], "--catalog", str(model)]
    )
    assert by_index.exit_code == 0, by_index.stderr
    # the name and the index are the same rule: the same estimates
    est = [e["value"] for e in json.loads(named.stdout)["estimates"]]
    assert est == [e["value"] for e in json.loads(by_index.stdout)["estimates"]]
    # without the catalog the log cannot say which column is which: exit 3, naming --catalog
    bare = runner.invoke(app, args)
    assert bare.exit_code == 3 and "--catalog ENGINE" in bare.stderr


def test_serve_policy_demo_takes_a_policy_spec(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from bandit_engine.server import Secret, ServerSettings, open_server

    token = "fixed-rule-test-token-0123456789ab"
    settings = ServerSettings(
        db=str(tmp_path / "events.sqlite"),
        api_token=Secret(token.encode()),
        demo_policy="fixed_rule:column=deal.discount",
    )
    app_, log = open_server(settings, hmac_key=b"fixed-rule-test-hmac-key-01234567")
    try:
        with TestClient(app_) as c:
            auth = {"Authorization": f"Bearer {token}"}
            r = c.post("/v1/decisions", json={"user_id": "U000001"}, headers=auth)
            assert r.status_code == 200, r.text
            record = c.get(f"/v1/decisions/{r.json()['decision_id']}", headers=auth).json()
            engine = app_.state.worker.engine
            assert engine.policy.name == "fixed_rule"
            assert r.json()["bundle_id"] in _best_discount(engine, tuple(record["candidates"]))
    finally:
        log.close()
    with pytest.raises(ConfigError, match="demo_policy"):
        ServerSettings(
            db="x.sqlite", api_token=Secret(token.encode()), demo_policy="fixed_rule:colum=1"
        )


# -- catalogs with an explicit bundle list -------------------------------------------------------


def _listed(deals: pd.DataFrame, courses: pd.DataFrame) -> Catalog:
    bundles = pd.DataFrame({"deal_id": [deals["deal_id"].iloc[0]], "course_id": ["c1"]})
    return Catalog(deals, courses, bundles=bundles)


def _new_deal(deals: pd.DataFrame, deal_id: str) -> pd.DataFrame:
    row = deals.head(1).copy()
    row["deal_id"] = deal_id
    return row


def test_new_deals_in_an_explicit_catalog_warn_or_pair(
    deals: pd.DataFrame, courses: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    cat = _listed(deals, courses)
    n = len(cat)
    with caplog.at_level(logging.WARNING, logger="bandit_engine.catalog"):
        assert cat.add_deals(_new_deal(deals, "d9")) == []
    assert "['d9']" in caplog.text and "in no bundle" in caplog.text and len(cat) == n
    caplog.clear()
    # a stated rule: with every active course, or with the named ones
    added = cat.add_deals(_new_deal(deals, "d10"), pair_with="all")
    courses_ids = list(courses["course_id"])
    assert sorted(added) == sorted(f"d10+{c}" for c in courses_ids)
    assert cat.add_deals(_new_deal(deals, "d11"), pair_with=["c2"]) == ["d11+c2"]
    new_course = courses.head(1).assign(course_id="c9")
    assert cat.add_courses(new_course, pair_with=["d9"]) == ["d9+c9"]
    assert caplog.text == ""
    # re-adding a known deal (an update) is not "new": no warning, no pairing
    with caplog.at_level(logging.WARNING, logger="bandit_engine.catalog"):
        cat.add_deals(_new_deal(deals, "d9"))
    assert caplog.text == ""
    with pytest.raises(NotFoundError, match="pair_with"):
        cat.add_deals(_new_deal(deals, "d12"), pair_with=["nope"])
    with pytest.raises(ConfigError, match="pair_with"):
        Catalog(deals, courses).add_deals(_new_deal(deals, "d13"), pair_with=["c1"])


def test_admin_endpoint_pairs_new_deals_by_pair_with(
    tmp_path: Path,
    schema: ProfileSchema,
    tables: dict[str, pd.DataFrame],
    deals: pd.DataFrame,
    courses: pd.DataFrame,
) -> None:
    from fastapi.testclient import TestClient

    from bandit_engine.server import Secret, ServerSettings, open_server

    model = tmp_path / "listed.bandit"
    engine = Engine.build(
        schema=schema,
        profiles=tables,
        catalog=_listed(deals, courses),
        policy=make_policy("linucb", seed=0),
    )
    engine.save(model)
    token = "pair-with-test-token-0123456789abc"
    auth = {"Authorization": f"Bearer {token}"}
    settings = ServerSettings(
        db=str(tmp_path / "e.sqlite"), api_token=Secret(token.encode()), model=str(model)
    )
    record = deals.head(1).assign(deal_id="d20").to_dict(orient="records")[0]
    app_, log = open_server(settings, hmac_key=b"pair-with-test-hmac-key-0123456789")
    try:
        with TestClient(app_) as c:
            r = c.post(
                "/v1/admin/deals", json={"deals": [record], "pair_with": "all"}, headers=auth
            )
            assert r.status_code == 200, r.text
            assert sorted(r.json()["added_bundles"]) == ["d20+c1", "d20+c2"]
            plain = {**record, "deal_id": "d21"}
            r = c.post("/v1/admin/deals", json={"deals": [plain]}, headers=auth)
            assert r.status_code == 200 and r.json()["added_bundles"] == []
            other = {**record, "deal_id": "d22"}
            r = c.post(
                "/v1/admin/deals", json={"deals": [other], "pair_with": ["c9"]}, headers=auth
            )
            assert r.status_code == 404 and r.json()["field"] == "pair_with", r.text
    finally:
        log.close()
