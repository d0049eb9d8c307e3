"""Consent per platform (issue 15, item 1): fusion of consented blocks only, the opt-out control
decision, the consent record and its log in the store (both backends), the bulk import's consent
columns, and the schema step that holds the consent log and the privacy ledger."""

from __future__ import annotations

import copy
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bandit_engine.demo import demo_engine
from bandit_engine.engine import OPT_OUT_MODE, _Pending
from bandit_engine.errors import ValidationError
from bandit_engine.evaluation.evaluate_log import read_policy_log
from bandit_engine.profiles import CONSENT, merge_profiles, withhold
from bandit_engine.service import LoggedEngine
from bandit_engine.service.profile_import import ProfileImportError, import_profiles
from bandit_engine.store import SCHEMA_VERSION, context_matrix, open_log
from bandit_engine.store.ledger import PrivacyLedger

KEY = b"consent-test-hmac-key-0123456789"
T0 = 1_700_000_000.0
USER = "U000001"  # a demo user known on both platforms


def _engine() -> Any:
    return demo_engine(seed=0, start_time=T0, clock=lambda: T0)


# -- fusion: a withheld platform is exactly an absent one -----------------------------------------


def test_a_withheld_platform_gives_exactly_the_vector_of_a_user_absent_there() -> None:
    engine = _engine()
    stored = copy.deepcopy(engine.profiles.get(USER))  # the in-memory store hands out its own
    assert stored is not None and stored["knowledge"] and stored["groupbuy"]
    absent_knowledge = engine.features.transform_one({"groupbuy": stored["groupbuy"]}, now=T0)
    absent_groupbuy = engine.features.transform_one({"knowledge": stored["knowledge"]}, now=T0)
    both = engine.context(USER, now=T0)
    assert not np.array_equal(both, absent_knowledge)

    engine.set_consent(USER, {"knowledge": False})
    assert np.array_equal(engine.context(USER, now=T0), absent_knowledge)
    d = engine.decide(USER, now=T0)
    assert np.array_equal(d.x[: len(absent_knowledge)], absent_knowledge)
    assert d.presence == "groupbuy" and d.mode is None

    engine.set_consent(USER, {"knowledge": True, "groupbuy": False})
    # the knowledge record was dropped at the withdrawal: granting again brings nothing back
    # until the platform sends it again
    cold = engine.features.transform_one({}, now=T0)
    assert np.array_equal(engine.context(USER, now=T0), cold)
    engine.profiles.upsert(USER, "knowledge", stored["knowledge"])
    assert np.array_equal(engine.context(USER, now=T0), absent_groupbuy)
    # eligibility sees no city either: the user is offered what a user of unknown city is
    d2 = engine.decide(USER, now=T0 + 1)
    unknown_city = engine.decide(profile={"knowledge": stored["knowledge"]}, now=T0 + 2)
    assert d2.candidates == unknown_city.candidates


def test_batch_scores_use_only_consented_platforms_and_none_for_an_opt_out() -> None:
    from bandit_engine.demo import demo_world

    engine = _engine()
    world = demo_world(seed=0)
    tables = {"knowledge": world.knowledge.head(200), "groupbuy": world.groupbuy.head(200)}
    users = sorted(set(tables["knowledge"]["user_id"]) & set(tables["groupbuy"]["user_id"]))
    a, b = users[0], users[1]
    before = engine.score(tables, now=T0)
    engine.set_consent(a, {"groupbuy": False})
    engine.set_consent(b, {"personalisation": False})
    after = engine.score(tables, now=T0)
    # a's group-buying row is left out before fusion: the same scores as without that row, and
    # no city, so every city's bundles are scored (as decide offers them)
    g = tables["groupbuy"]
    without = engine.score(
        {"knowledge": tables["knowledge"], "groupbuy": g[g["user_id"] != a]}, now=T0
    )
    pd.testing.assert_series_equal(after.loc[a], without.loc[a])
    assert before.loc[a].isna().any() and not after.loc[a].isna().any()
    # an opted-out user has no personalised score; everyone else is unchanged
    assert after.loc[b].isna().all()
    rest = [u for u in after.index if u not in (a, b)]
    pd.testing.assert_frame_equal(after.loc[rest], before.loc[rest])


