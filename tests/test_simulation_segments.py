"""The simulator reports the live report's segments and conversion metrics from the same code
(issue 13, item 5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bandit_engine.cli import app
from bandit_engine.simulation.driver import simulate
from bandit_engine.simulation.scenario import load_scenario
from bandit_engine.simulation.segments import segment_reports
from bandit_engine.simulation.summary import summarize

TINY = """
name = "tiny"
[run]
rounds = 500
seeds = 2
seed = 1
[world]
n_users = 300
n_cities = 2
n_deals = 6
n_courses = 3
[rewards]
click = 1.0
order = 2.0
window = 600.0
[[policies]]
name = "linucb"
[[controls]]
name = "uniform"
"""


def test_segments_of_a_simulated_launch_match_its_summary(tmp_path: Path) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    result = simulate(load_scenario(path))
    reports = segment_reports(result)
    assert list(reports) == ["linucb"]
    rep = reports["linucb"]
    summary = summarize(result)
    ctr = {p["policy"]: p["ctr"] for p in summary["policies"]}
    cells = {(s["group"], s["metric"]): s for s in rep.segments if s["breakdown"] == "overall"}
    # the same rounds, counted by the report's code: CTR pooled over the two equal-length seeds
    assert cells[("policy", "click")]["value"] == pytest.approx(ctr["linucb"], rel=1e-9)
    assert cells[("uniform", "click")]["value"] == pytest.approx(ctr["uniform"], rel=1e-9)
    presence = {s["segment"] for s in rep.segments if s["breakdown"] == "presence"}
    assert presence <= {"both", "knowledge", "groupbuy", "neither"} and len(presence) >= 3
    assert {c["segment"] for c in rep.conversion} == presence
    assert rep.srm is None and "paired" in rep.message
    assert any(u["holdout"] == "uniform" for u in rep.uplift)


def test_simulate_out_writes_segments_json(tmp_path: Path) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    out = tmp_path / "report"
    r = CliRunner().invoke(app, ["simulate", str(path), "--out", str(out), "--no-progress"])
    assert r.exit_code == 0, r.output
    body = json.loads((out / "segments.json").read_text())
    assert body["linucb"]["totals"]["decisions"] == 2 * 2 * 500  # two arms, two seeds
    assert body["linucb"]["conversion"]
