"""``bandit simulate --from-log``: policies and controls replayed on a world fitted to a log.

:func:`simulate_from_log` drives every arm through the rows of a
:class:`~bandit_engine.simulation.logged_world.LoggedWorld` in the log's own order: on row ``i``
a policy sees the logged context and the logged candidates, chooses, gets a reward drawn from the
world's truth ``mean[i, chosen]`` and learns from it at once (``policy.update`` with its own
propensity). The control ``logged`` plays the logged action of every row: the logging policy as
it acted, so its simulated value can be set against the log's own on-policy value.

Common random numbers: per seed one uniform ``u_i`` (and one residual row ``j_i``) per row,
shared by every arm, so the arms are compared paired as in the synthetic simulator. A 0/1 reward
is ``u_i < mean[i, a]``; any other reward is ``mean[i, a] + residual[j_i]``. Seeds change the
draws and the policies' generators, not the world (one cross-fit), so the intervals over seeds
cover the outcome and policy randomness, not the uncertainty of the fitted reward model: the
calibration check is the evidence on that.

:func:`summarize_from_log` gives the same per-policy record and paired uplift
(:func:`~bandit_engine.simulation.uplift.paired_uplift`, expected and realized) as
``bandit simulate``, plus the world, its assumptions and its calibration.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ConfigError
from ..policies.base import Policy
from ..policies.registry import make_policy
from .arms import arm_specs
from .logged_world import LoggedWorld, calibration_check, fit_logged_world
from .policy_spec import PolicySpec
from .summary import _clean
from .uplift import mean_interval, paired_uplift

__all__ = [
    "ASSUMPTIONS",
    "LOGGED",
    "FromLogResult",
    "LogArm",
    "LogArmTrace",
    "from_log_arms",
    "run_from_log",
    "simulate_from_log",
    "summarize_from_log",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
Progress = Callable[[int], None]

#: Label of the control that replays the logged actions (the logging policy as it acted).
LOGGED = "logged"

#: What a reader must accept to believe a ``--from-log`` result (printed with every report).
ASSUMPTIONS = (
    "the reward model is the truth here: every policy is scored on its predictions, not on the "
    "real users, and an effect the model cannot represent does not exist in this world",
    "users, their contexts, the candidates and the arrival order are those of the log, "
    "whatever the simulated policy did; users do not react to what they saw before",
    "rewards are drawn around the model (0/1 rewards: Bernoulli; others: the model plus a "
    "logged residual), the same draws for every policy",
    "intervals over seeds cover the outcome draws and the policies' own randomness, not the "
    "error of the fitted reward model: see the calibration check",
)

_PROGRESS_EVERY = 500


@dataclass(frozen=True)
class LogArm:
    """One arm of a ``--from-log`` run.

    Attributes
    ----------
    label
        Its name in the report.
    role
        ``"policy"`` or ``"control"``.
    build
        ``build(seed)`` returns a fresh policy for one seed; ``None`` replays the logged actions.
    description
        What it is (``linucb(alpha=0.1)``, ``model engine.bandit``, ``the logged actions``).
    """

    label: str
    role: str
    build: Callable[[int], Policy] | None
    description: str = ""

    def __post_init__(self) -> None:
        if self.role not in ("policy", "control"):
            raise ConfigError.for_field("role", self.role, "must be 'policy' or 'control'")
        if not self.label:
            raise ConfigError.for_field("label", self.label, "must be a non-empty string")

    @classmethod
    def logged(cls) -> LogArm:
        """The control that plays the logged action on every row."""
        return cls(LOGGED, "control", None, "the logged actions (the logging policy as it acted)")


@dataclass(frozen=True, eq=False)
class LogArmTrace:
    """What one arm did in one seed: per row the chosen arm, its true expected reward and the
    drawn reward, and the seconds spent in the policy."""

    action: IntArray
    expected: FloatArray
    reward: FloatArray
    seconds: float


@dataclass(frozen=True, eq=False)
class FromLogResult:
    """The result of :func:`simulate_from_log`: the world, the arms, the seeds and per seed a
    trace per arm label, the oracle per row and the calibration check."""

    world: LoggedWorld
    arms: tuple[LogArm, ...]
    seeds: tuple[int, ...]
    traces: tuple[dict[str, LogArmTrace], ...]
    oracle: FloatArray
    calibration: dict[str, Any]
    log_info: dict[str, Any] = field(default_factory=dict)


def _draws(world: LoggedWorld, n: int, seed: int) -> tuple[FloatArray, IntArray]:
    rng = np.random.default_rng([seed, 0x10C])
    return rng.random(n), rng.integers(0, world.n_rows, size=n)


def _reward(world: LoggedWorld, mean: float, u: float, j: int) -> float:
    if world.binary:
        return 1.0 if u < mean else 0.0
    return mean + float(world.residual[j])


def _run_arm(
    world: LoggedWorld,
    arm: LogArm,
    n: int,
    seed: int,
    u: FloatArray,
    j: IntArray,
    progress: Progress | None,
) -> LogArmTrace:
    log = world.log
    mean = world.mean
    action = np.empty(n, dtype=np.int64)
    expected = np.empty(n)
    reward = np.empty(n)
    t0 = time.perf_counter()
    uu, jj = u.tolist(), j.tolist()
    if arm.build is None:
        action[:] = log.action[:n]
        expected[:] = mean[np.arange(n), action]
        reward[:] = [_reward(world, float(e), uu[i], jj[i]) for i, e in enumerate(expected)]
        if progress is not None:
            progress(n)
        return LogArmTrace(action, expected, reward, time.perf_counter() - t0)
    policy = arm.build(seed)
    if getattr(policy, "pair_features", False):
        raise ConfigError(
            f"policy {policy.name!r} scores per-user candidate rows (pair features and live "
            "behaviour) that a log does not hold, so it cannot run on a world fitted to one; "
            "use it in the synthetic simulator (bandit simulate --policy "
            f"{policy.name})",
            field="policy",
            value=policy.name,
        )
    done = 0
    for i in range(n):
        ids, Z, idx = log.arms_of(i)
        x = log.context[i]
        choice = policy.choose(x, ids, Z)
        a = int(choice.index) if idx is None else int(idx[choice.index])
        m = float(mean[i, a])
        r = _reward(world, m, uu[i], jj[i])
        action[i], expected[i], reward[i] = a, m, r
        policy.update(x, log.arm_ids[a], log.arm_features[a], r, float(choice.propensity))
        done += 1
        if progress is not None and done == _PROGRESS_EVERY:
            progress(done)
            done = 0
    if progress is not None and done:
        progress(done)
    close = getattr(policy, "close", None)
    if callable(close):
        close()
    return LogArmTrace(action, expected, reward, time.perf_counter() - t0)


def simulate_from_log(
    world: LoggedWorld,
    arms: Sequence[LogArm],
    *,
    seeds: int = 5,
    seed: int = 0,
    rounds: int | None = None,
    progress: Progress | None = None,
    log_info: dict[str, Any] | None = None,
) -> FromLogResult:
    """Run every arm through the world's rows in log order, ``seeds`` times (module docstring).

    Parameters
    ----------
    world
        From :func:`~bandit_engine.simulation.logged_world.fit_logged_world`.
    arms
        Policies and controls (:class:`LogArm`; :meth:`LogArm.logged` replays the log). Labels
        must be distinct.
    seeds
        Independent runs (seeds ``seed, seed + 1, ...``); >= 2 gives t-intervals over seeds.
    rounds
        Run the first ``rounds`` rows only (default: every row).
    progress
        Called with the number of rows done since its last call.
    log_info
        What was read (recorded in the summary).
    """
    labels = [a.label for a in arms]
    if not arms:
        raise ConfigError.for_field("arms", [], "must name at least one policy or control")
    if len(set(labels)) != len(labels):
        dup = sorted({x for x in labels if labels.count(x) > 1})
        raise ConfigError.for_field("label", dup, "must be distinct (add label=... to a spec)")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError.for_field("seeds", seeds, "must be an int >= 1")
    n = world.n_rows
    if rounds is not None:
        if isinstance(rounds, bool) or not isinstance(rounds, int) or not rounds >= 1:
            raise ConfigError.for_field("rounds", rounds, "must be an int >= 1")
        n = min(n, rounds)
    seed_list = tuple(seed + k for k in range(seeds))
    traces = []
    for s in seed_list:
        u, j = _draws(world, n, s)
        traces.append({a.label: _run_arm(world, a, n, s, u, j, progress) for a in arms})
    return FromLogResult(
        world=world,
        arms=tuple(arms),
        seeds=seed_list,
        traces=tuple(traces),
        oracle=world.oracle()[:n],
        calibration=calibration_check(world),
        log_info=dict(log_info or {}),
    )


def _arm_record(result: FromLogResult, arm: LogArm, controls: list[LogArm]) -> dict[str, Any]:
    per = [t[arm.label] for t in result.traces]
    oracle = result.oracle
    n = oracle.shape[0]
    expected = float(np.mean([p.expected.mean() for p in per]))
    _, lo, hi = mean_interval([p.reward for p in per])
    _, elo, ehi = mean_interval([p.expected for p in per])
    counts = np.bincount(
        np.concatenate([p.action for p in per]), minlength=result.world.log.n_actions
    )
    top = np.argsort(-counts, kind="stable")[:3]
    rec: dict[str, Any] = {
        "policy": arm.label,
        "description": arm.description,
        "role": arm.role,
        "rounds": n,
        "seeds": len(per),
        "mean_reward": float(np.mean([p.reward.mean() for p in per])),
        "mean_reward_ci_low": lo,
        "mean_reward_ci_high": hi,
        "expected_reward": expected,
        "expected_reward_ci_low": elo,
        "expected_reward_ci_high": ehi,
        "oracle_reward": float(oracle.mean()),
        "share_of_oracle": expected / float(oracle.mean()) if oracle.mean() > 0 else math.nan,
        "regret": float(np.mean([(oracle - p.expected).sum() for p in per])),
        "regret_per_decision": float(np.mean([(oracle - p.expected).mean() for p in per])),
        "distinct_actions": int((counts > 0).sum()),
        "top_actions": {
            result.world.log.arm_ids[int(a)]: float(counts[a] / counts.sum()) for a in top
        },
    }
    others = [c for c in controls if c.label != arm.label]
    rec["uplift"] = {
        c.label: paired_uplift(
            [t[arm.label].expected for t in result.traces],
            [t[c.label].expected for t in result.traces],
        )
        for c in others
    }
    rec["realized_uplift"] = {
        c.label: paired_uplift(
            [t[arm.label].reward for t in result.traces],
            [t[c.label].reward for t in result.traces],
        )
        for c in others
    }
    return rec


def summarize_from_log(result: FromLogResult) -> dict[str, Any]:
    """The report of a ``--from-log`` run as plain data (floats rounded to 6 digits, as in
    ``summary.json``): the log, the world and its assumptions, the calibration check, the
    logging-policy check, and per arm the metrics and the paired uplift over each control."""
    controls = [a for a in result.arms if a.role == "control"]
    policies = [_arm_record(result, a, controls) for a in result.arms]
    cands = [p for p in policies if p["role"] == "policy"] or policies
    world = result.world
    n_seeds = len(result.seeds)
    cal = result.calibration
    summary: dict[str, Any] = {
        "scenario": f"from-log {result.log_info.get('path', world.log.source)}",
        "kind": "from_log",
        "log": result.log_info,
        "seeds": list(result.seeds),
        "rounds": int(result.oracle.shape[0]),
        "interval": (
            f"95% Student t-interval over {n_seeds} seeds, paired per seed"
            if n_seeds >= 2
            else "95% normal interval over per-round paired differences (1 seed; optimistic)"
        ),
        "world": {
            "reward_model": world.reward_model,
            "cross_fit_folds": world.n_folds,
            "fold_seed": world.seed,
            "rewards": "0/1, Bernoulli draws" if world.binary else "model + logged residual",
            "rows": world.n_rows,
            "arms": world.log.n_actions,
            "assumptions": list(ASSUMPTIONS),
        },
        "calibration": cal,
        "logging_policy_check": {
            "simulated_value": cal["predicted_mean"],
            "on_policy_value": cal["observed_mean"],
            "on_policy_ci_low": cal["observed_ci_low"],
            "on_policy_ci_high": cal["observed_ci_high"],
            "within_ci": cal["within_ci"],
            "note": "the world's expected reward of the logged actions against the log's own "
            "mean reward with its 95% normal interval, over all logged rows",
        },
        "oracle_reward": float(result.oracle.mean()),
        "winner": str(max(cands, key=lambda p: p["expected_reward"])["policy"]),
        "policies": policies,
    }
    out: dict[str, Any] = _clean(summary)
    return out


def _spec_arm(label: str, role: str, spec: PolicySpec) -> LogArm:
    def build(seed: int) -> Policy:
        kwargs = spec.kwargs
        kwargs.setdefault("seed", seed)
        return make_policy(spec.name, **kwargs)

    return LogArm(label, role, build, spec.describe())


def from_log_arms(
    policies: Sequence[PolicySpec],
    controls: Sequence[PolicySpec | str] | None = None,
    *,
    model: Any = None,
    model_label: str = "model",
) -> list[LogArm]:
    """The arms of a ``--from-log`` run: the saved engine's policy (``model``, an
    :class:`~bandit_engine.Engine`; it keeps learning from what it has learned, on a copy), then
    ``policies``, then ``controls``. A control given as the string ``"logged"`` replays the log;
    the default controls are ``logged`` and ``uniform``. Labels as in ``bandit simulate``."""
    from ..evaluation.policy_run import freeze_policy

    ctrl: list[PolicySpec | str] = (
        [LOGGED, PolicySpec.create("uniform")] if controls is None else list(controls)
    )
    specs = [c for c in ctrl if isinstance(c, PolicySpec)]
    labelled = arm_specs(list(policies), specs)
    out: list[LogArm] = []
    if model is not None:
        engine = model

        def build(seed: int) -> Policy:
            return freeze_policy(engine.policy, seed)

        out.append(LogArm(model_label, "policy", build, f"the saved engine {model_label}"))
    out.extend(_spec_arm(a.label, a.role, a.spec) for a in labelled if a.role == "policy")
    by_spec = iter(a for a in labelled if a.role == "control")
    for c in ctrl:
        if isinstance(c, str):
            if c != LOGGED:
                raise ConfigError.for_field("control", c, f"must be a policy spec or {LOGGED!r}")
            out.append(LogArm.logged())
        else:
            a = next(by_spec)
            out.append(_spec_arm(a.label, a.role, a.spec))
    if not any(a.role == "policy" for a in out):
        raise ConfigError(
            "simulating on a log needs a policy to run: give --model FILE (a saved engine) "
            "and/or --policy NAME[:key=value,...]",
            field="policy",
            value=None,
        )
    return out


def run_from_log(
    log: str,
    *,
    policies: Sequence[PolicySpec] = (),
    controls: Sequence[PolicySpec | str] | None = None,
    model: str | None = None,
    format: str | None = None,
    obd_behavior: str = "random",
    obd_campaign: str = "all",
    max_rows: int | None = None,
    model_id: str | None = None,
    pool_models: bool = False,
    reward_model: str = "auto",
    alpha: float | str = "auto",
    per_action: bool = False,
    n_folds: int = 5,
    seeds: int = 5,
    seed: int = 0,
    rounds: int | None = None,
    progress: Progress | None = None,
) -> tuple[FromLogResult, dict[str, Any]]:
    """Read a log, fit its world, run the arms, summarise: what ``bandit simulate --from-log``
    does. Returns the result and its summary (:func:`summarize_from_log`).

    ``log`` and its options are those of ``bandit evaluate``
    (:func:`~bandit_engine.evaluation.evaluate_log.read_policy_log`); ``model`` is a saved
    engine file whose policy runs as the arm ``model`` (the log's contexts must have its
    feature map's length); the world's options are those of
    :func:`~bandit_engine.simulation.logged_world.fit_logged_world`.
    """
    from pathlib import Path

    from ..engine import Engine
    from ..errors import NotFoundError
    from ..evaluation.evaluate_log import read_policy_log

    engine: Engine | None = None
    if model is not None:
        if not Path(model).is_file():
            raise NotFoundError.for_field("model", str(model), "is not an existing file")
        engine = Engine.load(model)
    arms = from_log_arms(
        policies, controls, model=engine, model_label=Path(model).name if model else "model"
    )
    plog, info = read_policy_log(
        log,
        format=format,
        engine=engine,
        obd_behavior=obd_behavior,
        obd_campaign=obd_campaign,
        max_rows=max_rows,
        model_id=model_id,
        pool_models=pool_models,
    )
    world = fit_logged_world(
        plog,
        reward_model=reward_model,
        alpha=alpha,
        per_action=per_action,
        n_folds=n_folds,
        seed=seed,
    )
    result = simulate_from_log(
        world, arms, seeds=seeds, seed=seed, rounds=rounds, progress=progress, log_info=info
    )
    return result, summarize_from_log(result)