def test_consent_applies_from_the_next_decision_and_inline_consent_only_withholds() -> None:
    engine = _engine()
    before = engine.decide(USER, now=T0)
    assert before.presence == "both"
    engine.set_consent(USER, {"groupbuy": False})
    after = engine.decide(USER, now=T0 + 1)
    assert after.presence == "knowledge"
    # the decision made before the withdrawal keeps the context it was made with
    x_before, _ = engine.decision_vectors(before.decision_id)
    assert x_before is before.x
    # an inline record cannot grant what the stored one withholds ...
    inline = engine.decide(USER, {CONSENT: {"groupbuy": True}}, now=T0 + 2)
    assert inline.presence == "knowledge"
    # ... but can withhold more for one call
    engine.set_consent(USER, {"groupbuy": True})
    one_call = engine.decide(USER, {CONSENT: {"knowledge": False}}, now=T0 + 3)
    assert one_call.presence == "neither"  # groupbuy's record was dropped at the withdrawal


def test_withhold_and_merge_rules() -> None:
    profile = {"a": {"x": 1}, "b": {"y": 2}, CONSENT: {"a": False, "personalisation": True}}
    used, personalised = withhold(profile)
    assert used == {"b": {"y": 2}} and personalised
    same = {"a": {"x": 1}}
    assert withhold(same)[0] is same  # no consent record: nothing copied on the serving path
    merged = merge_profiles({CONSENT: {"a": False}}, {CONSENT: {"a": True, "b": False}})
    assert merged[CONSENT] == {"a": False, "b": False}


def test_an_opted_out_user_gets_the_control_policy_and_keeps_no_behaviour() -> None:
    engine = _engine()
    d0 = engine.decide(USER, now=T0)
    engine.report(d0.decision_id, "click", at=T0 + 1)
    assert engine.behaviour is not None and len(engine.behaviour) == 1
    engine.set_consent(USER, {"personalisation": False})
    assert len(engine.behaviour) == 0  # opting out erases the live behaviour
    cold = engine.features.transform_one({}, now=T0 + 2)
    for i in range(20):
        d = engine.decide(USER, now=T0 + 2 + i)
        engine.report(d.decision_id, "click", at=T0 + 2 + i)
        assert d.mode == OPT_OUT_MODE
        assert d.propensity == pytest.approx(1.0 / len(d.candidates))  # uniform: exact 1/k
        assert np.array_equal(d.x[: len(cold)], cold) and not d.x[len(cold) :].any()
        assert d.presence == "neither"
    assert len(engine.behaviour) == 0  # no state kept or updated while opted out
    # the control's generator is saved: a reloaded engine makes the same next choice
    copy = type(engine).from_state(engine.to_state(), clock=lambda: T0)
    copy.profiles = engine.profiles
    a = engine.decide(USER, now=T0 + 100, decision_id="next-a")
    b = copy.decide(USER, now=T0 + 100, decision_id="next-b")
    assert a.bundle_id == b.bundle_id
    engine.set_consent(USER, {"personalisation": True})
    assert engine.decide(USER, now=T0 + 200).mode is None


@pytest.mark.parametrize(
    ("consent", "field", "shown"),
    [
        ({"knowledge": "yes"}, "consent.knowledge", "'yes'"),
        ({"personalisation": 1}, "consent.personalisation", "1"),
        ({"knowledge": None}, "consent.knowledge", "None"),
        ({"knowlege": False}, "consent.knowlege", "False"),
    ],
)
def test_a_consent_flag_that_is_not_a_boolean_is_refused_naming_it(
    consent: dict[str, Any], field: str, shown: str
) -> None:
    engine = _engine()
    with pytest.raises(ValidationError) as err:
        engine.set_consent(USER, consent)
    assert err.value.field == field and f"got {shown}" in str(err.value)
    assert CONSENT not in (engine.profiles.get(USER) or {})  # nothing recorded
    with pytest.raises(ValidationError):
        engine.decide(USER, {CONSENT: {"knowledge": "no"}}, now=T0)


# -- the store, on both backends ------------------------------------------------------------------


