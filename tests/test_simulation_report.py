"""The report: uplift intervals against hand computations, the summary's shape and rounding, the
newcomer headline, curves, and outputs that are all-or-nothing."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console
from scipy import stats

from bandit_engine.errors import ConflictError, NotFoundError
from bandit_engine.simulation import render as render_module
from bandit_engine.simulation.driver import simulate
from bandit_engine.simulation.outputs import (
    OUTPUT_FILES,
    atomic_dir,
    atomic_log,
    check_output_paths,
    dumps,
    write_outputs,
)
from bandit_engine.simulation.render import headline, render
from bandit_engine.simulation.scenario import Scenario
from bandit_engine.simulation.summary import curves, summarize
from bandit_engine.simulation.uplift import paired_uplift


def test_uplift_over_seeds_is_a_paired_t_interval() -> None:
    rng = np.random.default_rng(0)
    a = [rng.normal(0.12, 0.01, size=50) for _ in range(4)]
    c = [rng.normal(0.10, 0.01, size=50) for _ in range(4)]
    u = paired_uplift(a, c)
    ma = np.array([x.mean() for x in a])
    mc = np.array([x.mean() for x in c])
    d = ma - mc
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2.0
    assert u["difference"] == pytest.approx(d.mean())
    assert u["difference_ci_low"] == pytest.approx(d.mean() - half)
    assert u["difference_ci_high"] == pytest.approx(d.mean() + half)
    rel = d / mc
    assert u["uplift"] == pytest.approx(rel.mean())
    rhalf = stats.t.ppf(0.975, 3) * rel.std(ddof=1) / 2.0
    assert u["ci_low"] == pytest.approx(rel.mean() - rhalf)
    assert u["significant"] and "4 seeds" in u["interval"]


def test_uplift_with_one_seed_is_a_per_round_normal_interval() -> None:
    rng = np.random.default_rng(1)
    c = rng.normal(1.0, 0.3, size=4000)
    a = c + rng.normal(0.05, 0.2, size=4000)  # paired: shares c's noise
    u = paired_uplift([a], [c])
    d = a - c
    se = d.std(ddof=1) / math.sqrt(d.shape[0])
    assert u["difference"] == pytest.approx(d.mean())
    assert u["difference_ci_high"] - u["difference_ci_low"] == pytest.approx(2 * 1.959964 * se)
    assert u["uplift"] == pytest.approx(d.mean() / c.mean())
    assert u["ci_low"] < u["uplift"] < u["ci_high"]
    assert "1 seed" in u["interval"]


def test_uplift_interval_covers_the_truth_at_about_95_percent() -> None:
    # Synthetic paired data with a known mean difference 0.02: over 400 repetitions the t-interval
    # over 5 "seeds" must cover it 95% of the time; binomial sd at 400 draws is 1.1%, so 91%-99%
    # is a band of more than 3 sd.
    rng = np.random.default_rng(2)
    hits = 0
    for _ in range(400):
        c = [rng.normal(0.10, 0.02, size=20) for _ in range(5)]
        a = [x + 0.02 + rng.normal(0, 0.01, size=20) for x in c]
        u = paired_uplift(a, c)
        hits += u["difference_ci_low"] <= 0.02 <= u["difference_ci_high"]
    assert 0.91 <= hits / 400 <= 0.99


def test_not_significant_when_the_interval_spans_zero() -> None:
    rng = np.random.default_rng(3)
    c = [rng.normal(0.1, 0.01, size=30) for _ in range(3)]
    a = [x + rng.normal(0.0, 0.01, size=30) for x in c]
    u = paired_uplift(a, c)
    assert u["difference_ci_low"] < 0 < u["difference_ci_high"]
    assert not u["significant"]


@pytest.fixture(scope="module")
def result() -> Any:
    sc = Scenario.from_dict(
        {
            "name": "rep",
            "run": {"rounds": 700, "seeds": 2, "seed": 4},
            "world": {"n_users": 400, "n_cities": 2, "n_deals": 6, "n_courses": 3},
            "rewards": {"click": 1.0, "order": 2.0, "value_weight": 0.01, "window": 600.0},
            "policies": [{"name": "linucb", "alpha": 0.1}],
            "controls": [{"name": "uniform"}, {"name": "popularity"}],
        }
    )
    return simulate(sc)


def test_summary_shape_and_rounding(result: Any) -> None:
    s = summarize(result)
    assert s["scenario"] == "rep" and s["rounds"] == 700 and s["seeds"] == [4, 5]
    assert [p["policy"] for p in s["policies"]] == ["linucb", "uniform", "popularity"]
    lin = s["policies"][0]
    assert set(lin["uplift"]) == {"uniform", "popularity"}
    assert set(lin["realized_uplift"]) == {"uniform", "popularity"}
    assert "uniform" not in s["policies"][1]["uplift"]  # no uplift over itself
    # means over seeds of the per-seed metrics
    per_seed = [t.arms["linucb"].click.mean() for t in result.seeds]
    assert lin["ctr"] == pytest.approx(float(np.mean(per_seed)), rel=1e-5)
    regret = np.mean([(t.oracle - t.arms["linucb"].expected).sum() for t in result.seeds])
    assert lin["regret"] == pytest.approx(regret, rel=1e-5)
    assert lin["expected_reward"] <= s["oracle_reward"]
    text = dumps(s)
    assert "NaN" not in text and "Infinity" not in text
    for value in _floats(json.loads(text)):
        assert value == float(f"{value:.6g}")  # rounded to 6 significant digits


def _floats(obj: Any) -> list[float]:
    if isinstance(obj, dict):
        return [f for v in obj.values() for f in _floats(v)]
    if isinstance(obj, list):
        return [f for v in obj for f in _floats(v)]
    return [obj] if isinstance(obj, float) else []


def test_headline_for_each_outcome() -> None:
    def summary(diff: float, lo: float, hi: float) -> dict[str, Any]:
        u = {
            "uplift": diff,
            "ci_low": lo,
            "ci_high": hi,
            "difference": diff,
            "significant": lo > 0 or hi < 0,
        }
        return {
            "winner": "lin",
            "oracle_reward": 0.2,
            "interval": "95% Student t-interval over 3 seeds, paired per seed",
            "policies": [
                {"policy": "lin", "role": "policy", "expected_reward": 0.1, "uplift": {"u": u}},
                {"policy": "u", "role": "control", "expected_reward": 0.08, "uplift": {}},
            ],
        }

    won = headline(summary(0.25, 0.1, 0.4))
    assert won[0] == (
        "lin won. Uplift in expected reward per decision: +25.0% over u (95% CI +10.0%..+40.0%)."
    )
    assert "50% of the oracle" in won[1] and "best control: 40%" in won[1]
    assert "t-interval over 3 seeds" in won[-1]
    tie = headline(summary(0.05, -0.1, 0.2))[0]
    assert tie.startswith("lin showed no significant difference from u.")
    assert headline(summary(-0.2, -0.3, -0.1))[0].startswith("lin lost to u. Uplift")
    mixed = summary(0.25, 0.1, 0.4)
    tie_u = {"uplift": 0.01, "ci_low": -0.1, "ci_high": 0.1, "difference": 0.01}
    mixed["policies"][0]["uplift"]["p"] = {**tie_u, "significant": False}
    assert headline(mixed)[0].startswith("lin beat u; no significant difference from p.")


def test_render_prints_tables_a_newcomer_can_read(result: Any) -> None:
    console = Console(record=True, width=120)
    render(summarize(result), console)
    text = console.export_text()
    assert "Simulation 'rep': 700 decisions x 2 seeds" in text
    assert "Uplift in expected reward per decision over each control" in text
    assert "How sure:" in text


def test_curves_are_cumulative_and_consistent(result: Any) -> None:
    data = curves(result)
    assert set(data) == {"linucb", "uniform", "popularity"}
    for cols in data.values():
        assert cols["round"][0] == 1 and cols["round"][-1] == 700
        assert np.all(np.diff(cols["cumulative_oracle_reward"]) > 0)
        assert np.all(np.diff(cols["cumulative_regret"]) >= -1e-12)
        np.testing.assert_allclose(
            cols["cumulative_regret"],
            cols["cumulative_oracle_reward"] - cols["cumulative_expected_reward"],
        )


def test_write_outputs_inside_an_atomic_dir(result: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with atomic_dir(out) as tmp:
        names = write_outputs(result, summarize(result), tmp)
        assert not out.exists()  # nothing visible until the block succeeds
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_failure_while_writing_leaves_nothing(
    result: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("previous report")

    def boom(*args: Any) -> list[str]:
        raise RuntimeError("disk full")

    import bandit_engine.simulation.plots as plots

    monkeypatch.setattr(plots, "plot_all", boom)
    with pytest.raises(RuntimeError, match="disk full"), atomic_dir(out) as tmp:
        write_outputs(result, summarize(result), tmp)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (out / "summary.json").read_text() == "previous report"


def test_atomic_log_is_removed_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "events.sqlite"
    with pytest.raises(KeyError), atomic_log(target) as log:
        log.set_meta("note", "half-way")
        raise KeyError("stop")
    assert list(tmp_path.iterdir()) == []
    with atomic_log(target) as log:
        log.set_meta("note", "done")
    assert [p.name for p in tmp_path.iterdir()] == ["events.sqlite"]


def test_output_paths_are_checked_before_running(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="--out"):
        check_output_paths(tmp_path / "no" / "such", None)
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConflictError, match="not a directory"):
        check_output_paths(tmp_path / "f", None)
    with pytest.raises(ConflictError, match="already exists"):
        check_output_paths(None, tmp_path / "f")
    ok = tmp_path / "ok"
    ok.mkdir()
    for name in OUTPUT_FILES:
        (ok / name).write_text("old")
    check_output_paths(ok, tmp_path / "new.sqlite")  # a previous report may be replaced


def test_render_shows_undefined_drift_shares_as_not_available() -> None:
    # A share of the oracle is NaN when the oracle's reward over its window is 0 (a degenerate
    # world); the summary stores it as None, and the table must still print.
    row = {
        "pre_drift_share_of_oracle": None,
        "lowest_share_after_drift": None,
        "final_share_of_oracle": 0.5,
        "rounds_to_recover": None,
    }
    drift = {
        "kind": "abrupt",
        "strength": 1.0,
        "drift_at_round": 100,
        "recovery_level": 0.9,
        "policies": {"lin": row},
    }
    console = Console(record=True, width=120)
    render_module._render_drift({"drift": drift}, console)
    text = console.export_text()
    assert "n/a%" in text and "50%" in text and "not recovered" in text
