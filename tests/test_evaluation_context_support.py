"""Support per context: the evaluated policy's mass on actions the log never (or almost never)
tried in each context group, as a distribution with the worst contexts, feeding the one support
rule (``NO SUPPORT, NOT IDENTIFIABLE`` above the limit).

Goals held here: a logger that randomises (propensities below 1) but never over some actions in
some contexts is caught, with the contexts named; a uniform log is not flagged, with segment or
continuous contexts; the per-context statistics merge across parts to the whole-log result (what
the Dask path relies on); ``bandit evaluate`` shows the distribution and the worst contexts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from bandit_engine.cli import app
from bandit_engine.evaluation import PolicyLog, evaluate_policy
from bandit_engine.evaluation.dispatch import log_context_groups, log_support
from bandit_engine.evaluation.support import MAX_UNSUPPORTED_MASS, context_groups
from bandit_engine.policies import UniformRandom

K = 4


def _segment_log(n: int, seed: int, *, uniform: bool) -> PolicyLog:
    """Two segments (one-hot context). Uniform: every action in both. Else: segment A's logger
    randomises over actions {0, 1} only, segment B's over {2, 3} only (propensity 1/2)."""
    rng = np.random.default_rng(seed)
    seg = rng.integers(0, 2, n)
    if uniform:
        action = rng.integers(0, K, n)
        pscore = np.full(n, 1.0 / K)
    else:
        action = 2 * seg + rng.integers(0, 2, n)
        pscore = np.full(n, 0.5)
    return PolicyLog(
        context=np.eye(2)[seg],
        arm_ids=("a", "b", "c", "d"),
        arm_features=np.eye(K),
        action=action,
        reward=(rng.random(n) < 0.1).astype(float),
        pscore=pscore,
    )


def test_a_logger_that_never_tries_some_actions_per_segment_is_caught() -> None:
    log = _segment_log(2000, 0, uniform=False)
    # the propensities (1/2 everywhere) do not show it: only the per-context rule can
    ev = evaluate_policy(UniformRandom(seed=0), log, estimators=["ips", "snips", "dm"])
    s = ev.support
    assert s is not None and s.deterministic_share == 0.0 and s.n_exact == 0
    assert not ev.supported
    assert s.unsupported_mass == pytest.approx(0.5)  # a uniform policy: half its mass, everywhere
    assert ev.warnings[0].startswith("NO SUPPORT, NOT IDENTIFIABLE")
    assert "never (or almost never) tried" in ev.warnings[0]
    assert not any(u.significant for u in ev.uplifts.values())
    d = s.to_dict()
    assert d["verdict"] == "not identifiable"
    ctx = d["per_context"]
    assert ctx["groups"] == "2 distinct logged contexts" and ctx["n_groups"] == 2
    assert ctx["mean_mass"] == pytest.approx(0.5) and ctx["rows_above_limit"] == 1.0
    worst = {w["context"]: w for w in ctx["worst"]}
    assert set(worst) == {"x[0]=1", "x[1]=1"}
    # segment A (x[0]=1) never tried c and d, segment B never tried a and b
    assert set(worst["x[0]=1"]["top_actions"]) == {"c", "d"}
    assert set(worst["x[1]=1"]["top_actions"]) == {"a", "b"}
    assert worst["x[0]=1"]["never_tried"] == 2


def test_uniform_logs_are_not_flagged() -> None:
    ev = evaluate_policy(UniformRandom(seed=0), _segment_log(2000, 1, uniform=True))
    assert ev.supported and ev.support is not None
    assert ev.support.context_unsupported_share == 0.0
    assert ev.support.to_dict()["per_context"]["worst"] == []
    # continuous contexts: k-means groups, still nothing flagged on a uniform log
    rng = np.random.default_rng(2)
    n = 4000
    log = PolicyLog(
        context=rng.normal(size=(n, 3)),
        arm_ids=("a", "b", "c", "d"),
        arm_features=np.eye(K),
        action=rng.integers(0, K, n),
        reward=(rng.random(n) < 0.1).astype(float),
        pscore=np.full(n, 1.0 / K),
    )
    ev = evaluate_policy(UniformRandom(seed=0), log, estimators=["ips"])
    assert ev.supported and ev.support is not None
    ctx = ev.support.to_dict()["per_context"]
    # at most n / (2 * MIN_EXPECTED * K) = 50 groups: about 20 expected plays per action each
    assert ctx["groups"].endswith("k-means clusters of the standardised context")
    assert 2 <= ctx["n_groups"] <= 50
    assert ctx["max_mass"] == 0.0