def test_the_store_logs_consent_changes_and_drops_withheld_records(db_target: str) -> None:
    with open_log(db_target, hmac_key=KEY) as log:
        log.upsert_profile("alice", "knowledge", {"membership": "basic"}, now=T0)
        log.upsert_profile("alice", "groupbuy", {"city": "beijing"}, now=T0)
        record = log.set_consent("alice", {"knowledge": False, "personalisation": True}, now=T0)
        assert record == {"knowledge": False, "personalisation": True}
        again = log.upsert_profile("alice", CONSENT, {"knowledge": False}, now=T0 + 1)
        assert again == record  # no change: nothing more logged
        log.set_consent("alice", {"knowledge": True}, now=T0 + 2)
        stored = log.get_profile("alice")
        assert stored is not None
        assert set(stored) == {"groupbuy", CONSENT}  # the knowledge record went at withdrawal
        assert stored[CONSENT] == {"knowledge": True, "personalisation": True}
        changes = [(c.scope, c.granted, c.source) for c in log.consent_log_of("alice")]
        assert changes == [
            ("knowledge", False, "api"),
            ("personalisation", True, "api"),
            ("knowledge", True, "api"),
        ]
        with pytest.raises(ValidationError) as err:
            log.set_consent("alice", {"groupbuy": "false"})
        assert err.value.field == "consent.groupbuy"
        assert log.counts()["profiles"] == 1  # users with a platform record
        deleted = log.forget_user("alice")
        assert deleted["consent_log"] == 3 and deleted["profiles"] == 2
        assert log.consent_log_of("alice") == [] and log.get_profile("alice") is None


def test_a_decision_after_withdrawal_is_logged_and_evaluated_without_the_platform(
    db_target: str,
) -> None:
    engine = _engine()
    stored = engine.profiles.get(USER)
    assert stored is not None
    absent = engine.features.transform_one({"groupbuy": stored["groupbuy"]}, now=T0 + 1)
    with open_log(db_target, hmac_key=KEY) as log:
        service = LoggedEngine(engine, log, profiles_in_log=True)
        first = service.decide(USER, now=T0)
        service.upsert_profile(USER, CONSENT, {"knowledge": False})
        second = service.decide(USER, now=T0 + 1)
        assert second.presence == "groupbuy"
        assert np.array_equal(second.x[: len(absent)], absent)
        assert log.get_profile(USER) is not None and "knowledge" not in log.get_profile(USER)
        service.set_consent(USER, {"personalisation": False})
        third = service.decide(USER, now=T0 + 2)
        assert third.mode == OPT_OUT_MODE
        service.advance(T0 + engine.rewards.window + 10)  # every window closed: all learned
        with log.transaction():
            rows = log._conn.execute("SELECT presence FROM decisions ORDER BY seq").fetchall()
        assert [r[0] for r in rows] == ["both", "groupbuy", "neither"]
        logged = context_matrix(log.decisions_frame())  # what bandit report / evaluate read
    assert np.array_equal(logged[1][: len(absent)], absent)
    assert not np.array_equal(logged[0], logged[1])
    assert first.presence == "both"
    if not db_target.startswith("postgresql"):  # bandit evaluate reads SQLite logs
        plog, _ = read_policy_log(db_target, catalog=engine.catalog)
        assert np.array_equal(plog.context, logged)


def test_step_5_holds_the_consent_log_and_the_ledger_on_both_backends(db_target: str) -> None:
    with open_log(db_target, hmac_key=KEY) as log:
        # step 5 ran (later steps, such as step 6's shared behaviour rows, may follow it)
        assert log.get_meta("schema_version") == str(SCHEMA_VERSION) and SCHEMA_VERSION >= 5
        with log.transaction():  # created by the migration, not by a first ledger
            assert log._conn.execute("SELECT count(*) FROM dp_ledger").fetchone()[0] == 0
            assert log._conn.execute("SELECT count(*) FROM consent_log").fetchone()[0] == 0
        ledger = PrivacyLedger(log, total_epsilon=1.0)
        ledger.spend(0.4, label="ctr", mechanism="test")
        assert ledger.spent() == (0.4, 0.0)


