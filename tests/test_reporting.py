"""``bandit report`` / ``bandit export`` and the reporting library (issue 13, item 3)."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from reliability.engine_factory import small_engine
from typer.testing import CliRunner

from bandit_engine.cli import app
from bandit_engine.holdout import HoldoutGroup, HoldoutPlan
from bandit_engine.reporting import (
    RatioStat,
    aggregate,
    build_report,
    report_from_log,
    srm_test,
    table_from_records,
    uplift,
)
from bandit_engine.rewards import EventKind, RewardSpec
from bandit_engine.service import LoggedEngine
from bandit_engine.store import EventLog, open_log

KEY = b"reporting-test-hmac-key-01234567"
T0 = 1_764_547_200.0  # 2025-12-01 00:00 UTC
USERS = ["u1", "u2", "u3", "u4", "u5", "u6", "u7"]
SPEC = RewardSpec(
    click=1.0,
    order=2.0,
    window=30.0,
    events={
        "deal_order": EventKind("groupbuy", weight=2.0),
        "course_purchase": EventKind("knowledge", weight=2.0),
    },
)


def fill_log(db: str, *, n: int = 300, seed: int = 0) -> dict[str, str]:
    """A served engine's log over two days with a 40% popularity holdout; returns
    ``{decision_id: group}``."""
    engine = small_engine()
    engine.rewards = SPEC
    engine.attribution.spec = SPEC
    engine.set_holdout(HoldoutPlan((HoldoutGroup("pop", 0.4, "popularity"),)))
    rng = np.random.default_rng(seed)
    groups = {}
    with open_log(db, hmac_key=KEY) as log:
        svc = LoggedEngine(engine, log)
        for i in range(n):
            t = T0 + i * (2 * 86_400.0 / n)
            d = svc.decide(USERS[int(rng.integers(len(USERS)))], now=t)
            groups[d.decision_id] = str(d.group)
            if rng.random() < 0.3:
                svc.report(d.decision_id, "click", at=t + 1)
                kind = ("deal_order", "course_purchase", "order")[int(rng.integers(3))]
                if rng.random() < 0.5:
                    svc.report(d.decision_id, kind, value=50.0, at=t + 2)
        svc.flush(T0 + 3 * 86_400)
    return groups


def brute_force(frame: pd.DataFrame, metric: str) -> dict[str, tuple[float, float, int]]:
    """``{group: (ratio, delta-method variance, users)}`` from per-user sums, with pandas."""
    out = {}
    for g, rows in frame.groupby("group"):
        per_user = rows.groupby("user").agg(y=(metric, "sum"), n=("den", "sum"))
        k = len(per_user)
        r = per_user["y"].sum() / per_user["n"].sum()
        resid = per_user["y"] - r * per_user["n"]
        var = resid.var(ddof=1) / (k * per_user["n"].mean() ** 2)
        out[str(g)] = (r, var, k)
    return out


def test_aggregates_and_intervals_equal_a_brute_force_computation() -> None:
    rng = np.random.default_rng(1)
    n = 5000
    user = rng.integers(0, 400, n)
    group = np.where(user % 5 == 0, "ctl", "policy")
    reward = rng.poisson(0.2 + 0.1 * (group == "policy"), n).astype(float)
    reward[rng.random(n) < 0.05] = np.nan  # pending
    table = table_from_records(
        ts=T0 + rng.random(n) * 3 * 86_400,
        user=[f"p{u}" for u in user],
        group=group,
        presence=np.where(user % 3 == 0, "knowledge", "both"),
        city=np.where(user % 2 == 0, "shanghai", None),
        bundle=[f"b{b}" for b in rng.integers(0, 6, n)],
        reward=reward,
        events={"click": rng.integers(0, 2, n)},
    )
    agg = aggregate(table)
    rep = build_report(agg, shares={"policy": 0.8, "ctl": 0.2})
    frame = pd.DataFrame(
        {"user": user, "group": group, "reward": np.nan_to_num(reward), "den": ~np.isnan(reward)}
    )
    truth = brute_force(frame, "reward")
    seg = {
        (s["group"]): s
        for s in rep.segments
        if s["breakdown"] == "overall" and s["metric"] == "reward"
    }
    for g, (r, var, k) in truth.items():
        assert seg[g]["value"] == pytest.approx(r, rel=1e-12)
        assert seg[g]["users"] == k
        half = 1.959963984540054 * math.sqrt(var)
        assert seg[g]["high"] - seg[g]["value"] == pytest.approx(half, rel=1e-9)
    up = next(u for u in rep.uplift if u["breakdown"] == "overall" and u["metric"] == "reward")
    assert up["diff"] == pytest.approx(truth["policy"][0] - truth["ctl"][0], rel=1e-12)
    half = 1.959963984540054 * math.sqrt(truth["policy"][1] + truth["ctl"][1])
    assert up["diff_high"] - up["diff"] == pytest.approx(half, rel=1e-9)
    # every breakdown partitions the decisions: its cells add up to the overall cell
    cells = agg.cells[agg.cells["metric"] == "click"]
    total = cells[cells["breakdown"] == "overall"]["n"].sum()
    for b in ("day", "presence", "city", "user_type", "bundle"):
        assert cells[cells["breakdown"] == b]["n"].sum() == total, b
    assert set(cells[cells["breakdown"] == "city"]["segment"]) == {"shanghai", "unknown"}


def test_user_clustering_widens_the_interval_when_users_repeat_themselves() -> None:
    # every user always gets the same outcome: 50 users x 40 decisions is 50 observations, not
    # 2,000, and an interval over decisions would be about sqrt(40) times too narrow
    rng = np.random.default_rng(2)
    per_user = rng.random(50) < 0.3
    y = np.repeat(per_user.astype(float), 40)
    n = np.repeat(np.ones(50), 40)
    st = RatioStat.from_sums(
        50,
        n.sum(),
        y.sum(),
        50 * 40.0**2,
        (40.0 * per_user) @ (40.0 * per_user),
        40.0 * 40.0 * per_user.sum(),
    )
    naive_var = y.var(ddof=1) / y.size
    assert st.var / naive_var == pytest.approx(40 * (2000 - 1) / 2000 * 50 / 49, rel=0.02)


def test_relative_uplift_and_undefined_cells() -> None:
    t = RatioStat(100, 1000.0, 0.12, 1e-4)
    c = RatioStat(100, 1000.0, 0.10, 1e-4)
    u = uplift(t, c)
    assert u["relative"] == pytest.approx(0.2)
    assert u["relative_low"] < 0.2 < u["relative_high"]
    assert math.isnan(uplift(t, RatioStat(0, 0.0, math.nan, math.nan))["relative"])
    assert math.isnan(RatioStat.from_sums(1, 3.0, 1.0, 9.0, 1.0, 3.0).var)  # one user


def test_sample_ratio_mismatch_is_flagged() -> None:
    ok = srm_test({"policy": 9010, "ctl": 990}, {"policy": 0.9, "ctl": 0.1})
    assert ok["mismatch"] is False and ok["p_value"] > 0.1
    bad = srm_test({"policy": 9300, "ctl": 700}, {"policy": 0.9, "ctl": 0.1})
    assert bad["mismatch"] is True and bad["p_value"] < 1e-6
    stray = srm_test({"policy": 10, "ghost": 1}, {"policy": 1.0})
    assert stray["mismatch"] is True  # a group nobody configured


def test_cross_platform_conversion_by_presence() -> None:
    # u1 knowledge-only orders a deal; u2 groupbuy-only buys a course; u3 both buys the bundle;
    # u4 neither does nothing
    table = table_from_records(
        ts=[T0] * 5,
        user=["u1", "u1", "u2", "u3", "u4"],
        presence=["knowledge", "knowledge", "groupbuy", "both", "neither"],
        bundle=["b"] * 5,
        reward=[0.0] * 5,
        events={
            "deal_order": [0, 1, 0, 0, 0],
            "course_purchase": [0, 0, 1, 0, 0],
            "order": [0, 0, 0, 1, 0],
            "course_play": [0, 0, 0, 0, 3],
        },
    )
    kinds = {
        "deal_order": ("groupbuy", True),
        "course_purchase": ("knowledge", True),
        "course_play": ("knowledge", False),
    }
    rep = build_report(aggregate(table, kinds))
    conv = {c["segment"]: c for c in rep.conversion}
    assert (conv["knowledge"]["deal_converters"], conv["knowledge"]["course_converters"]) == (1, 0)
    assert (conv["groupbuy"]["deal_converters"], conv["groupbuy"]["course_converters"]) == (0, 1)
    assert conv["both"]["both_converters"] == 1  # a bundle order is both
    assert conv["neither"]["deal_rate"] == 0.0 and conv["neither"]["course_rate"] == 0.0


def test_report_of_a_served_log(tmp_path: Path) -> None:
    db = str(tmp_path / "e.sqlite")
    groups = fill_log(db)
    log = open_log(db, hmac_key=None, read_only=True, must_exist=True)
    rep, _ = report_from_log(log)
    log.close()
    assert rep.totals["decisions"] == len(groups)
    by_group = {g["group"]: g["decisions"] for g in rep.groups}
    assert by_group == {g: list(groups.values()).count(g) for g in set(groups.values())}
    assert rep.srm is not None and rep.srm["expected"]
    assert {"deal_order", "course_purchase", "order", "click"} <= set(rep.metrics)
    days = {s["segment"] for s in rep.segments if s["breakdown"] == "day"}
    assert days == {"2025-12-01", "2025-12-02"}
    types = {s["segment"] for s in rep.segments if s["breakdown"] == "user_type"}
    assert types == {"new", "returning"}
    assert any(u["holdout"] == "pop" for u in rep.uplift)
    json.loads(rep.to_json())  # strict JSON (no NaN)
    # a window starting on day 2: users seen on day 1 are returning
    log = open_log(db, hmac_key=None, read_only=True, must_exist=True)
    rep2, _ = report_from_log(log, since=T0 + 86_400)
    log.close()
    new = [s for s in rep2.segments if s["breakdown"] == "user_type" and s["segment"] == "new"]
    assert not new  # every user of this small world came back


def test_an_empty_window_is_an_empty_report_that_says_so(tmp_path: Path) -> None:
    db = str(tmp_path / "e.sqlite")
    fill_log(db, n=20)
    log = open_log(db, hmac_key=None, read_only=True, must_exist=True)
    rep, _ = report_from_log(log, since=T0 + 30 * 86_400)
    log.close()
    assert rep.empty and "no decisions between 2025-12-31" in rep.message
    assert rep.totals["decisions"] == 0 and rep.segments == [] and rep.uplift == []


def test_a_version_1_log_is_migrated_and_reads_as_the_policy_group(tmp_path: Path) -> None:
    from bandit_engine.store import schema

    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    schema.MIGRATIONS[0](con)
    con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    con.execute("INSERT INTO candidate_sets (id, digest, ids) VALUES (1, 'x', '[\"b1\"]')")
    con.execute(
        'INSERT INTO decisions (seq, decision_id, ts, "user", bundle_id, deal_id, course_id,'
        " propensity, candidate_set, scores, policy_version, model_id, x, x_dim, status, reward)"
        " VALUES (1, 'd1', ?, 'ab', 'b1', 'd', 'c', 1.0, 1, x'', 'v', 'm', x'', 0,"
        " 'learned', 1.0)",
        (T0,),
    )
    con.commit()
    con.close()
    with EventLog(path, hmac_key=None) as log:
        assert log.get_meta("schema_version") == str(schema.SCHEMA_VERSION)
        rep, _ = report_from_log(log)
        assert log.decision("d1")["group"] is None
    assert [g["group"] for g in rep.groups] == ["policy"]
    assert rep.srm is None  # no plan recorded: nothing to check
    presence = [s for s in rep.segments if s["breakdown"] == "presence" and s["metric"] == "reward"]
    assert [s["segment"] for s in presence] == ["unknown"]


runner = CliRunner()


def test_cli_report_json_csv_plots_and_errors(tmp_path: Path) -> None:
    db = str(tmp_path / "e.sqlite")
    fill_log(db, n=120)
    r = runner.invoke(app, ["report", "--db", db, "--json"])
    assert r.exit_code == 0, r.output
    body = json.loads(r.stdout)
    assert body["totals"]["decisions"] == 120
    r = runner.invoke(
        app,
        ["report", "--db", db, "--csv", str(tmp_path / "csv"), "--plots", str(tmp_path / "png")],
    )
    assert r.exit_code == 0, r.output
    assert "sample ratio check" in r.stdout and "uplift of reward" in r.stdout
    assert sorted(p.name for p in (tmp_path / "csv").iterdir()) == [
        "conversion.csv",
        "groups.csv",
        "segments.csv",
        "uplift.csv",
    ]
    pngs = sorted(p.name for p in (tmp_path / "png").iterdir())
    assert pngs == ["conversion_by_presence.png", "reward_by_day.png", "uplift_by_segment.png"]
    assert all((tmp_path / "png" / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)
    r = runner.invoke(app, ["report", "--db", db, "--since", "2031-01-01"])
    assert r.exit_code == 0 and "nothing to report" in r.stdout
    r = runner.invoke(app, ["report", "--db", db, "--since", "yesterday"])
    assert r.exit_code == 3 and "since must be an ISO date" in r.output
    r = runner.invoke(app, ["report", "--db", db, "--since", "2025-12-02", "--until", "2025-12-01"])
    assert r.exit_code == 3 and "until must be after since" in r.output
    r = runner.invoke(app, ["report", "--db", str(tmp_path / "missing.sqlite")])
    assert r.exit_code == 4


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_cli_export_is_pseudonymous(tmp_path: Path, fmt: str) -> None:
    db = str(tmp_path / "e.sqlite")
    groups = fill_log(db, n=60)
    r = runner.invoke(app, ["export", "--db", db, "--format", fmt, "--out", str(tmp_path / "x")])
    assert r.exit_code == 0, r.output
    read = pd.read_parquet if fmt == "parquet" else pd.read_csv
    dec = read(tmp_path / "x" / f"decisions.{fmt}")
    assert len(dec) == 60 and set(dec["grp"]) == set(groups.values())
    assert dec["user"].str.fullmatch(r"[0-9a-f]{64}").all()
    events = read(tmp_path / "x" / f"events.{fmt}")
    learned = read(tmp_path / "x" / f"learned.{fmt}")
    assert len(learned) == 60 and len(events) > 0
    for path in (tmp_path / "x").iterdir():
        blob = path.read_bytes()
        assert not any(u.encode() in blob for u in ("u1\n", '"u1"', ",u1,")), path
    r = runner.invoke(app, ["export", "--db", db, "--format", "xlsx", "--out", str(tmp_path / "y")])
    assert r.exit_code == 3 and "format must be one of" in r.output


def test_the_same_report_on_sqlite_and_postgresql(tmp_path: Path, pg_url: str) -> None:
    a = str(tmp_path / "e.sqlite")
    fill_log(a, n=150, seed=3)
    fill_log(pg_url, n=150, seed=3)

    def report_of(db: str) -> dict[str, Any]:
        log = open_log(db, hmac_key=None, read_only=True, must_exist=True)
        try:
            rep, _ = report_from_log(log)
        finally:
            log.close()
        out = rep.to_dict()
        out.pop("window")
        return out

    lite, pg = report_of(a), report_of(pg_url)
    assert lite["totals"] == pg["totals"] and lite["groups"] == pg["groups"]
    key = lambda s: (s["breakdown"], s["segment"], s["group"], s["metric"])  # noqa: E731
    ls = sorted(lite["segments"], key=key)
    ps = sorted(pg["segments"], key=key)
    assert [key(s) for s in ls] == [key(s) for s in ps]
    for x, y in zip(ls, ps, strict=True):
        assert x["value"] == pytest.approx(y["value"], rel=1e-12, nan_ok=True)
    assert lite["conversion"] == pg["conversion"]
