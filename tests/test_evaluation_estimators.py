"""Off-policy estimators on synthetic logs whose true policy value is known exactly.

The world has a finite population of context types, drawn uniformly, so the evaluated policy's
value ``mean_m sum_a pi(a|m) q(m, a)`` is computed exactly rather than by simulation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from bandit_engine.errors import ConfigError, DataError
from bandit_engine.evaluation import (
    dm,
    dr,
    ips,
    per_position,
    replay,
    sndr,
    snips,
    switch_dr,
)


@dataclass(frozen=True)
class World:
    q: np.ndarray  # (M, K) true click probabilities
    logging: np.ndarray  # (M, K) logging policy
    target: np.ndarray  # (M, K) evaluated policy

    @property
    def truth(self) -> float:
        return float((self.target * self.q).sum(axis=1).mean())


def make_world(
    seed: int = 0, n_types: int = 30, n_actions: int = 5, uniform: bool = False
) -> World:
    g = np.random.default_rng(seed)
    X = g.normal(size=(n_types, 3))
    q = 1.0 / (1.0 + np.exp(-(X @ g.normal(size=(3, n_actions)))))
    if uniform:
        logging = np.full((n_types, n_actions), 1.0 / n_actions)
    else:
        logits = X @ g.normal(size=(3, n_actions))
        soft = np.exp(logits - logits.max(axis=1, keepdims=True))
        soft /= soft.sum(axis=1, keepdims=True)
        # Mixing in 20% uniform keeps every propensity >= 0.04: weights stay below ~20.
        logging = 0.8 * soft + 0.2 / n_actions
    greedy = np.eye(n_actions)[q.argmax(axis=1)]
    target = 0.7 * greedy + 0.3 / n_actions
    return World(q=q, logging=logging, target=target)


def sample_log(world: World, n: int, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Logged rows (keyword arrays for the estimators) and the context type of each row."""
    g = np.random.default_rng(seed)
    n_types, n_actions = world.q.shape
    m = g.integers(n_types, size=n)
    cdf = np.cumsum(world.logging[m], axis=1)
    a = np.minimum((g.random(n)[:, None] >= cdf).sum(axis=1), n_actions - 1)
    r = (g.random(n) < world.q[m, a]).astype(float)
    log = {
        "reward": r,
        "action": a,
        "pscore": world.logging[m, a],
        "action_dist": world.target[m],
    }
    return log, m


WORLD = make_world()


# -- textbook identities -------------------------------------------------------------------


def test_ips_and_snips_equal_logged_mean_when_evaluating_the_logging_policy() -> None:
    log, m = sample_log(WORLD, 3000, seed=1)
    log["action_dist"] = WORLD.logging[m]
    mean = log["reward"].mean()
    assert ips(**log).value == pytest.approx(mean, abs=1e-12)
    assert snips(**log).value == pytest.approx(mean, abs=1e-12)
    # All weights are 1: the diagnostics must say so.
    est = ips(**log)
    assert est.ess == pytest.approx(3000, rel=1e-12)
    assert est.max_weight == pytest.approx(1.0, abs=1e-12)


def test_action_prob_gives_the_same_result_as_action_dist() -> None:
    log, _ = sample_log(WORLD, 2000, seed=2)
    dist = log.pop("action_dist")
    prob = dist[np.arange(2000), log["action"]]
    for fn in (ips, snips):
        a, b = fn(**log, action_dist=dist), fn(**log, action_prob=prob)
        assert a.value == b.value and a.std_error == b.std_error and a.ess == b.ess


def test_dr_family_equals_dm_when_the_model_is_exact_at_the_logged_action() -> None:
    # Deterministic rewards equal to the model's prediction make every residual r - qhat(a)
    # exactly 0, so DR, SNDR and Switch-DR reduce to DM.
    log, m = sample_log(WORLD, 2000, seed=3)
    qhat = WORLD.q[m]
    log["reward"] = qhat[np.arange(2000), log["action"]]
    base = dm(action_dist=log["action_dist"], estimated_rewards=qhat).value
    assert dr(**log, estimated_rewards=qhat).value == pytest.approx(base, abs=1e-12)
    assert sndr(**log, estimated_rewards=qhat).value == pytest.approx(base, abs=1e-12)
    assert switch_dr(**log, estimated_rewards=qhat, tau=3.0).value == pytest.approx(base, abs=1e-12)
    # And the reported model/correction split agrees.
    est = dr(**log, estimated_rewards=qhat)
    assert est.extra["dm"] == pytest.approx(base, abs=1e-12)
    assert est.extra["correction"] == pytest.approx(0.0, abs=1e-12)


