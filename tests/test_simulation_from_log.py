"""``bandit simulate --from-log``: a world fitted to a log, policies run on it, the same paired
uplift report, its assumptions and its calibration on held-out rows.

The goals held here: the fitted world reproduces a known truth (synthetic logs whose reward
probabilities are known), a policy that finds the best arm is called better than uniform in it,
the logging policy's simulated value falls inside the log's own on-policy interval (the issue's
target, on the committed Open Bandit Dataset excerpt; the full sample is measured by
``benchmarks/bench_from_log.py``), the run is deterministic, and bad input
gets a clear error with an exit code.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_policy_eval import make_engine, write_engine_log
from threadpoolctl import threadpool_limits
from typer.testing import CliRunner

from bandit_engine import Catalog, ProfileSchema
from bandit_engine.cli import app
from bandit_engine.errors import ConfigError
from bandit_engine.evaluation.evaluate_log import read_policy_log
from bandit_engine.policies import LinUCB, UniformRandom
from bandit_engine.simulation.from_log import (
    LOGGED,
    LogArm,
    from_log_arms,
    run_from_log,
    simulate_from_log,
    summarize_from_log,
)
from bandit_engine.simulation.logged_world import calibration_check, fit_logged_world
from bandit_engine.simulation.policy_spec import parse_policy_spec

EXCERPT = Path(__file__).parent / "data" / "obd_excerpt"

B = np.array([-3.0, -2.0, -1.2, -2.5])  # per-arm log-odds: arm 2 is best for every user
W = np.array([0.5, -0.3, 0.2])


@pytest.fixture(autouse=True)
def _one_blas_thread() -> Iterator[None]:
    """As the CLI does: small Newton steps only contend with extra BLAS threads (a loaded
    2-core machine ran the excerpt's fits 3x slower with them)."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _truth(X: np.ndarray) -> np.ndarray:
    """(n, 4) true click probabilities: logistic, no context x arm interaction."""
    out: np.ndarray = 1.0 / (1.0 + np.exp(-(X @ W)[:, None] - B[None, :]))
    return out


def _linear_truth(X: np.ndarray) -> np.ndarray:
    """(n, 4) true mean of a continuous reward (order value, say): additive in context and arm."""
    out: np.ndarray = 2.0 + (X @ W)[:, None] + 0.5 * B[None, :]
    return out


def _write_log(path: Path, n: int, seed: int, *, binary: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    a = rng.integers(0, 4, size=n)
    p = _truth(X)
    if binary:
        r = (rng.random(n) < p[np.arange(n), a]).astype(float)
    else:
        r = _linear_truth(X)[np.arange(n), a] + rng.normal(0.0, 0.5, size=n)
    frame = pd.DataFrame({f"x_{j}": X[:, j] for j in range(3)})
    frame["action"] = [f"a{k}" for k in a]
    frame["reward"] = r
    frame["propensity"] = 0.25
    frame.to_csv(path, index=False)
    return X


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    path = tmp_path_factory.mktemp("fromlog") / "log.csv"
    X = _write_log(path, 6000, seed=3)
    return path, X


def _arm_order(ids: tuple[str, ...]) -> list[int]:
    return [ids.index(f"a{k}") for k in range(4)]


def test_world_recovers_the_known_truth(synthetic: tuple[Path, np.ndarray]) -> None:
    path, X = synthetic
    plog, _ = read_policy_log(path)
    world = fit_logged_world(plog, seed=0)
    assert world.binary and world.reward_model.startswith("logistic, pooled")
    mean = world.mean[:, _arm_order(plog.arm_ids)]
    truth = _truth(X)
    # 6,000 rows, 1,500 per arm at click rates of 5-25%: each arm's log-odds is fitted to about
    # +-0.1, i.e. probabilities to about +-0.01; 0.02 on average leaves room for the fold split
    assert float(np.abs(mean - truth).mean()) < 0.02
    # the world's value of each fixed arm (what a policy playing it would earn) vs the truth
    np.testing.assert_allclose(mean.mean(axis=0), truth.mean(axis=0), atol=0.015)
    cal = calibration_check(world)
    assert cal["within_ci"]
    assert cal["brier_skill"] > 0  # the model beats a held-out constant: the arms do differ
    assert cal["log_loss"] < cal["log_loss_constant"]
    # high predictions come with high observed rewards: top decile above the bottom one
    assert cal["deciles"][-1]["observed"] > cal["deciles"][0]["observed"] + 0.1
    assert sum(d["rows"] for d in cal["deciles"]) == plog.n_rows


def test_policy_that_finds_the_best_arm_beats_uniform(synthetic: tuple[Path, np.ndarray]) -> None:
    path, X = synthetic
    _, summary = run_from_log(
        str(path),
        policies=[parse_policy_spec("epsilon_greedy:epsilon=0.05")],
        seeds=3,
        seed=0,
    )
    recs = {p["policy"]: p for p in summary["policies"]}
    assert list(recs) == ["epsilon_greedy", LOGGED, "uniform"]
    up = recs["epsilon_greedy"]["uplift"]["uniform"]
    # arm 2 earns about 0.24 against a uniform mean of about 0.12: a doubling, far outside the
    # t-interval over 3 seeds of 6,000 paired rounds
    assert up["significant"] and up["uplift"] > 0.5
    best = recs["epsilon_greedy"]["top_actions"]
    assert next(iter(best)) == "a2"
    # the uniform control's simulated value is the truth's uniform value (within the fit error)
    assert recs["uniform"]["expected_reward"] == pytest.approx(_truth(X).mean(), abs=0.01)
    # the logged control replays the log: every arm, the world's value of the logged actions
    assert recs[LOGGED]["expected_reward"] == pytest.approx(
        summary["calibration"]["predicted_mean"], rel=1e-5
    )
    assert summary["logging_policy_check"]["within_ci"]
    assert summary["winner"] == "epsilon_greedy"
    assert summary["world"]["assumptions"][0].startswith("the reward model is the truth here")
    assert json.dumps(summary, allow_nan=False)  # plain data, NaN-free like summary.json


def test_same_seed_same_report(synthetic: tuple[Path, np.ndarray]) -> None:
    path, _ = synthetic
    args = dict(policies=[parse_policy_spec("linucb")], seeds=2, seed=4, rounds=800)
    _, a = run_from_log(str(path), **args)  # type: ignore[arg-type]
    _, b = run_from_log(str(path), **args)  # type: ignore[arg-type]
    assert a == b
    assert a["rounds"] == 800
    _, c = run_from_log(str(path), **{**args, "seed": 5})  # type: ignore[arg-type]
    assert c["policies"][0]["mean_reward"] != a["policies"][0]["mean_reward"]


def test_non_binary_rewards_use_ridge_and_logged_residuals(tmp_path: Path) -> None:
    path = tmp_path / "value.csv"
    X = _write_log(path, 3000, seed=8, binary=False)
    plog, _ = read_policy_log(path)
    world = fit_logged_world(plog)
    assert not world.binary and world.reward_model.startswith("ridge")
    # a well-specified ridge fit on 750 rows per arm at noise sd 0.5: errors of a few hundredths
    mean = world.mean[:, _arm_order(plog.arm_ids)]
    assert float(np.abs(mean - _linear_truth(X)).mean()) < 0.05
    res = simulate_from_log(world, [LogArm.logged()], seeds=2)
    summary = summarize_from_log(res)
    logged = summary["policies"][0]
    # realized = the world's mean plus logged residuals, which average about 0 (held out)
    assert logged["mean_reward"] == pytest.approx(float(plog.reward.mean()), abs=0.03)


def test_obd_excerpt_logging_policy_inside_its_on_policy_ci() -> None:
    """The issue's target, on the committed excerpt (320 rows of the BTS log, one click)."""
    _, summary = run_from_log(
        str(EXCERPT),
        obd_behavior="bts",
        policies=[parse_policy_spec("linucb")],
        seeds=2,
    )
    chk = summary["logging_policy_check"]
    assert chk["within_ci"], chk
    assert chk["on_policy_ci_low"] <= chk["simulated_value"] <= chk["on_policy_ci_high"]
    assert summary["world"]["arms"] == 80 and summary["rounds"] == 320


def test_arms_and_their_errors() -> None:
    arms = from_log_arms([parse_policy_spec("linucb")], [LOGGED, parse_policy_spec("uniform")])
    assert [(a.label, a.role) for a in arms] == [
        ("linucb", "policy"),
        (LOGGED, "control"),
        ("uniform", "control"),
    ]
    with pytest.raises(ConfigError, match="needs a policy to run"):
        from_log_arms([], None)
    with pytest.raises(ConfigError, match="control"):
        from_log_arms([parse_policy_spec("linucb")], ["nonsense"])


def test_world_errors(synthetic: tuple[Path, np.ndarray]) -> None:
    plog, _ = read_policy_log(synthetic[0])
    with pytest.raises(ConfigError, match="reward_model"):
        fit_logged_world(plog, reward_model="forest")
    with pytest.raises(ConfigError, match="alpha"):
        fit_logged_world(plog, alpha=-1.0)
    with pytest.raises(ConfigError, match="n_folds"):
        fit_logged_world(plog, n_folds=1)


runner = CliRunner()


def test_cli_from_log_report_and_json(synthetic: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    out = tmp_path / "report"
    res = runner.invoke(
        app,
        [
            "simulate",
            "--from-log",
            str(synthetic[0]),
            "-p",
            "epsilon_greedy",
            "--seeds",
            "2",
            "--rounds",
            "1500",
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "the reward model is the truth here" in res.output
    assert "Calibration of the world on held-out logged rows" in res.output
    assert "Logging policy: simulated value" in res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kind"] == "from_log" and summary["rounds"] == 1500
    assert math.isfinite(summary["policies"][0]["expected_reward"])


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["--from-log", "missing.csv", "-p", "linucb"], 4, "missing.csv"),
        (["--from-log", "{log}"], 3, "needs a policy to run"),
        (["--from-log", "{log}", "-p", "linucb", "--log", "x.sqlite"], 3, "--log"),
        (["simulations/baseline.toml", "--from-log", "{log}", "-p", "linucb"], 3, "scenario"),
        (["--from-log", "{log}", "-p", "linucb", "--reward-model", "forest"], 3, "forest"),
        (["--from-log", "{log}", "--model", "nope.bandit"], 4, "nope.bandit"),
        (["--model", "nope.bandit"], 3, "--from-log"),
        (["--per-action", "--rounds", "10"], 3, "--per-action"),
        (["--reward-model", "ridge", "--rounds", "10"], 3, "--reward-model"),
    ],
)
def test_cli_from_log_errors(
    synthetic: tuple[Path, np.ndarray], args: list[str], code: int, text: str
) -> None:
    argv = ["simulate", *[a.replace("{log}", str(synthetic[0])) for a in args], "--no-progress"]
    res = runner.invoke(app, argv)
    assert res.exit_code == code, res.output
    assert text in res.output
    assert "Traceback" not in res.output


def test_cli_runs_a_saved_engine_on_its_own_engine_log(
    tmp_path: Path, schema: ProfileSchema, tables: dict[str, pd.DataFrame], catalog: Catalog
) -> None:
    """The issue's form: --from-log events.sqlite --model ENGINE, the engine's policy as an arm
    (on a copy: the model file is not changed)."""
    db = tmp_path / "events.sqlite"
    write_engine_log(db, make_engine(schema, tables, catalog, UniformRandom(seed=1)), 300, 4)
    model = tmp_path / "model.bandit"
    make_engine(schema, tables, catalog, LinUCB(alpha=0.2, epsilon=0.1, seed=2)).save(model)
    before = model.read_bytes()
    out = tmp_path / "report"
    res = runner.invoke(
        app,
        [
            "simulate",
            "--from-log",
            str(db),
            "--model",
            str(model),
            "--seeds",
            "2",
            "--out",
            str(out),
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["log"]["format"] == "sqlite"
    labels = [(p["policy"], p["role"]) for p in summary["policies"]]
    assert labels == [("model.bandit", "policy"), (LOGGED, "control"), ("uniform", "control")]
    assert summary["rounds"] == summary["world"]["rows"] > 0
    assert model.read_bytes() == before
