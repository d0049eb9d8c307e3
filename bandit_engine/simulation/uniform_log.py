"""Replay of a simulated uniform-random log beside the policy's true value.

For each seed:

1. **Log.** A uniformly random engine (the logging policy) runs ``replay.rounds`` decisions in the
   seed's world and writes every decision, event and learned reward to an
   :class:`~bandit_engine.store.EventLog` (the ``--log`` file if one is given, else a temporary
   one), exactly as the HTTP server would.
2. **Replay.** The log is read back with :func:`bandit_engine.evaluation.datasets.load_engine_log` and
   evaluated with the project's one online-replay implementation,
   :func:`bandit_engine.evaluation.online_replay.online_replay` (Li, Chu, Langford, Wang, WSDM
   2011): the evaluated policy walks the rows in order and learns only from the rows where it
   chose the logged bundle. Its estimate is the mean logged reward of the matched rows.
3. **Truth.** The same policy is run live through a real engine on a random thinning of the
   logging stream, ``truth_runs`` times with different policy seeds; the true value is the mean
   *expected* reward of its choices (world truth), averaged over the runs.

Why the truth is measured this way
----------------------------------
Replay of a learning policy on ``T`` logged rows evaluates the policy after about ``T / K`` rounds
of learning (``K`` candidates per decision), not after ``T``. Li et al.'s argument: on a uniform
log each row matches with probability ``1 / K`` independently of the context, so the matched rows
are distributed like the policy's own first ``T / K`` live rounds. The live comparison therefore
runs the policy on the logging stream thinned with probability ``1 / K``: the same users and times
(so deal validity, daily patterns and drift line up), about as many rounds as replay matches.

Two details make the correspondence exact rather than approximate:

* **Varying K.** The argument needs the match probability to be the same for every row; with
  candidate sets of different sizes (cities with more deals, users of unknown city who see every
  city) rows with few candidates would match more often and be over-represented. Before replaying,
  each row is kept independently with probability ``K_i / K_max``, so a row is kept *and* matched
  with probability ``1 / K_max`` whatever its context (rejection sampling, independent of the
  policy). The live runs thin the stream with the same ``1 / K_max``. With constant ``K`` nothing
  is dropped.
* **Feedback delay.** ``online_replay`` learns from a matched row at once, before the next row. The
  live runs use the scenario's reward weights with an attribution window of 0 seconds, so each
  decision is learned before the next one too. (With delayed orders the log's rewards miss the
  late orders while the expected reward counts them: replay is only comparable without delays, as
  in ``simulations/replay.toml``.)

The replay interval is the ratio-estimator interval of the matched mean; it treats matched rows as
independent although the policy changes as it learns (approximate, see ``online_replay``). The
true value has its own standard error over the live runs, reported beside it.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..evaluation.datasets import load_engine_log
from ..evaluation.online_replay import online_replay
from ..evaluation.policy_log import policy_log_from_logged
from ..records import Estimate
from ..store import EventLog
from .arms import build_arm_engine, catalog_feature_names, make_arm_policy
from .policy_spec import PolicySpec
from .runner import Progress, run_stream, simulation_hmac_key
from .scenario import Scenario
from .streams import Stream, draw_outcomes, seed_streams
from .world import World

__all__ = ["ReplayResult", "ReplaySeed", "run_replay"]


@dataclass(frozen=True)
class ReplaySeed:
    """Replay estimate and true value of the evaluated policy for one seed."""

    seed: int
    logged: int  # decisions in the uniform log
    kept: int  # rows kept by the K_i / K_max rejection step
    k_min: int
    k_max: int
    estimate: Estimate  # online replay (n = matched rows)
    truth: float  # mean expected reward of the live runs
    truth_se: float  # standard error over the live runs (nan with one run)
    truth_rounds: float  # mean number of rounds of a live run

    @property
    def covered(self) -> bool:
        """Whether the true value lies inside the replay interval."""
        return self.estimate.ci_low <= self.truth <= self.estimate.ci_high

    def to_dict(self) -> dict[str, Any]:
        e = self.estimate
        return {
            "seed": self.seed,
            "logged": self.logged,
            "kept": self.kept,
            "matched": e.n,
            "candidates_min": self.k_min,
            "candidates_max": self.k_max,
            "estimate": e.value,
            "ci_low": e.ci_low,
            "ci_high": e.ci_high,
            "truth": self.truth,
            "truth_se": self.truth_se,
            "truth_rounds": self.truth_rounds,
            "covered": self.covered,
        }


@dataclass(frozen=True)
class ReplayResult:
    """Replay versus truth over every seed of the run."""

    policy: PolicySpec
    label: str
    seeds: tuple[ReplaySeed, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.label,
            "spec": self.policy.to_dict(),
            "logging_policy": "uniform",
            "method": (
                "online replay (Li et al. 2011) of a uniform-random engine log; rows kept with "
                "probability K_i/K_max first; truth: mean expected reward of live runs on the "
                "logging stream thinned by 1/K_max, with immediate feedback like the replay"
            ),
            "seeds": [s.to_dict() for s in self.seeds],
            "covered": sum(s.covered for s in self.seeds),
        }


def _target(scenario: Scenario) -> PolicySpec:
    rep = scenario.replay
    assert rep is not None
    if rep.policy is not None:
        return rep.policy
    return scenario.policies[0]


def replay_seed(
    scenario: Scenario,
    seed: int,
    *,
    log: EventLog | None = None,
    progress: Progress | None = None,
    workdir: str | None = None,
) -> ReplaySeed:
    """Log, replay and measure the truth for one seed (see the module docstring)."""
    rep = scenario.replay
    assert rep is not None
    target = _target(scenario)
    rs = seed_streams(seed, scenario.run.world_seed)
    world = World.generate(scenario.world, seed=rs.world_seed)
    r_stream, r_out, r_logpol, r_thin, r_pol = rs.replay.spawn(5)
    n = rep.rounds or scenario.run.rounds
    times, users = world.arrivals(n, r_stream)
    stream = Stream(times, users)
    draws = draw_outcomes(n, r_out, scenario.orders)
    names = catalog_feature_names(world)
    model_id = f"replay-{scenario.name}-s{seed}"

    def run_log(elog: EventLog) -> ReplaySeed:
        logger = build_arm_engine(
            world,
            PolicySpec.create("uniform"),
            rewards=scenario.rewards,
            policy_seed=int(r_logpol.integers(2**31)),
            model_id=model_id,
            id_prefix=f"r{seed}",
            feature_names=names,
        )
        run_stream(
            world,
            stream,
            draws,
            [logger],
            rewards=scenario.rewards,
            log=elog,
            progress=progress,
            seed=seed,
            labels=["uniform (logging)"],
        )
        data = load_engine_log(elog.path, model_id=model_id)
        plog = policy_log_from_logged(data, catalog=logger.catalog, source=model_id)
        k = plog.candidate_counts()
        k_max = int(k.max())
        # Rejection step (module docstring): kept and matched with probability 1 / K_max.
        kept = np.flatnonzero(r_thin.random(plog.n_rows) < k / k_max)
        policy = make_arm_policy(target, seed=int(r_pol.integers(2**31)), feature_names=names)
        est = online_replay(policy, plog.rows(kept), seed=int(r_pol.integers(2**31)))
        truth, se, rounds = _truth(world, stream, draws, scenario, target, names, k_max, r_thin)
        return ReplaySeed(
            seed=seed,
            logged=plog.n_rows,
            kept=int(kept.shape[0]),
            k_min=int(k.min()),
            k_max=k_max,
            estimate=est,
            truth=truth,
            truth_se=se,
            truth_rounds=rounds,
        )

    if log is not None:
        return run_log(log)
    with (
        tempfile.TemporaryDirectory(dir=workdir, prefix="bandit-replay-") as tmp,
        EventLog(
            Path(tmp) / "replay.sqlite", hmac_key=simulation_hmac_key(), synchronous="OFF"
        ) as elog,
    ):
        return run_log(elog)


def _truth(
    world: World,
    stream: Stream,
    draws: Any,
    scenario: Scenario,
    target: PolicySpec,
    names: list[str],
    k_max: int,
    rng: np.random.Generator,
) -> tuple[float, float, float]:
    """Mean expected reward of ``truth_runs`` live runs on 1/K_max-thinned copies of the stream."""
    rep = scenario.replay
    assert rep is not None
    # Immediate feedback, as in online replay (module docstring).
    rewards = replace(scenario.rewards, window=0.0)
    values, lengths = [], []
    for r in range(rep.truth_runs):
        keep = np.flatnonzero(rng.random(len(stream)) < 1.0 / k_max)
        if keep.shape[0] == 0:
            continue
        engine = build_arm_engine(
            world,
            target,
            rewards=rewards,
            policy_seed=int(rng.integers(2**31)),
            model_id=f"replay-truth-{r}",
            id_prefix=f"t{r}",
            feature_names=names,
        )
        trace = run_stream(
            world,
            stream.subset(keep),
            draws.subset(keep),
            [engine],
            rewards=rewards,
            labels=["truth"],
        )
        values.append(float(trace.arms["truth"].expected.mean()))
        lengths.append(keep.shape[0])
    v = np.asarray(values)
    se = float(v.std(ddof=1) / np.sqrt(v.shape[0])) if v.shape[0] >= 2 else float("nan")
    return float(v.mean()), se, float(np.mean(lengths))


def run_replay(
    scenario: Scenario,
    *,
    log: EventLog | None = None,
    progress: Progress | None = None,
) -> ReplayResult:
    """The replay part of ``scenario`` for every seed of its run."""
    target = _target(scenario)
    run = scenario.run
    seeds = tuple(
        replay_seed(scenario, run.seed + k, log=log, progress=progress) for k in range(run.seeds)
    )
    label = target.label or target.describe()
    return ReplayResult(target, label, seeds)
