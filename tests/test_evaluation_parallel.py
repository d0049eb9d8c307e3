"""``bandit evaluate "logs/*.parquet" --workers N``: a glob of files read as one log, and the policy
run on Dask workers part by part, giving the single-process estimates to 1e-12."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_policy_eval import click_prob, contexts
from typer.testing import CliRunner

from bandit_engine.cli import app
from bandit_engine.errors import ConfigError, NotFoundError
from bandit_engine.evaluation import evaluate_log
from bandit_engine.evaluation.parallel import PARALLEL_ESTIMATORS, evaluate_policy_parallel
from bandit_engine.evaluation.results import PolicyEvaluation
from bandit_engine.policies import LinearTS, LinUCB
from bandit_engine.records import Estimate

runner = CliRunner()
#: The claim: identical to the single-process result to 1e-12 (relative to max(1, |value|)).
TOL = 1e-12
ALL = ",".join(PARALLEL_ESTIMATORS)


@pytest.fixture
def log_files(tmp_path: Path) -> Path:
    """Three Parquet files of one epsilon-greedy-like log (logged propensities vary by row)."""
    pytest.importorskip("pyarrow")
    rng = np.random.default_rng(7)
    n = 900
    X = contexts(rng, n)
    probs = click_prob(X)
    best = probs.argmax(axis=1)
    explore = rng.random(n) < 0.4
    a = np.where(explore, rng.integers(0, 4, n), best)
    pscore = np.where(a == best, 0.6 + 0.1, 0.1)
    r = (rng.random(n) < probs[np.arange(n), a]).astype(int)
    frame = pd.DataFrame(
        {
            "action": np.array(list("abcd"))[a],
            "candidates": "a|b|c|d",
            "propensity": pscore,
            "reward": r,
            **{f"x_{j}": X[:, j] for j in range(X.shape[1])},
        }
    )
    folder = tmp_path / "logs"
    folder.mkdir()
    for i, lo in enumerate((0, 250, 600)):
        hi = {0: 250, 250: 600, 600: n}[lo]
        frame.iloc[lo:hi].to_parquet(folder / f"part-{i}.parquet", index=False)
    return folder


def _close(a: float, b: float) -> bool:
    return (np.isnan(a) and np.isnan(b)) or abs(a - b) <= TOL * max(1.0, abs(b))


def _same_estimate(a: Estimate, b: Estimate) -> None:
    for f in fields(Estimate):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, float):
            assert _close(x, y), (a.estimator, f.name, x, y)
        elif isinstance(x, dict):
            assert x.keys() == y.keys()
            for key in x:
                assert _close(x[key], y[key]), (a.estimator, key)
        else:
            assert x == y, (a.estimator, f.name)


def assert_same_evaluation(par: PolicyEvaluation, single: PolicyEvaluation) -> None:
    assert list(par.estimates) == list(single.estimates)
    for name in single.estimates:
        _same_estimate(par.estimates[name], single.estimates[name])
        u, v = par.uplifts[name], single.uplifts[name]
        for key in ("value", "ci_low", "ci_high", "std_error"):
            assert _close(getattr(u, key), getattr(v, key)), (name, key)
        assert u.significant == v.significant
    _same_estimate(par.logged, single.logged)
    assert (par.n_rows, par.n_nonzero_rewards, par.skipped) == (
        single.n_rows,
        single.n_nonzero_rewards,
        single.skipped,
    )
    assert par.support is not None and single.support is not None
    assert par.support.n_rows == single.support.n_rows
    assert par.support.supported == single.support.supported
    assert par.warnings == single.warnings


def test_a_glob_is_one_log_in_file_name_order(log_files: Path) -> None:
    result = evaluate_log(log_files / "*.parquet", policy=LinUCB(alpha=0.3, seed=0))
    assert result.log["files"] == [str(log_files / f"part-{i}.parquet") for i in range(3)]
    assert result.log["n_rows_loaded"] == 900 and result.evaluation.n_rows == 450


def test_workers_give_the_single_process_result(log_files: Path) -> None:
    pattern = log_files / "*.parquet"
    policy = LinUCB(alpha=0.3, epsilon=0.1, seed=0)
    single = evaluate_log(pattern, policy=policy, estimators=ALL, clip=20.0, tau=5.0)
    par = evaluate_log(pattern, policy=policy, estimators=ALL, clip=20.0, tau=5.0, workers=2)
    assert_same_evaluation(par.evaluation, single.evaluation)
    assert par.evaluation.settings["workers"] == 2


@pytest.mark.parametrize("n_parts", [1, 3, 17])
def test_any_number_of_parts_on_threads(log_files: Path, n_parts: int) -> None:
    from bandit_engine.evaluation.datasets import load_logs
    from bandit_engine.evaluation.dispatch import evaluate_policy
    from bandit_engine.evaluation.policy_log import policy_log_from_logged

    log = policy_log_from_logged(load_logs(sorted(log_files.glob("*.parquet"))))
    policy = LinUCB(alpha=0.5, epsilon=0.2, seed=1)
    single = evaluate_policy(policy, log, estimators=PARALLEL_ESTIMATORS, seed=4)
    par = evaluate_policy_parallel(
        policy,
        log,
        workers=2,
        estimators=PARALLEL_ESTIMATORS,
        seed=4,
        n_parts=n_parts,
        processes=False,
    )
    assert_same_evaluation(par, single)


def test_cli_workers_print_the_same_numbers(log_files: Path) -> None:
    args = ["evaluate", str(log_files / "*.parquet"), "--policy", "linucb:alpha=0.3,epsilon=0.1"]
    args += ["--estimators", "ips,snips,dr", "--json"]
    one = runner.invoke(app, args)
    two = runner.invoke(app, [*args, "--workers", "2"])
    assert one.exit_code == 0 and two.exit_code == 0, one.stderr + two.stderr
    a, b = json.loads(one.stdout), json.loads(two.stdout)
    for x, y in zip(a["estimates"], b["estimates"], strict=True):
        for key in ("value", "ci_low", "ci_high", "std_error", "ess"):
            assert _close(y[key], x[key]), key
        assert _close(y["uplift"]["value"], x["uplift"]["value"])


def test_what_workers_refuse(log_files: Path) -> None:
    pattern = log_files / "*.parquet"
    with pytest.raises(ConfigError, match="replay"):
        evaluate_log(pattern, policy=LinUCB(seed=0), estimators="ips,replay", workers=2)
    with pytest.raises(ConfigError, match="ci must be 'normal' with workers"):
        evaluate_log(pattern, policy=LinUCB(seed=0), ci="bootstrap", workers=2)
    with pytest.raises(ConfigError, match="exact probabilities"):
        evaluate_log(pattern, policy=LinearTS(mode="shared", seed=0), workers=2)
    with pytest.raises(ConfigError, match="workers must be an int >= 1"):
        evaluate_log(pattern, policy=LinUCB(seed=0), workers=0)
    with pytest.raises(NotFoundError, match="matches no file"):
        evaluate_log(log_files / "*.csv", policy=LinUCB(seed=0))
