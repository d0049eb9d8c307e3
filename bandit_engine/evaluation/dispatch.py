"""Evaluating an engine's policy (or any :class:`~bandit_engine.policies.Policy`) on a log: which
estimators run, on what, and the :class:`~bandit_engine.evaluation.results.PolicyEvaluation` they
make.

Three steps, one module each.

1. **The log as policies see it** (:mod:`~bandit_engine.evaluation.policy_log`): a
   :class:`~bandit_engine.evaluation.policy_log.PolicyLog` holds, per logged row, the context
   ``x``, the candidate arms (ids and feature rows), the logged action, its propensity and the
   reward. ``policy_log_from_logged`` builds one from a CSV / Parquet / engine log
   (:mod:`bandit_engine.evaluation.datasets`), ``policy_log_from_obd`` from the Open Bandit Dataset
   (context: the OBD user features; arms: the items ``"0".."79"`` with their item features).
2. **The evaluated policy's action distribution on every logged row**
   (:func:`~bandit_engine.evaluation.policy_run.action_distribution`): exact where the policy knows
   it (``policy.probabilities``), else estimated from ``n_draws`` seeded calls of ``choose`` per
   row. Both run on a deep copy of the policy
   (:func:`~bandit_engine.evaluation.policy_run.freeze_policy`), so evaluating never changes the
   engine: not its learned state, not its random generator.
3. **Estimators and the uplift** (here: :func:`evaluate_action_dist`, :func:`evaluate_policy`):
   the estimators of :mod:`bandit_engine.evaluation` on that distribution, the logging policy's
   value (the on-policy mean reward of the log) and, per estimator, the uplift of the candidate
   over the logging policy with a confidence interval
   (:mod:`~bandit_engine.evaluation.uplift`, which explains the paired interval).

Online-learning policies are evaluated by
:func:`~bandit_engine.evaluation.online_replay.online_replay` (Li, Chu, Langford, Wang, WSDM 2011):
on a uniformly random log the policy walks the rows in order and learns only from the rows where
it chose the logged action. The reward model of DM and the DR family is named by
``reward_model`` (:func:`~bandit_engine.evaluation.reward_models.make_reward_model`) and
cross-fitted. Reading a log file and evaluating it in one call, as ``bandit evaluate`` does:
:func:`~bandit_engine.evaluation.evaluate_log.evaluate_log`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import ConfigError, DataError, ValidationError
from ..policies.base import Policy, SeedLike, make_rng
from ..records import Estimate
from ._validate import (
    FloatArray,
    IntArray,
    as_action,
    as_float_1d,
    as_float_array,
    check_level,
    validate_rows,
)
from .dm import DMAccumulator
from .dr import DRAccumulator
from .intervals import check_ci
from .ips import IPSAccumulator
from .online_replay import online_replay_batch
from .policy_log import PolicyLog
from .policy_run import action_distribution, describe_policy, policy_of
from .replay import ReplayAccumulator
from .results import PolicyEvaluation, evaluation_warnings
from .reward_models import cross_fit_rewards, make_reward_model
from .sndr import SNDRAccumulator
from .snips import SNIPSAccumulator
from .streaming import OPEAccumulator, TermBatch
from .support import (
    ContextGroups,
    ContextSupport,
    SupportStats,
    context_groups,
    exact_unsupported_mass,
)
from .switch_dr import SwitchDRAccumulator
from .uplift import Uplift, finish_estimate, logged_estimate, paired_uplift

if TYPE_CHECKING:
    from ..engine import Engine

__all__ = [
    "DEFAULT_ESTIMATORS",
    "ESTIMATORS",
    "assemble_evaluation",
    "check_estimators",
    "estimator_batch",
    "evaluate_action_dist",
    "evaluate_policy",
    "fit_rewards",
    "log_context_groups",
    "log_support",
    "seed_sequence",
    "settings_of",
]


#: Estimators that work on an action distribution (``online_replay`` needs the policy itself).
ESTIMATORS = ("replay", "ips", "snips", "dm", "dr", "sndr", "switch_dr")
DEFAULT_ESTIMATORS = ("ips", "snips", "dm", "dr")
_MODEL_ESTIMATORS = ("dm", "dr", "sndr", "switch_dr")
_ALL_ESTIMATORS = (*ESTIMATORS, "online_replay")


def check_estimators(estimators: Sequence[str]) -> tuple[str, ...]:
    if isinstance(estimators, str):
        estimators = [e.strip() for e in estimators.split(",") if e.strip()]
    names = tuple(estimators)
    if not names:
        raise ConfigError.for_field("estimators", list(names), "must name at least one estimator")
    for name in names:
        if name not in _ALL_ESTIMATORS:
            raise ConfigError.for_field("estimators", name, f"must be in {list(_ALL_ESTIMATORS)}")
    if len(set(names)) != len(names):
        raise ConfigError.for_field("estimators", list(names), "must not repeat an estimator")
    return names


def seed_sequence(seed: SeedLike) -> np.random.SeedSequence:
    """A SeedSequence from a seed (validated), a generator (one draw from it) or ``None``."""
    if isinstance(seed, np.random.Generator):
        return np.random.SeedSequence(int(seed.integers(2**63)))
    make_rng(seed)  # validates the seed (type, sign) with the house message
    return np.random.SeedSequence(seed)


@dataclass
class _Run:
    """What the estimators produced so far (assembled into a PolicyEvaluation at the end)."""

    reward: FloatArray
    level: float
    ci: str
    n_bootstrap: int
    boot_rng: np.random.Generator
    estimates: dict[str, Estimate] = field(default_factory=dict)
    uplifts: dict[str, Uplift] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    support: SupportStats | None = None

    def add(self, name: str, acc: OPEAccumulator, batch: TermBatch) -> None:
        est = finish_estimate(
            acc, batch, ci=self.ci, n_bootstrap=self.n_bootstrap, rng=self.boot_rng
        )
        if name != est.estimator:
            est = replace(est, estimator=name)
        self.estimates[name] = est
        self.uplifts[name] = paired_uplift(
            name,
            acc,
            batch,
            self.reward,
            level=self.level,
            ci=self.ci,
            n_bootstrap=self.n_bootstrap,
            rng=self.boot_rng,
        )

    def result(
        self,
        names: Sequence[str],
        *,
        policy: str,
        method: str,
        n_actions: int,
        settings: dict[str, Any],
    ) -> PolicyEvaluation:
        if not self.estimates:
            raise _nothing_ran(self.skipped)
        logged, _ = logged_estimate(
            self.reward,
            level=self.level,
            ci=self.ci,
            n_bootstrap=self.n_bootstrap,
            rng=self.boot_rng,
        )
        return assemble_evaluation(
            names,
            estimates=self.estimates,
            uplifts=self.uplifts,
            skipped=self.skipped,
            support=self.support,
            logged=logged,
            n_nonzero=int(np.count_nonzero(self.reward)),
            policy=policy,
            method=method,
            n_actions=n_actions,
            settings=settings,
        )


def _nothing_ran(skipped: dict[str, str]) -> DataError:
    reasons = "; ".join(f"{k}: {v}" for k, v in skipped.items())
    return DataError(
        f"no estimator could run on this log ({reasons})",
        field="estimators",
        value=list(skipped),
    )


def assemble_evaluation(
    names: Sequence[str],
    *,
    estimates: dict[str, Estimate],
    uplifts: dict[str, Uplift],
    skipped: dict[str, str],
    support: SupportStats | None,
    logged: Estimate,
    n_nonzero: int,
    policy: str,
    method: str,
    n_actions: int,
    settings: dict[str, Any],
) -> PolicyEvaluation:
    """The :class:`PolicyEvaluation` of what the estimators produced (in the requested order),
    with the support verdict and the warnings; DataError when no estimator ran. Shared by the
    in-memory and the parallel (:mod:`~bandit_engine.evaluation.parallel`) paths."""
    if not estimates:
        raise _nothing_ran(skipped)
    n = logged.n
    order = [k for k in names if k in estimates]
    skipped = {k: skipped[k] for k in names if k in skipped}
    ordered = {k: uplifts[k] for k in order}
    if support is not None and not support.supported:
        # the one place the support rule touches the verdicts (support.py states the rule)
        ordered = {k: replace(u, supported=False) for k, u in ordered.items()}
    warnings = evaluation_warnings(n, n_nonzero, estimates, skipped, support)
    return PolicyEvaluation(
        policy=policy,
        method=method,
        n_rows=n,
        n_actions=n_actions,
        n_nonzero_rewards=n_nonzero,
        logged=logged,
        estimates={k: estimates[k] for k in order},
        uplifts=ordered,
        skipped=skipped,
        warnings=tuple(warnings),
        settings=settings,
        support=support,
    )


def _missing_pscore(name: str) -> DataError:
    return DataError(
        f"{name} needs the logging propensity of every row, but the log has none; use dm, which "
        "needs no propensities",
        field="pscore",
        value=None,
    )


def log_support(
    reward: FloatArray,
    action: IntArray,
    dist: FloatArray,
    pscore: ArrayLike | None,
    position: ArrayLike | None,
    logging_dist: FloatArray | None = None,
    groups: ContextGroups | None = None,
) -> SupportStats | None:
    """Support of the evaluated policy on the log (``None`` without complete, valid pscores: then
    the weighting estimators are skipped or refused with their own message); exact on the rows
    whose logging distribution ``logging_dist`` (n, K) the log holds; with ``groups``
    (:func:`log_context_groups`), also per context: the mass on actions a row's context group
    never tried."""
    if pscore is None:
        return None
    try:
        rows = validate_rows(
            estimator="support",
            reward=reward,
            action=action,
            pscore=pscore,
            action_dist=dist,
            position=position,
            need_pscore=True,
        )
    except (DataError, ValidationError):
        return None
    assert rows.pi is not None and rows.pscore is not None and rows.dist is not None
    exact = None
    if logging_dist is not None and logging_dist.shape == rows.dist.shape:
        exact = exact_unsupported_mass(rows.dist, logging_dist)
    if groups is None or groups.group.shape[0] != rows.dist.shape[0]:
        return SupportStats.of(rows.pi, rows.pscore, exact)
    return SupportStats.of(
        rows.pi,
        rows.pscore,
        exact,
        context=ContextSupport.of(rows.dist, groups),
        context_mass=ContextSupport.row_mass(rows.dist, groups),
    )


def log_context_groups(log: PolicyLog, seed: np.random.SeedSequence | int = 0) -> ContextGroups:
    """The context groups of a log and the actions each never tried
    (:func:`~bandit_engine.evaluation.support.context_groups`), for :func:`log_support`."""
    s = seed if isinstance(seed, int) else int(seed.generate_state(1)[0])
    return context_groups(
        log.context,
        log.action,
        log.n_actions,
        candidates=log.candidates,
        arm_ids=log.arm_ids,
        seed=s,
    )


def fit_rewards(
    names: Sequence[str],
    *,
    reward: FloatArray,
    action: IntArray,
    n_actions: int,
    position: ArrayLike | None,
    context: ArrayLike | None,
    action_context: ArrayLike | None,
    reward_model: Any,
    n_folds: int,
    seed: np.random.SeedSequence,
) -> FloatArray | None:
    """The cross-fitted (n, K) reward predictions DM and the DR family need (``None`` when no
    requested estimator needs them)."""
    if not any(n in _MODEL_ESTIMATORS for n in names):
        return None
    ctx = np.zeros((reward.shape[0], 0)) if context is None else context
    return cross_fit_rewards(
        context=ctx,
        action=action,
        reward=reward,
        n_actions=n_actions,
        model=make_reward_model(reward_model, reward),
        action_context=action_context,
        n_folds=n_folds,
        seed=np.random.default_rng(seed),
        position=position,
    )


def estimator_batch(
    name: str,
    *,
    reward: FloatArray,
    action: IntArray,
    dist: FloatArray,
    pscore: ArrayLike | None,
    position: ArrayLike | None,
    n_candidates: ArrayLike | None,
    qhat: ArrayLike | None,
    clip: float | None,
    tau: float,
    level: float,
    replay_seed: np.random.SeedSequence | None = None,
) -> tuple[OPEAccumulator, TermBatch]:
    """A fresh accumulator of estimator ``name`` and the per-row terms of these rows (not yet
    pushed). DataError when the estimator cannot run on them (e.g. no propensities)."""
    acc: OPEAccumulator
    if name == "replay":
        racc = ReplayAccumulator(seed=np.random.default_rng(replay_seed), level=level)
        batch = racc.row_terms(
            reward=reward,
            action=action,
            action_dist=dist,
            position=position,
            pscore=pscore,
            n_candidates=n_candidates,
        )
        return racc, batch
    if name in ("ips", "snips"):
        if pscore is None:
            raise _missing_pscore(name)
        wacc = (
            IPSAccumulator(clip=clip, level=level)
            if name == "ips"
            else SNIPSAccumulator(clip=clip, level=level)
        )
        batch = wacc.row_terms(
            reward=reward, action=action, pscore=pscore, action_dist=dist, position=position
        )
        return wacc, batch
    if name == "dm":
        dacc = DMAccumulator(level=level)
        assert qhat is not None
        batch = dacc.row_terms(
            action_dist=dist,
            estimated_rewards=qhat,
            reward=reward,
            action=action,
            position=position,
        )
        return dacc, batch
    if pscore is None:
        raise _missing_pscore(name)
    if name == "dr":
        acc = DRAccumulator(clip=clip, level=level)
    elif name == "sndr":
        acc = SNDRAccumulator(clip=clip, level=level)
    else:
        acc = SwitchDRAccumulator(tau=tau, level=level)
    assert qhat is not None and isinstance(acc, DRAccumulator | SwitchDRAccumulator)
    batch = acc.row_terms(
        reward=reward,
        action=action,
        pscore=pscore,
        action_dist=dist,
        estimated_rewards=qhat,
        position=position,
    )
    return acc, batch


def _run_offline(
    run: _Run,
    names: Sequence[str],
    *,
    action: IntArray,
    dist: FloatArray,
    pscore: ArrayLike | None,
    position: ArrayLike | None,
    context: ArrayLike | None,
    action_context: ArrayLike | None,
    n_candidates: ArrayLike | None,
    estimated_rewards: ArrayLike | None,
    reward_model: Any,
    n_folds: int,
    clip: float | None,
    tau: float,
    seeds: np.random.SeedSequence,
    logging_dist: FloatArray | None = None,
    groups: ContextGroups | None = None,
) -> None:
    """Run the distribution-based estimators into ``run`` (DataErrors become ``skipped``)."""
    r, lvl = run.reward, run.level
    fold_ss, replay_ss = seeds.spawn(2)
    run.support = log_support(r, action, dist, pscore, position, logging_dist, groups)
    qhat: ArrayLike | None = estimated_rewards
    if qhat is None:
        qhat = fit_rewards(
            names,
            reward=r,
            action=action,
            n_actions=int(dist.shape[1]),
            position=position,
            context=context,
            action_context=action_context,
            reward_model=reward_model,
            n_folds=n_folds,
            seed=fold_ss,
        )
    for name in names:
        try:
            acc, batch = estimator_batch(
                name,
                reward=r,
                action=action,
                dist=dist,
                pscore=pscore,
                position=position,
                n_candidates=n_candidates,
                qhat=qhat,
                clip=clip,
                tau=tau,
                level=lvl,
                replay_seed=replay_ss,
            )
            run.add(name, acc, batch)
        except DataError as exc:
            run.skipped[name] = exc.message


def settings_of(
    names: Sequence[str],
    *,
    reward_model: Any,
    n_folds: int,
    clip: float | None,
    tau: float,
    level: float,
    ci: str,
    n_bootstrap: int,
    seed: SeedLike,
) -> dict[str, Any]:
    return {
        "estimators": list(names),
        "reward_model": reward_model if isinstance(reward_model, str) else repr(reward_model),
        "n_folds": n_folds,
        "clip": clip,
        "tau": tau,
        "level": level,
        "ci": ci,
        "n_bootstrap": n_bootstrap if ci == "bootstrap" else None,
        "seed": int(seed) if isinstance(seed, int | np.integer) else None,
    }


def evaluate_action_dist(
    *,
    reward: ArrayLike,
    action: ArrayLike,
    action_dist: ArrayLike,
    pscore: ArrayLike | None = None,
    position: ArrayLike | None = None,
    context: ArrayLike | None = None,
    action_context: ArrayLike | None = None,
    n_candidates: ArrayLike | None = None,
    estimators: Sequence[str] = DEFAULT_ESTIMATORS,
    estimated_rewards: ArrayLike | None = None,
    reward_model: Any = "ridge",
    n_folds: int = 5,
    clip: float | None = None,
    tau: float = 100.0,
    level: float = 0.95,
    ci: str = "normal",
    n_bootstrap: int = 1000,
    seed: SeedLike = 0,
    policy: str = "policy",
    method: str = "given",
) -> PolicyEvaluation:
    """Run the estimators on a given action distribution and compute the uplifts.

    Parameters
    ----------
    reward, action, pscore, position
        (n,) logged arrays as for the estimators (``pscore`` may be ``None`` or hold NaN: the
        weighting estimators are then skipped with a message pointing at DM).
    action_dist
        (n, K) or (n, K, L) with ``position``: the evaluated policy.
    context, action_context
        (n, d) contexts and (K, p) action features for the cross-fitted reward model of DM and the
        DR family (``None``: the model sees only the action and the position).
    n_candidates
        (n,) candidate-set sizes, for replay's uniform-logging check.
    estimators
        Names from :data:`ESTIMATORS` (default :data:`DEFAULT_ESTIMATORS`).
    estimated_rewards
        (n, K) predictions to use instead of fitting ``reward_model``.
    reward_model
        ``"ridge"`` (:class:`~bandit_engine.evaluation.RidgeRewardModel`), ``"logistic"``
        (:class:`LogisticRewardModel`, 0/1 rewards) or any scikit-learn-style model, cross-fitted
        with ``n_folds`` folds (:func:`~bandit_engine.evaluation.cross_fit_rewards`).
    clip, tau
        Weight clipping of IPS / SNIPS / DR / SNDR; Switch-DR's threshold.
    level, ci, n_bootstrap, seed
        Interval level and method; ``seed`` drives the folds, replay's draws and the bootstrap
        (independent streams spawned from it).
    policy, method
        Labels for the report.

    Raises
    ------
    DataError
        When no requested estimator could run (each one's reason is listed); an estimator that
        cannot run while others can is listed in ``skipped`` and in the warnings.
    """
    names = check_estimators(estimators)
    if "online_replay" in names:
        raise ConfigError(
            "online_replay needs the policy itself, not its action distribution: use "
            "evaluate_policy",
            field="estimators",
            value="online_replay",
        )
    lvl = check_level(level)
    check_ci(ci, n_bootstrap)
    r = as_float_1d("reward", reward)
    act = as_action("action", action)
    if act.shape[0] != r.shape[0]:
        raise ValidationError(
            f"reward (n={r.shape[0]}) and action (n={act.shape[0]}) must have the same length",
            field="action",
            value=act.shape,
        )
    dist = as_float_array("action_dist", action_dist)
    if dist.ndim not in (2, 3) or dist.shape[0] != r.shape[0]:
        raise ValidationError(
            f"action_dist must have shape (n={r.shape[0]}, K) or (n, K, L), got {dist.shape}",
            field="action_dist",
            value=dist.shape,
        )
    offline_ss, boot_ss = seed_sequence(seed).spawn(2)
    run = _Run(r, lvl, ci, n_bootstrap, np.random.default_rng(boot_ss))
    _run_offline(
        run,
        names,
        action=act,
        dist=dist,
        pscore=pscore,
        position=position,
        context=context,
        action_context=action_context,
        n_candidates=n_candidates,
        estimated_rewards=estimated_rewards,
        reward_model=reward_model,
        n_folds=n_folds,
        clip=clip,
        tau=tau,
        seeds=offline_ss,
    )
    settings = settings_of(
        names,
        reward_model=reward_model,
        n_folds=n_folds,
        clip=clip,
        tau=tau,
        level=lvl,
        ci=ci,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    return run.result(
        names, policy=policy, method=method, n_actions=int(dist.shape[1]), settings=settings
    )


def evaluate_policy(
    policy: Policy | Engine,
    log: PolicyLog,
    *,
    estimators: Sequence[str] = DEFAULT_ESTIMATORS,
    method: str = "auto",
    n_draws: int = 100,
    reward_model: Any = "ridge",
    n_folds: int = 5,
    clip: float | None = None,
    tau: float = 100.0,
    level: float = 0.95,
    ci: str = "normal",
    n_bootstrap: int = 1000,
    seed: SeedLike = 0,
    check_uniform: bool = True,
) -> PolicyEvaluation:
    """Evaluate a policy (or an engine's policy) on a log: estimates and uplift per estimator.

    The distribution-based estimators (:data:`ESTIMATORS`) evaluate the policy *as it is now*
    (frozen: it does not learn from the log) on the distribution from :func:`action_distribution`;
    ``"online_replay"`` lets a copy learn from the matched rows (:func:`online_replay`). The
    engine (or policy) passed in is never modified.

    Parameters
    ----------
    policy
        A policy or an :class:`~bandit_engine.Engine` (its policy; the engine's context length
        must match the log's).
    log
        The :class:`PolicyLog`.
    estimators
        Names from :data:`ESTIMATORS` plus ``"online_replay"``.
    method, n_draws
        See :func:`action_distribution`.
    check_uniform
        Online replay refuses non-uniform logs (see :func:`online_replay`).
    others
        As in :func:`evaluate_action_dist`.
    """
    from ..engine import Engine

    names = check_estimators(estimators)
    lvl = check_level(level)
    check_ci(ci, n_bootstrap)
    if isinstance(policy, Engine):
        d = policy.features.n_features
        if log.context.shape[1] != d:
            raise ValidationError(
                f"the log's contexts have {log.context.shape[1]} features but the model's "
                f"feature map makes {d}: the log was not written by (a version of) this model",
                field="context",
                value=log.context.shape,
            )
    pol = policy_of(policy)
    dist_ss, offline_ss, online_ss, boot_ss = seed_sequence(seed).spawn(4)
    run = _Run(log.reward, lvl, ci, n_bootstrap, np.random.default_rng(boot_ss))
    offline = [n for n in names if n != "online_replay"]
    used = "online"
    n_actions = log.n_actions
    if offline:
        dist, used = action_distribution(
            pol, log, method=method, n_draws=n_draws, seed=np.random.default_rng(dist_ss)
        )
        _run_offline(
            run,
            offline,
            action=log.action,
            dist=dist,
            pscore=log.pscore,
            position=log.position,
            context=log.context,
            action_context=log.arm_features,
            n_candidates=log.candidate_counts(),
            estimated_rewards=None,
            reward_model=reward_model,
            n_folds=n_folds,
            clip=clip,
            tau=tau,
            seeds=offline_ss,
            logging_dist=log.logging_dist,
            groups=log_context_groups(log, seed=0),
        )
    if "online_replay" in names:
        try:
            batch, _ = online_replay_batch(
                pol, log, np.random.default_rng(online_ss), check_uniform
            )
            acc = ReplayAccumulator(check_uniform=False, level=lvl)
            if batch.terms[1].sum() == 0:
                raise DataError(
                    f"online replay matched 0 of {log.n_rows} logged rows: no data",
                    field="action",
                    value=0,
                )
            run.add("online_replay", acc, batch)
        except DataError as exc:
            run.skipped["online_replay"] = exc.message
    settings = settings_of(
        names,
        reward_model=reward_model,
        n_folds=n_folds,
        clip=clip,
        tau=tau,
        level=lvl,
        ci=ci,
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    settings["n_draws"] = n_draws if used.startswith("sampled") else None
    return run.result(
        names, policy=describe_policy(pol), method=used, n_actions=n_actions, settings=settings
    )