def test_switch_dr_limits_are_dr_and_dm() -> None:
    log, m = sample_log(WORLD, 2000, seed=4)
    qhat = WORLD.q[m] + 0.05  # a biased model, so DR and DM differ
    v_dr = dr(**log, estimated_rewards=qhat).value
    v_dm = dm(action_dist=log["action_dist"], estimated_rewards=qhat).value
    assert abs(v_dr - v_dm) > 1e-3
    assert switch_dr(**log, estimated_rewards=qhat, tau=np.inf).value == pytest.approx(v_dr)
    assert switch_dr(**log, estimated_rewards=qhat, tau=0.0).value == pytest.approx(v_dm)
    w = log["action_dist"][np.arange(2000), log["action"]] / log["pscore"]
    mid = switch_dr(**log, estimated_rewards=qhat, tau=2.0)
    assert mid.clipped_share == pytest.approx(np.mean(w > 2.0))


def test_dm_ignores_rewards_and_reports_no_weights() -> None:
    log, m = sample_log(WORLD, 500, seed=5)
    qhat = WORLD.q[m]
    a = dm(action_dist=log["action_dist"], estimated_rewards=qhat, reward=log["reward"])
    b = dm(action_dist=log["action_dist"], estimated_rewards=qhat, reward=1.0 - log["reward"])
    assert a.value == b.value
    assert a.value == pytest.approx(float((log["action_dist"] * qhat).sum(axis=1).mean()))
    assert np.isnan(a.ess) and np.isnan(a.max_weight)


# -- clipping diagnostics ------------------------------------------------------------------


def test_clipping_value_and_diagnostics() -> None:
    log, _ = sample_log(WORLD, 4000, seed=6)
    w = log["action_dist"][np.arange(4000), log["action"]] / log["pscore"]
    clip = float(np.quantile(w, 0.9))
    est = ips(**log, clip=clip)
    wc = np.minimum(w, clip)
    assert est.value == pytest.approx(float(np.mean(wc * log["reward"])), rel=1e-12)
    assert est.clipped_share == pytest.approx(np.mean(w > clip))
    assert 0.05 < est.clipped_share < 0.15
    assert est.max_weight == pytest.approx(clip)
    assert est.extra["max_raw_weight"] == pytest.approx(w.max())
    assert est.ess == pytest.approx(wc.sum() ** 2 / (wc**2).sum())
    unclipped = ips(**log)
    assert unclipped.clipped_share == 0.0
    assert unclipped.max_weight == pytest.approx(w.max())
    assert ips(**log, clip=w.max() + 1.0).value == pytest.approx(unclipped.value, rel=1e-12)
    # Clipping lowers the weights, hence the variance.
    assert est.std_error < unclipped.std_error


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"clip": -1.0}, "clip must be > 0, got -1.0"),
        ({"clip": 0.0}, "clip must be > 0, got 0.0"),
        ({"level": 1.5}, "level must be in (0, 1), got 1.5"),
        ({"ci": "exact"}, "ci must be one of ['normal', 'bootstrap'], got 'exact'"),
        ({"ci": "bootstrap", "n_bootstrap": 1}, "n_bootstrap must be an int >= 2, got 1"),
    ],
)
def test_hyperparameters_are_validated(kwargs: dict[str, Any], needle: str) -> None:
    log, _ = sample_log(WORLD, 50, seed=7)
    with pytest.raises(ConfigError) as info:
        ips(**log, **kwargs)
    assert needle in str(info.value)


def test_switch_dr_tau_validated() -> None:
    log, m = sample_log(WORLD, 50, seed=7)
    with pytest.raises(ConfigError, match=r"tau must be >= 0, got -1\.0"):
        switch_dr(**log, estimated_rewards=WORLD.q[m], tau=-1.0)


# -- statistics over many seeds ------------------------------------------------------------


