"""``bandit simulate`` through typer's CliRunner: outputs, determinism, errors and exit codes,
no half-written output, the event log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bandit_engine.cli import app
from bandit_engine.evaluation.datasets import load_engine_log

runner = CliRunner()

TINY = """
name = "tiny"
[run]
rounds = 600
seeds = 2
seed = 1
[world]
n_users = 400
n_cities = 2
n_deals = 6
n_courses = 3
[rewards]
click = 1.0
order = 2.0
value_weight = 0.01
window = 600.0
[[policies]]
name = "linucb"
alpha = 0.1
[[controls]]
name = "uniform"
[[controls]]
name = "fixed_rule"
column = "deal.discount"
label = "highest discount"
"""

EVERYTHING = (
    TINY
    + """
[orders]
delay = "exponential"
mean_delay_hours = 0.5
[new_users]
at = 0.3
users = 50
share = 0.4
first_k = 3
[new_bundles]
at = 0.5
deals = 1
courses = 1
[world.drift]
kind = "abrupt"
at_days = 0.01
strength = 1.0
[report]
block = 50
"""
)


def _scenario(tmp_path: Path, text: str = TINY, name: str = "tiny.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def _run(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, ["simulate", *args])
    return res.exit_code, res.stdout, res.stderr


def test_outputs_and_the_newcomer_table(tmp_path: Path) -> None:
    out = tmp_path / "report"
    code, stdout, stderr = _run(str(_scenario(tmp_path)), "--out", str(out), "--no-progress")
    assert code == 0, stderr
    assert "Simulation 'tiny'" in stdout
    assert "Uplift in expected reward per decision" in stdout
    assert "linucb" in stdout and "uniform" in stdout
    assert "How sure: 95% Student t-interval over 2 seeds" in stdout
    files = {p.name for p in out.iterdir()}
    assert {
        "summary.json",
        "curves.csv",
        "timings.json",
        "reward_regret.png",
        "uplift.png",
    } <= files
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == 600 and summary["seeds"] == [1, 2]
    for rec in summary["policies"]:
        for key in ("policy", "rounds", "mean_reward", "ctr", "order_rate"):
            assert key in rec
        assert rec["revenue_per_decision"] >= 0 and rec["regret"] >= 0
        for u in rec["uplift"].values():
            assert u["ci_low"] <= u["uplift"] <= u["ci_high"]
    linucb = summary["policies"][0]
    assert set(linucb["uplift"]) == {"uniform", "highest discount"}
    for png in ("reward_regret.png", "uplift.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    header = (out / "curves.csv").read_text().splitlines()[0]
    assert header.startswith("policy,role,round,cumulative_reward")


def test_same_seed_gives_a_byte_identical_summary(tmp_path: Path) -> None:
    scenario = _scenario(tmp_path, EVERYTHING)
    outs = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    for out, seed in zip(outs, ("5", "5", "6"), strict=True):
        code, _, stderr = _run(str(scenario), "--seed", seed, "--out", str(out), "--no-progress")
        assert code == 0, stderr
    a, b, c = ((o / "summary.json").read_bytes() for o in outs)
    assert a == b
    assert a != c
    summary = json.loads(a)
    assert {"new_users", "new_bundles"} <= set(summary["cold_start"])
    assert "drift" in summary
    assert {"cold_start.png", "drift.png"} <= {p.name for p in outs[0].iterdir()}


def test_policy_and_control_flags(tmp_path: Path) -> None:
    out = tmp_path / "r"
    code, _, stderr = _run(
        str(_scenario(tmp_path)),
        "--policy",
        "linucb:alpha=0.2,label=wide",
        "--policy",
        "epsilon_greedy:epsilon=0.2",
        "--control",
        "popularity:epsilon=0.1",
        "--rounds",
        "300",
        "--seeds",
        "1",
        "--out",
        str(out),
        "--no-progress",
    )
    assert code == 0, stderr
    summary = json.loads((out / "summary.json").read_text())
    assert [p["policy"] for p in summary["policies"]] == ["wide", "epsilon_greedy", "popularity"]
    assert summary["policies"][0]["params"] == {"alpha": 0.2}
    assert summary["rounds"] == 300
    assert "1 seed" in summary["interval"]
    code, _, stderr = _run(
        str(_scenario(tmp_path)),
        "--no-controls",
        "--rounds",
        "200",
        "--seeds",
        "1",
        "--no-progress",
    )
    assert code == 0, stderr


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--policy", "linucb:alph=0.1"], ["linucb.alph", "0.1"]),
        (["--policy", "linucb:alpha=-1"], ["alpha", "-1"]),
        (["--control", "nosuch"], ["nosuch"]),
        (["--no-controls", "--control", "uniform"], ["--no-controls"]),
    ],
)
def test_bad_flags_exit_3_naming_the_value(
    tmp_path: Path, args: list[str], needles: list[str]
) -> None:
    code, _, stderr = _run(str(_scenario(tmp_path)), *args, "--no-progress")
    assert code == 3
    for needle in needles:
        assert needle in stderr


def test_bad_scenario_file_exit_3_naming_key_value_and_file(tmp_path: Path) -> None:
    bad = _scenario(tmp_path, TINY.replace("rounds = 600", "roundz = 600"), "bad.toml")
    code, stdout, stderr = _run(str(bad), "--no-progress")
    assert code == 3
    assert "bad.toml" in stderr and "run.roundz" in stderr and "600" in stderr
    assert "Traceback" not in stderr + stdout


def test_missing_scenario_file_exit_4(tmp_path: Path) -> None:
    code, _, stderr = _run(str(tmp_path / "missing.toml"), "--no-progress")
    assert code == 4
    assert "missing.toml" in stderr


def test_a_failed_run_leaves_no_output(tmp_path: Path) -> None:
    # The rule's column is checked against the catalog only once the run starts (after the
    # output paths were checked and the log was opened): the run fails half-way.
    text = TINY.replace('column = "deal.discount"', 'column = "deal.sparkle"')
    scenario = _scenario(tmp_path, text)
    out, log = tmp_path / "out", tmp_path / "events.sqlite"
    code, _, stderr = _run(str(scenario), "--out", str(out), "--log", str(log), "--no-progress")
    assert code == 3
    assert "deal.sparkle" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.toml"]


def test_an_existing_report_is_replaced_but_foreign_files_are_not(tmp_path: Path) -> None:
    scenario = _scenario(tmp_path)
    out = tmp_path / "out"
    args = [str(scenario), "--rounds", "200", "--seeds", "1", "--no-progress", "--out", str(out)]
    assert _run(*args)[0] == 0
    first = (out / "summary.json").read_bytes()
    assert _run(*args[:-2], "--seed", "9", "--out", str(out))[0] == 0
    assert (out / "summary.json").read_bytes() != first
    (out / "notes.txt").write_text("mine")
    code, _, stderr = _run(*args)
    assert code == 3
    assert "notes.txt" in stderr
    assert (out / "notes.txt").read_text() == "mine"


def test_the_event_log_holds_every_decision(tmp_path: Path) -> None:
    log = tmp_path / "events.sqlite"
    code, _, stderr = _run(
        str(_scenario(tmp_path)),
        "--rounds",
        "250",
        "--seeds",
        "1",
        "--log",
        str(log),
        "--no-progress",
    )
    assert code == 0, stderr
    for arm in range(3):  # linucb, uniform, highest discount
        data = load_engine_log(log, model_id=f"sim-tiny-s1-{arm}")
        assert data.n_rows == 250
    code, _, stderr = _run(str(_scenario(tmp_path)), "--log", str(log), "--no-progress")
    assert code == 3 and "already exists" in stderr


def test_no_arguments_runs_the_embedded_baseline(monkeypatch: pytest.MonkeyPatch) -> None:
    # The full default run is measured in the README; here the embedded baseline is run with
    # fewer rounds through the same code path (no scenario argument).
    from bandit_engine.simulation import scenario as scenario_module

    small = dict(scenario_module.DEFAULT_SCENARIO)
    small["run"] = {"rounds": 300, "seeds": 2, "seed": 0, "world_seed": 0}
    monkeypatch.setattr(scenario_module, "DEFAULT_SCENARIO", small)
    code, stdout, stderr = _run("--no-progress")
    assert code == 0, stderr
    assert "Simulation 'baseline'" in stdout
    assert "highest discount" in stdout
    assert any(w in stdout for w in ("won", "beat", "lost to", "no significant difference"))