def test_a_corner_of_a_continuous_context_is_found_and_named() -> None:
    """The logger never plays action d when x[0] > 1 (16% of users): a uniform policy puts a
    quarter of its mass there, about 4% overall, above the 1% limit."""
    rng = np.random.default_rng(5)
    n = 8000
    X = rng.normal(size=(n, 2))
    corner = X[:, 0] > 1.0
    action = np.where(corner, rng.integers(0, 3, n), rng.integers(0, K, n))
    pscore = np.where(corner, 1.0 / 3.0, 1.0 / K)
    log = PolicyLog(
        context=X,
        arm_ids=("a", "b", "c", "d"),
        arm_features=np.eye(K),
        action=action,
        reward=(rng.random(n) < 0.1).astype(float),
        pscore=pscore,
    )
    ev = evaluate_policy(UniformRandom(seed=0), log, estimators=["ips"])
    assert ev.support is not None and not ev.supported
    ctx = ev.support.to_dict()["per_context"]
    # clusters do not follow x[0] = 1 exactly: some of the corner shares a cluster with
    # rows where d was played (counted as tried), so the mass is below the exact 4%
    assert MAX_UNSUPPORTED_MASS < ctx["mean_mass"] <= 0.25 * float(corner.mean()) + 1e-9
    top = ctx["worst"][0]
    assert top["unsupported_mass"] == pytest.approx(0.25)
    assert list(top["top_actions"]) == ["d"]
    assert top["context"].startswith("x[0] +")  # the worst cluster sits at high x[0]


def test_context_support_merges_across_parts_to_the_whole() -> None:
    log = _segment_log(3000, 3, uniform=False)
    groups = log_context_groups(log)
    dist = np.random.default_rng(0).dirichlet(np.ones(K), size=log.n_rows)
    whole = log_support(log.reward, log.action, dist, log.pscore, None, None, groups)
    parts = []
    for lo, hi in ((0, 1000), (1000, 1700), (1700, 3000)):
        idx = np.arange(lo, hi)
        parts.append(
            log_support(
                log.reward[idx],
                log.action[idx],
                dist[idx],
                log.pscore[idx],
                None,
                None,
                groups.rows(idx),
            )
        )
    assert whole is not None and all(p is not None for p in parts)
    merged = parts[0].merge(parts[1]).merge(parts[2])  # type: ignore[union-attr]
    assert merged.n_context == whole.n_context
    assert merged.unsupported_mass == pytest.approx(whole.unsupported_mass, abs=1e-12)
    assert merged.context is not None and whole.context is not None
    np.testing.assert_allclose(merged.context.mass, whole.context.mass, atol=1e-12)
    np.testing.assert_array_equal(merged.context.rows, whole.context.rows)


def test_groups_respect_candidate_sets() -> None:
    """An action that was not a candidate in a segment is not 'never tried' there: a policy
    cannot put mass on it, and a uniform logger would not have played it either."""
    n = 1000
    seg = np.arange(n) % 2
    candidates = tuple(np.array([0, 1]) if s == 0 else np.array([0, 1, 2, 3]) for s in seg)
    rng = np.random.default_rng(0)
    action = np.array([int(rng.choice(c)) for c in candidates])
    g = context_groups(np.eye(2)[seg], action, K, candidates=candidates)
    assert not g.rare.any()


runner = CliRunner()


def test_cli_shows_the_distribution_and_the_worst_contexts(tmp_path: Path) -> None:
    log = _segment_log(2000, 4, uniform=False)
    frame = pd.DataFrame({"x_0": log.context[:, 0], "x_1": log.context[:, 1]})
    frame["action"] = [log.arm_ids[a] for a in log.action]
    frame["reward"] = log.reward
    frame["propensity"] = log.pscore
    path = tmp_path / "segments.csv"
    frame.to_csv(path, index=False)
    res = runner.invoke(app, ["evaluate", str(path), "--policy", "uniform"])
    assert res.exit_code == 0, res.output
    assert res.stdout.startswith("!!!")  # the verdict comes before any number
    assert "NOT IDENTIFIABLE" in res.output
    assert "support by context (2 distinct logged contexts)" in res.output
    assert "worst contexts:" in res.output and "x[0]=1 (" in res.output
    res = runner.invoke(app, ["evaluate", str(path), "--policy", "uniform", "--json"])
    doc = json.loads(res.stdout)
    assert doc["support"]["verdict"] == "not identifiable"
    assert doc["support"]["per_context"]["n_groups"] == 2


def test_the_dask_path_gives_the_same_per_context_figures() -> None:
    pytest.importorskip("distributed")
    from bandit_engine.evaluation.parallel import evaluate_policy_parallel

    log = _segment_log(3000, 5, uniform=False)
    names = ["ips", "snips", "dr"]
    one = evaluate_policy(UniformRandom(seed=0), log, estimators=names)
    # threads, not processes: the same code path per part, without process start-up here
    par = evaluate_policy_parallel(
        UniformRandom(seed=0), log, workers=2, estimators=names, processes=False
    )
    assert one.support is not None and par.support is not None
    a, b = one.support.to_dict(), par.support.to_dict()
    assert a["per_context"] == b["per_context"]
    assert b["unsupported_mass"] == pytest.approx(a["unsupported_mass"], abs=1e-12)
    assert not par.supported and par.warnings[0] == one.warnings[0]