def _estimates(n_seeds: int, n: int, first_seed: int) -> dict[str, np.ndarray]:
    out: dict[str, list[float]] = {}
    for s in range(first_seed, first_seed + n_seeds):
        log, m = sample_log(WORLD, n, seed=s)
        # A deliberately wrong model (+0.1 everywhere): DR must still be unbiased.
        biased_q = np.clip(WORLD.q[m] + 0.1, 0.0, 1.0)
        results = {
            "ips": ips(**log),
            "snips": snips(**log),
            "dr": dr(**log, estimated_rewards=biased_q),
            "sndr": sndr(**log, estimated_rewards=biased_q),
            "switch_dr_inf": switch_dr(**log, estimated_rewards=biased_q, tau=np.inf),
            "dm_exact": dm(action_dist=log["action_dist"], estimated_rewards=WORLD.q[m]),
            "dm_biased": dm(action_dist=log["action_dist"], estimated_rewards=biased_q),
        }
        out.setdefault("logged_mean", []).append(float(log["reward"].mean()))
        for name, est in results.items():
            out.setdefault(name, []).append(est.value)
            out.setdefault(name + "_covers", []).append(
                float(est.ci_low <= WORLD.truth <= est.ci_high)
            )
    return {k: np.asarray(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def many_seeds() -> dict[str, np.ndarray]:
    # 400 seeds x 1000 rows: about 3 s.
    return _estimates(400, 1000, first_seed=1000)


@pytest.mark.parametrize("name", ["ips", "snips", "dr", "sndr", "switch_dr_inf", "dm_exact"])
def test_unbiased_over_many_seeds(many_seeds: dict[str, np.ndarray], name: str) -> None:
    values = many_seeds[name]
    se_of_mean = values.std(ddof=1) / np.sqrt(values.shape[0])
    # 4 standard errors of the mean: an unbiased estimator fails this with probability ~6e-5.
    # SNIPS / SNDR carry an O(1/n) bias, far below 4 se at n = 1000 rows per seed.
    assert abs(values.mean() - WORLD.truth) < 4.0 * se_of_mean, (values.mean(), WORLD.truth)


def test_the_unbiasedness_check_has_power(many_seeds: dict[str, np.ndarray]) -> None:
    # The same check rejects the naive logged mean and DM with a wrong model: the world is
    # built so that ignoring the weights, or trusting a biased model, is visibly wrong.
    for name in ("logged_mean", "dm_biased"):
        values = many_seeds[name]
        se_of_mean = values.std(ddof=1) / np.sqrt(values.shape[0])
        assert abs(values.mean() - WORLD.truth) > 10.0 * se_of_mean, name


@pytest.mark.parametrize("name", ["ips", "snips", "dr", "sndr", "dm_exact"])
def test_normal_interval_coverage_near_95_percent(
    many_seeds: dict[str, np.ndarray], name: str
) -> None:
    coverage = many_seeds[name + "_covers"].mean()
    # Over 400 independent seeds the coverage of a correct 95% interval has sd 0.011:
    # [0.90, 0.99] is > 3.5 sd from 0.95 on either side.
    assert 0.90 <= coverage <= 0.99, coverage


def test_dm_with_a_wrong_model_undercovers(many_seeds: dict[str, np.ndarray]) -> None:
    # DM's interval ignores model error; with a biased model it must fail to cover.
    assert many_seeds["dm_biased_covers"].mean() < 0.5


# -- bootstrap -----------------------------------------------------------------------------


def test_bootstrap_is_reproducible_with_a_seed_and_close_to_normal() -> None:
    log, m = sample_log(WORLD, 3000, seed=8)
    qhat = WORLD.q[m]
    for fn, extra in ((ips, {}), (snips, {}), (dr, {"estimated_rewards": qhat})):
        a = fn(**log, **extra, ci="bootstrap", n_bootstrap=500, seed=11)
        b = fn(**log, **extra, ci="bootstrap", n_bootstrap=500, seed=11)
        c = fn(**log, **extra, ci="bootstrap", n_bootstrap=500, seed=12)
        normal = fn(**log, **extra)
        assert a.ci_method == "bootstrap" and normal.ci_method == "normal"
        assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
        assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)
        assert a.value == normal.value
        # With 3000 rows both intervals estimate the same sd; 500 resamples estimate it within
        # a few percent, so 25% is a wide margin that still catches a wrong scale.
        width_ratio = (a.ci_high - a.ci_low) / (normal.ci_high - normal.ci_low)
        assert 0.75 < width_ratio < 1.25, (fn.__name__, width_ratio)
        assert a.extra["bootstrap_std"] == pytest.approx(normal.std_error, rel=0.25)


# -- positions -----------------------------------------------------------------------------


def test_position_slices_a_three_dimensional_action_dist() -> None:
    log, m = sample_log(WORLD, 900, seed=9)
    g = np.random.default_rng(0)
    position = g.integers(3, size=900)
    dist3 = np.stack([WORLD.target[m], WORLD.logging[m], np.full_like(WORLD.target[m], 0.2)], 2)
    q3 = np.stack([WORLD.q[m], WORLD.q[m] * 0.5, WORLD.q[m] * 0.25], axis=2)
    flat_dist = dist3[np.arange(900), :, position]
    flat_q = q3[np.arange(900), :, position]
    base = {k: log[k] for k in ("reward", "action", "pscore")}
    a = dr(**base, action_dist=dist3, estimated_rewards=q3, position=position)
    b = dr(**base, action_dist=flat_dist, estimated_rewards=flat_q)
    assert a.value == pytest.approx(b.value, rel=1e-12)
    assert ips(**base, action_dist=dist3, position=position).value == pytest.approx(
        ips(**base, action_dist=flat_dist).value, rel=1e-12
    )


def test_per_position_matches_subsets_and_pools_to_the_overall_value() -> None:
    log, _m = sample_log(WORLD, 1200, seed=10)
    position = np.random.default_rng(1).integers(3, size=1200)
    parts = per_position(ips, position=position, **log)
    assert sorted(parts) == [0, 1, 2]
    for p, est in parts.items():
        rows = position == p
        sub = ips(**{k: v[rows] for k, v in log.items()})
        assert est.value == pytest.approx(sub.value, rel=1e-12)
        assert est.n == rows.sum()
    # IPS is a mean over rows, so the pooled value is the row-weighted mean of the parts.
    pooled = sum(est.value * est.n for est in parts.values()) / 1200
    assert pooled == pytest.approx(ips(**log).value, rel=1e-12)


# -- replay --------------------------------------------------------------------------------


UNIFORM = make_world(seed=3, uniform=True)


def test_replay_keeps_matching_rows_only() -> None:
    log, m = sample_log(UNIFORM, 5000, seed=11)
    greedy = UNIFORM.q[m].argmax(axis=1)
    est = replay(
        reward=log["reward"], action=log["action"], policy_action=greedy, pscore=log["pscore"]
    )
    match = log["action"] == greedy
    assert est.n == match.sum()
    assert est.value == pytest.approx(log["reward"][match].mean(), rel=1e-12)
    assert est.extra["n_logged"] == 5000
    # A mean of n_matched Bernoulli rewards: the usual standard error.
    sd = log["reward"][match].std(ddof=1)
    assert est.std_error == pytest.approx(sd / np.sqrt(match.sum()), rel=0.01)


def test_replay_is_unbiased_on_uniform_logs() -> None:
    truth = UNIFORM.truth
    values = []
    for s in range(200):
        log, m = sample_log(UNIFORM, 1000, seed=500 + s)
        values.append(
            replay(
                reward=log["reward"], action=log["action"], action_dist=UNIFORM.target[m], seed=s
            ).value
        )
    arr = np.asarray(values)
    # 4 standard errors of the mean over 200 seeds (see test_unbiased_over_many_seeds).
    assert abs(arr.mean() - truth) < 4.0 * arr.std(ddof=1) / np.sqrt(200)


def test_replay_stochastic_policy_is_seeded() -> None:
    log, m = sample_log(UNIFORM, 2000, seed=12)
    args = {"reward": log["reward"], "action": log["action"], "action_dist": UNIFORM.target[m]}
    assert replay(**args, seed=5) == replay(**args, seed=5)
    assert (
        replay(**args, seed=5).n != replay(**args, seed=6).n
        or replay(**args, seed=5).value != replay(**args, seed=6).value
    )


def test_replay_refuses_non_uniform_logging_and_zero_matches() -> None:
    log, _m = sample_log(WORLD, 500, seed=13)
    with pytest.raises(DataError, match=r"uniformly random logging.*ips"):
        replay(
            reward=log["reward"],
            action=log["action"],
            policy_action=log["action"],
            pscore=log["pscore"],
        )
    never = (log["action"] + 1) % 5
    with pytest.raises(DataError, match="matched 0 of 500"):
        replay(reward=log["reward"], action=log["action"], policy_action=never)
    # pscore = 1 / n_candidates with varying candidate counts is uniform logging.
    nc = np.where(np.arange(500) % 2 == 0, 4, 5)
    est = replay(
        reward=log["reward"],
        action=log["action"],
        policy_action=log["action"],
        pscore=1.0 / nc,
        n_candidates=nc,
    )
    assert est.n == 500
    with pytest.raises(DataError, match=r"pscore = 1 / n_candidates"):
        replay(
            reward=log["reward"],
            action=log["action"],
            policy_action=log["action"],
            pscore=np.full(500, 0.25),
            n_candidates=nc,
        )


def test_snips_undefined_when_all_weights_are_zero() -> None:
    log, _ = sample_log(WORLD, 100, seed=14)
    zero = np.zeros((100, 5))
    zero[np.arange(100), (log["action"] + 1) % 5] = 1.0  # never the logged action
    log["action_dist"] = zero
    assert ips(**log).value == 0.0
    with pytest.raises(DataError, match="every importance weight is 0"):
        snips(**log)