def test_a_version_4_sqlite_log_upgrades_its_profile_keys_and_gains_the_new_tables(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite"
    with open_log(str(path), hmac_key=KEY) as log:
        log.upsert_profile("bob", "groupbuy", {"city": "xian"}, now=T0)
        ledger = PrivacyLedger(log, total_epsilon=2.0)
        ledger.spend(0.5, label="old release", mechanism="test")
        pseudonym = log.pseudonym("bob")
    # turn it back into what version 4 wrote: hex text keys, no consent log
    con = sqlite3.connect(path)
    con.executescript(
        'CREATE TABLE p4 ("user" TEXT, platform TEXT, fields TEXT NOT NULL, '
        'updated_at FLOAT NOT NULL, PRIMARY KEY ("user", platform));'
        'INSERT INTO p4 SELECT lower(hex("user")), platform, fields, updated_at FROM profiles;'
        "DROP TABLE profiles; ALTER TABLE p4 RENAME TO profiles; DROP TABLE consent_log;"
        "UPDATE meta SET value = '4' WHERE key = 'schema_version';"
    )
    assert con.execute('SELECT "user" FROM profiles').fetchone()[0] == pseudonym
    con.close()
    with open_log(str(path), hmac_key=KEY) as log:
        assert log.get_meta("schema_version") == str(SCHEMA_VERSION)  # 4 -> 5 and on
        assert log.get_profile("bob") == {"groupbuy": {"city": "xian"}}
        assert PrivacyLedger(log, total_epsilon=2.0).spent() == (0.5, 0.0)  # the old ledger kept
        log.set_consent("bob", {"groupbuy": False})
        assert log.get_profile("bob") == {CONSENT: {"groupbuy": False}}
    con = sqlite3.connect(path)
    assert con.execute('SELECT typeof("user") FROM profiles').fetchone()[0] == "blob"
    con.close()


# -- bulk import: consent columns -----------------------------------------------------------------


def _groupbuy_rows(engine: Any, n: int) -> pd.DataFrame:
    from bandit_engine.demo import demo_tables

    table = demo_tables(seed=0)["groupbuy"].head(n).reset_index(drop=True)
    return table


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_import_takes_consent_columns(db_target: str, tmp_path: Path, fmt: str) -> None:
    engine = _engine()
    table = _groupbuy_rows(engine, 4)
    users = [str(u) for u in table["user_id"]]
    table["consent"] = [True, False, None, True]
    table["personalisation"] = [None, None, False, True]
    path = tmp_path / f"g.{fmt}"
    if fmt == "parquet":
        table.to_parquet(path)
    else:
        table = table.copy()
        table["cuisines"] = ['["' + '","'.join(t) + '"]' for t in table["cuisines"]]
        for col in ("consent", "personalisation"):
            table[col] = ["" if v is None else ("TRUE" if v else "false") for v in table[col]]
        table.to_csv(path, index=False)
    with open_log(db_target, hmac_key=KEY) as log:
        log.upsert_profile(users[1], "groupbuy", {"city": "old"}, now=T0)
        rep = import_profiles(log, engine.features, path, platform="groupbuy", now=T0 + 1)
        assert rep.ok and rep.rows_read == 4 and rep.rows_written == 3
        p = [log.get_profile(u) or {} for u in users]
        assert p[0][CONSENT] == {"groupbuy": True} and "groupbuy" in p[0]
        assert p[1] == {CONSENT: {"groupbuy": False}}  # not stored, the old record deleted
        assert p[2][CONSENT] == {"personalisation": False} and "groupbuy" in p[2]
        assert p[3][CONSENT] == {"groupbuy": True, "personalisation": True}
        assert [c.source for c in log.consent_log_of(users[1])] == ["import"]


def test_import_names_each_consent_cell_that_is_not_a_boolean(
    db_target: str, tmp_path: Path
) -> None:
    engine = _engine()
    table = _groupbuy_rows(engine, 3)
    table["cuisines"] = ['["' + '","'.join(t) + '"]' for t in table["cuisines"]]
    table["consent"] = ["true", "yes", "1"]
    path = tmp_path / "g.csv"
    table.to_csv(path, index=False)
    with open_log(db_target, hmac_key=KEY) as log:
        with pytest.raises(ProfileImportError) as err:
            import_profiles(log, engine.features, path, platform="groupbuy", now=T0)
        errors = err.value.report.errors
        assert [(e.row, e.field, e.value) for e in errors] == [
            (2, "groupbuy.consent", "yes"),
            (3, "groupbuy.consent", "1"),
        ]
        assert "groupbuy.consent must be true or false, got 'yes'" in errors[0].message
        assert err.value.report.rows_written == 0
    numbers = _groupbuy_rows(engine, 2)
    numbers["consent"] = [1, 0]  # a number is not a boolean in Parquet either
    pq_path = tmp_path / "n.parquet"
    numbers.to_parquet(pq_path)
    with open_log(db_target, hmac_key=KEY) as log:
        with pytest.raises(ProfileImportError) as err:
            import_profiles(log, engine.features, pq_path, platform="groupbuy", now=T0)
        assert [e.row for e in err.value.report.errors] == [1, 2]


# -- the admin API --------------------------------------------------------------------------------


def test_the_admin_endpoint_takes_consent_and_names_a_bad_flag(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from bandit_engine.server import Secret, ServerSettings, open_server

    token = "consent-test-token-0123456789abcd"
    auth = {"Authorization": f"Bearer {token}"}
    model = tmp_path / "model.bandit"
    demo_engine(seed=0).save(model)  # deals valid now (the server runs on the wall clock)
    settings = ServerSettings(
        db=str(tmp_path / "events.sqlite"), api_token=Secret(token.encode()), model=str(model)
    )
    app, log = open_server(settings, hmac_key=KEY)
    try:
        with TestClient(app) as c:
            body = {"user_id": "zed", "profile": {"groupbuy": {"city": "beijing"}}}
            assert c.post("/v1/admin/profiles", json=body, headers=auth).status_code == 200
            bad = {"user_id": "zed", "profile": {CONSENT: {"groupbuy": "yes"}}}
            r = c.post("/v1/admin/profiles", json=bad, headers=auth)
            assert r.status_code == 422, r.text
            assert r.json()["field"] == "consent.groupbuy" and "'yes'" in r.json()["message"]
            out = {"user_id": "zed", "profile": {CONSENT: {"personalisation": False}}}
            r = c.post("/v1/admin/profiles", json=out, headers=auth)
            assert r.status_code == 200 and r.json()["profile"][CONSENT] == {
                "personalisation": False
            }
            r = c.post("/v1/decisions", json={"user_id": "zed"}, headers=auth)
            assert r.status_code == 200, r.text
            assert r.json()["mode"] == OPT_OUT_MODE
        assert [ch.scope for ch in log.consent_log_of("zed")] == ["personalisation"]
    finally:
        log.close()


def test_a_restart_redoes_opted_out_decisions_with_the_control(tmp_path: Path) -> None:
    from bandit_engine.service import Checkpointer

    base = lambda: demo_engine(seed=0, start_time=T0, clock=lambda: T0)  # noqa: E731
    with open_log(str(tmp_path / "a.sqlite"), hmac_key=KEY) as log:
        cps = Checkpointer(tmp_path / "cps")
        service, _ = LoggedEngine.restore(base, log, cps)
        service.checkpoint()
        service.set_consent(USER, {"personalisation": False})
        made = [service.decide(USER, now=T0 + i) for i in range(5)]
        made += [service.decide("U000002", now=T0 + 5 + i) for i in range(3)]
        for d in made:
            service.report(d.decision_id, "click", at=T0 + 9)
        again, report = LoggedEngine.restore(base, log, cps)  # same bundles, or ConflictError
        assert report.redone_decisions == 8
        assert again.engine.behaviour is not None
        for engine in (service.engine, again.engine):
            assert engine.behaviour is not None
            assert engine.behaviour.key(USER) not in engine.behaviour.index
            assert engine.behaviour.key("U000002") in engine.behaviour.index
        assert [
            _Pending(*again.engine.attribution.pending_payload(d.decision_id)).bundle_id
            for d in made
        ] == [d.bundle_id for d in made]


def test_on_a_grid_an_opted_out_user_gets_the_grid_uniform_control() -> None:
    from tests.test_engine_grid import _engine as grid_engine
    from tests.test_engine_grid import _users_with_city

    engine = grid_engine()
    [user] = _users_with_city(engine, 1)
    t = engine.now()
    personal = engine.decide(user, now=t)
    assert personal.mode is None
    engine.set_consent(user, {"personalisation": False})
    cold = engine.features.transform_one({}, now=t)
    for i in range(5):
        d = engine.decide(user, now=t + i)
        assert d.mode == OPT_OUT_MODE and np.array_equal(d.x, cold)
        assert d.propensity == pytest.approx(1.0 / d.n_candidates)  # uniform over every pair
    assert d.n_candidates > personal.n_candidates  # no known city: every city's deals
