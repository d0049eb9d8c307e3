"""Evaluating an engine's policy (or any :class:`~bandit_engine.policies.Policy`) on a log.

Three steps.

1. **The log as policies see it**: a :class:`PolicyLog` holds, per logged row, the context ``x``,
   the candidate arms (ids and feature rows), the logged action, its propensity and the reward.
   :func:`policy_log_from_logged` builds one from a CSV / Parquet / engine log
   (:mod:`bandit_engine.evaluation.datasets`), :func:`policy_log_from_obd` from the Open Bandit Dataset
   (context: the OBD user features; arms: the items ``"0".."79"`` with their item features).
2. **The evaluated policy's action distribution on every logged row**
   (:func:`action_distribution`): exact where the policy knows it (``policy.probabilities``), else
   estimated from ``n_draws`` seeded calls of ``choose`` per row. Both run on a deep copy of the
   policy (:func:`freeze_policy`), so evaluating never changes the engine: not its learned state,
   not its random generator.
3. **Estimators and the uplift** (:func:`evaluate_action_dist`): the estimators of
   :mod:`bandit_engine.evaluation` on that distribution, the logging policy's value (the on-policy
   mean reward of the log) and, per estimator, the uplift of the candidate over the logging policy
   with a confidence interval.

Online-learning policies are evaluated by :func:`online_replay` (Li, Chu, Langford, Wang, WSDM
2011): on a uniformly random log the policy walks the rows in order and learns only from the rows
where it chose the logged action.

The uplift interval
-------------------
Every estimator is a smooth function ``f`` of the means of a few per-row terms ``T_i`` (IPS: one,
``w_i r_i``; SNIPS: ``w_i r_i`` and ``w_i``; DR: the model term and the weighted residual; replay:
``1{match} r_i`` and ``1{match}``). The logging policy's value is ``R = mean(r_i)`` on the same
rows, so the two estimates are correlated, and the uplift is ``U = f(mean T) - mean r``, a smooth
function of the means of the stacked per-row vectors ``(T_i, r_i)``. The delta method gives

    se(U)^2 = g' S g / n,    g = (grad f(mean T), -1),

with ``S`` the sample covariance (ddof 1) of ``(T_i, r_i)``. When ``f`` is a plain sum of means
(IPS, DR, Switch-DR, DM) this is exactly ``var(d_i) / n`` for the paired per-row difference
``d_i = sum_j T_ij - r_i``: the paired-difference interval. Ignoring the pairing (adding the two
variances) would overstate the width whenever the policies overlap, since
``var(U) = var(V) + var(R) - 2 cov(V, R)`` and the covariance is positive then. With
``ci="bootstrap"`` rows are resampled jointly and ``f - R`` is recomputed per resample. Coverage
near 95% is tested on synthetic logs with known truth (tests/test_policy_eval.py).

Limitations: the interval treats rows as independent and the reward model of DM / DR as fixed
(cross-fitting keeps each row's prediction out of its own fit, but the folds share data); for
:func:`online_replay` the matched rewards come from a policy that changes as it learns, so its
interval is approximate.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import ConfigError, DataError, ValidationError
from ..policies.base import Policy, SeedLike, check_positive, make_rng
from ..records import Estimate
from ._validate import FloatArray, IntArray, as_action, as_float_1d, as_float_array, check_level
from .dm import DMAccumulator
from .dr import DRAccumulator
from .intervals import bootstrap_interval, check_ci, delta_method_se, normal_interval
from .ips import IPSAccumulator
from .replay import ReplayAccumulator
from .reward_models import RidgeRewardModel, cross_fit_rewards, fit_inputs, predict_inputs
from .sndr import SNDRAccumulator
from .snips import SNIPSAccumulator
from .streaming import OPEAccumulator, TermBatch
from .switch_dr import SwitchDRAccumulator

if TYPE_CHECKING:
    from ..catalog import Catalog
    from ..engine import Engine
    from .datasets import LoggedData, ObdData

__all__ = [
    "DEFAULT_ESTIMATORS",
    "ESTIMATORS",
    "MIN_ESS",
    "MIN_MATCHES",
    "MIN_NONZERO_REWARDS",
    "LogisticRewardModel",
    "PolicyEvaluation",
    "PolicyLog",
    "Uplift",
    "action_distribution",
    "describe_policy",
    "evaluate_action_dist",
    "evaluate_policy",
    "fit_policy",
    "freeze_policy",
    "obd_policy_inputs",
    "online_replay",
    "policy_log_from_logged",
    "policy_log_from_obd",
]

#: Estimators that work on an action distribution (``online_replay`` needs the policy itself).
ESTIMATORS = ("replay", "ips", "snips", "dm", "dr", "sndr", "switch_dr")
DEFAULT_ESTIMATORS = ("ips", "snips", "dm", "dr")
_MODEL_ESTIMATORS = ("dm", "dr", "sndr", "switch_dr")
_ALL_ESTIMATORS = (*ESTIMATORS, "online_replay")

#: Below this many non-zero rewards a warning says the intervals are wide and the normal
#: approximation shaky (a click-through rate of 0.4% gives 40 clicks per 10,000 rows).
MIN_NONZERO_REWARDS = 30
#: Below this effective sample size of the importance weights a warning says a few rows dominate.
MIN_ESS = 100.0
#: Below this many matched rows a replay estimate is flagged as resting on too little data.
MIN_MATCHES = 30
#: Above this share of clipped (or switched) rows a warning says the estimate is biased by it.
MAX_CLIPPED_SHARE = 0.05
#: Largest accepted ``|sum(probabilities) - 1|`` of a policy's distribution before renormalising.
_SUM_SLACK = 1e-3


# --------------------------------------------------------------------------------------------
# The log as policies see it
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PolicyLog:
    """A log in the shape policies act on.

    Attributes
    ----------
    context
        (n, d) context ``x`` of every logged row.
    arm_ids
        (K,) ids of all arms; ``action`` and ``candidates`` index into them.
    arm_features
        (K, p) feature row of every arm (what ``policy.choose`` gets as ``arm_features``).
    action
        (n,) index of the logged arm.
    reward
        (n,) logged reward.
    pscore
        (n,) logging propensity of the logged arm (NaN where unknown), or ``None``.
    candidates
        Per row, the indices of the arms that were offered (the logged one among them), or
        ``None`` when every arm was a candidate on every row.
    position
        (n,) 0-based display position (position-based logs such as the OBD), or ``None``.
    source
        Where the log came from (shown in reports).
    """

    context: FloatArray
    arm_ids: tuple[str, ...]
    arm_features: FloatArray
    action: IntArray
    reward: FloatArray
    pscore: FloatArray | None
    candidates: tuple[IntArray, ...] | None = None
    position: IntArray | None = None
    source: str = ""

    def __post_init__(self) -> None:
        n, k = int(self.action.shape[0]), len(self.arm_ids)
        if n == 0:
            raise DataError("the log has no rows", field="action", value=0)
        if self.context.ndim != 2 or self.context.shape[0] != n:
            raise ValidationError(
                f"context must have shape (n={n}, d), got {self.context.shape}",
                field="context",
                value=self.context.shape,
            )
        if self.arm_features.ndim != 2 or self.arm_features.shape[0] != k:
            raise ValidationError(
                f"arm_features must have shape (len(arm_ids)={k}, p), got "
                f"{self.arm_features.shape}",
                field="arm_features",
                value=self.arm_features.shape,
            )
        if len(set(self.arm_ids)) != k:
            raise ValidationError.for_field("arm_ids", self.arm_ids, "must be distinct")
        for name in ("reward", "pscore", "position"):
            arr = getattr(self, name)
            if arr is not None and arr.shape != (n,):
                raise ValidationError(
                    f"{name} must have shape (n,) = ({n},), got {arr.shape}",
                    field=name,
                    value=arr.shape,
                )
        if self.action.min() < 0 or self.action.max() >= k:
            raise ValidationError.for_field(
                "action", int(self.action.max()), f"must index arm_ids, in [0, {k})"
            )
        if self.candidates is not None:
            if len(self.candidates) != n:
                raise ValidationError(
                    f"candidates must hold one index array per row (n={n}), got "
                    f"{len(self.candidates)}",
                    field="candidates",
                    value=len(self.candidates),
                )
            outside = [
                i
                for i, (a, c) in enumerate(zip(self.action.tolist(), self.candidates, strict=True))
                if a not in set(c.tolist())
            ]
            if outside:
                raise ValidationError(
                    f"action must be one of the row's candidates: {len(outside)} of {n} rows "
                    f"(indices {', '.join(map(str, outside[:5]))})",
                    field="candidates",
                    value=outside[:5],
                )

    @property
    def n_rows(self) -> int:
        return int(self.action.shape[0])

    @property
    def n_actions(self) -> int:
        return len(self.arm_ids)

    def candidate_counts(self) -> IntArray:
        """(n,) number of candidates per row."""
        if self.candidates is None:
            return np.full(self.n_rows, self.n_actions, dtype=np.int64)
        return np.array([c.shape[0] for c in self.candidates], dtype=np.int64)

    def is_uniform(self) -> bool:
        """Every row has a propensity equal to ``1 / (number of candidates)`` (within 1e-6)."""
        if self.pscore is None or np.isnan(self.pscore).any():
            return False
        expected = 1.0 / self.candidate_counts()
        return bool(np.allclose(self.pscore, expected, rtol=1e-6, atol=0.0))

    def rows(self, index: ArrayLike) -> PolicyLog:
        """The sub-log of the given row indices (in that order)."""
        idx = np.asarray(index, dtype=np.int64)
        return replace(
            self,
            context=self.context[idx],
            action=self.action[idx],
            reward=self.reward[idx],
            pscore=None if self.pscore is None else self.pscore[idx],
            candidates=None if self.candidates is None else tuple(self.candidates[i] for i in idx),
            position=None if self.position is None else self.position[idx],
        )

    def split(self, train_fraction: float) -> tuple[PolicyLog | None, PolicyLog]:
        """``(first rows, remaining rows)`` in log order; ``None`` first part for fraction 0."""
        if isinstance(train_fraction, bool) or not (
            isinstance(train_fraction, int | float) and 0.0 <= train_fraction < 1.0
        ):
            raise ConfigError.for_field("train_fraction", train_fraction, "must be in [0, 1)")
        cut = math.floor(train_fraction * self.n_rows)
        if cut == 0:
            return None, self
        return self.rows(np.arange(cut)), self.rows(np.arange(cut, self.n_rows))

    def arms_of(self, i: int) -> tuple[tuple[str, ...], FloatArray, IntArray | None]:
        """Candidate ids, their feature rows and their indices (``None``: all arms) of row ``i``."""
        if self.candidates is None:
            return self.arm_ids, self.arm_features, None
        idx = self.candidates[i]
        return tuple(self.arm_ids[j] for j in idx.tolist()), self.arm_features[idx], idx


def obd_policy_inputs(obd: ObdData) -> tuple[FloatArray, tuple[str, ...], FloatArray]:
    """``(X, arm_ids, arm_features)`` for policies acting on the Open Bandit Dataset.

    ``X`` is the (n, d) user context of :func:`~bandit_engine.evaluation.datasets.load_obd` (one-hot user
    features and user-item affinities); the arms are the items, ids ``"0" .. "K-1"`` (the item id
    as text), with the (K, p) item features as arm features. Every item is a candidate on every
    row, as in the data set.
    """
    arm_ids = tuple(str(i) for i in range(obd.n_actions))
    return obd.context, arm_ids, obd.action_context


def policy_log_from_obd(obd: ObdData) -> PolicyLog:
    """The OBD log as a :class:`PolicyLog` (see :func:`obd_policy_inputs`; positions kept).

    Each OBD row is one (impression, position); a policy acting on it chooses one item for that
    slot from the same context, so its distribution is the same at every position.
    """
    X, arm_ids, Z = obd_policy_inputs(obd)
    return PolicyLog(
        context=X,
        arm_ids=arm_ids,
        arm_features=Z,
        action=obd.action,
        reward=obd.reward,
        pscore=obd.pscore,
        candidates=None,
        position=obd.position,
        source=f"obd:{obd.behavior}/{obd.campaign}",
    )


def policy_log_from_logged(
    data: LoggedData,
    *,
    catalog: Catalog | None = None,
    arm_features: ArrayLike | None = None,
    source: str = "",
) -> PolicyLog:
    """A CSV / Parquet / engine log (:class:`~bandit_engine.evaluation.datasets.LoggedData`) as a
    :class:`PolicyLog`.

    Arm features, in order of preference:

    1. ``catalog`` (an engine's :class:`~bandit_engine.catalog.Catalog`): each bundle's current
       features; bundles the catalog does not know fall back to (2).
    2. For an engine log (:class:`~bandit_engine.evaluation.datasets.EngineLogData`): the features the engine
       logged for the chosen bundle (the latest row that chose it). A candidate that was never
       chosen and is unknown to ``catalog`` cannot be described: DataError naming it.
    3. ``arm_features`` (K, p) given explicitly, aligned with ``data.action_ids``.
    4. Otherwise the identity (one-hot arm ids): policies that ignore arm features (disjoint
       LinUCB, disjoint linear TS, the baselines) are unaffected; feature-sharing ones learn
       nothing across arms.

    A log without context columns gives every row the constant context ``[1.0]`` (a context-free
    evaluation).
    """
    from .datasets import EngineLogData

    ids = data.action_ids
    k = len(ids)
    Z: FloatArray
    if arm_features is not None:
        Z = as_float_array("arm_features", arm_features)
        if Z.ndim != 2 or Z.shape[0] != k:
            raise ValidationError(
                f"arm_features must have shape (n_actions={k}, p), got {Z.shape}",
                field="arm_features",
                value=Z.shape,
            )
    elif catalog is not None or (
        isinstance(data, EngineLogData) and data.chosen_features.shape[1] > 0
    ):
        Z = _bundle_features(data, catalog)
    else:
        Z = np.eye(k)
    X = data.context if data.context is not None else np.ones((data.n_rows, 1))
    return PolicyLog(
        context=X,
        arm_ids=ids,
        arm_features=Z,
        action=data.action,
        reward=data.reward,
        pscore=data.pscore,
        candidates=data.candidates,
        position=None,
        source=source,
    )


def _bundle_features(data: LoggedData, catalog: Catalog | None) -> FloatArray:
    from .datasets import EngineLogData

    logged: dict[int, FloatArray] = {}
    if isinstance(data, EngineLogData):
        for i, a in enumerate(data.action.tolist()):
            logged[a] = data.chosen_features[i]  # the latest row wins
    rows: list[FloatArray | None] = []
    for j, bundle in enumerate(data.action_ids):
        row: FloatArray | None = None
        if catalog is not None and bundle in catalog:
            row = catalog.features([bundle])[0]
        elif j in logged:
            row = logged[j]
        rows.append(row)
    missing = [data.action_ids[j] for j, r in enumerate(rows) if r is None]
    if missing:
        where = "the model's catalog" if catalog is not None else "a model (--model)"
        raise DataError(
            f"no features for {len(missing)} candidate bundle(s) never chosen in the log "
            f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}); pass {where} "
            "that knows them",
            field="candidates",
            value=missing[:5],
        )
    widths = {r.shape[0] for r in rows if r is not None}
    if len(widths) > 1:
        raise DataError.for_field(
            "arm_features", sorted(widths), "differ in length between bundles (several models?)"
        )
    return np.vstack([r for r in rows if r is not None])


# --------------------------------------------------------------------------------------------
# The evaluated policy on every logged row
# --------------------------------------------------------------------------------------------


def describe_policy(policy: Policy) -> str:
    """``name(k=v, ...)`` with the policy's non-default-looking parameters (``seed`` left out)."""
    params = {k: v for k, v in policy.get_params().items() if k != "seed" and v is not None}
    return f"{policy.name}({', '.join(f'{k}={v!r}' for k, v in params.items())})"


def _policy_of(policy_or_engine: Policy | Engine) -> Policy:
    from ..engine import Engine

    if isinstance(policy_or_engine, Engine):
        return policy_or_engine.policy
    if not isinstance(policy_or_engine, Policy):
        raise ConfigError.for_field(
            "policy", type(policy_or_engine).__name__, "must be an Engine or a Policy"
        )
    return policy_or_engine


def freeze_policy(policy: Policy, seed: SeedLike = None) -> Policy:
    """An independent copy of ``policy``; with ``seed``, the copy's random generator is replaced.

    Everything the evaluation does (``probabilities``, ``choose``, learning in
    :func:`online_replay`) happens on the copy, so the original's learned state and random
    generator are untouched. The copy is built the way a saved engine is restored, from the
    policy's plain-data parameters and state (``type(policy)(**get_params())`` then
    ``set_state(get_state())``), the path that save/load exercises for every policy; a policy
    whose constructor does not take its ``get_params()`` falls back to ``copy.deepcopy``. Policies keep their generator in ``rng_``
    (the :class:`~bandit_engine.policies.base.BasePolicy` convention); one without it keeps
    drawing from its copied generator, which is deterministic too.
    """
    try:
        frozen = type(policy)(**policy.get_params())
    except TypeError:
        frozen = copy.deepcopy(policy)
    else:
        frozen.set_state(policy.get_state())
    if seed is not None and isinstance(getattr(frozen, "rng_", None), np.random.Generator):
        frozen.rng_ = make_rng(seed)  # type: ignore[attr-defined]
    return frozen


def _check_distribution(p: FloatArray, k: int, row: int, name: str) -> FloatArray:
    p = np.asarray(p, dtype=np.float64)
    if p.shape != (k,) or not np.isfinite(p).all() or (p < 0).any():
        raise ValidationError(
            f"{name}.probabilities returned an invalid distribution on row {row}: shape "
            f"{p.shape} for {k} candidates, values {p[:5].tolist()}",
            field="probabilities",
            value=row,
        )
    total = float(p.sum())
    if abs(total - 1.0) > _SUM_SLACK:
        raise ValidationError(
            f"{name}.probabilities sum to {total:.6g} on row {row}, not 1",
            field="probabilities",
            value=total,
        )
    # Quadrature-based probabilities (linear TS) sum to 1 only within ~1e-7: renormalise.
    out: FloatArray = p / total
    return out


def action_distribution(
    policy: Policy | Engine,
    log: PolicyLog,
    *,
    method: str = "auto",
    n_draws: int = 100,
    seed: SeedLike = 0,
) -> tuple[FloatArray, str]:
    """The evaluated policy's (n, K) distribution over the arms on every logged row.

    Parameters
    ----------
    policy
        A policy or an engine (its policy). It is deep-copied first (:func:`freeze_policy`): the
        original is never changed, and the copy does not learn while it is evaluated.
    log
        The rows; arms outside a row's candidate set get probability 0.
    method
        ``"exact"``: ``policy.probabilities`` on every row (ConfigError when the policy can only be
        sampled). ``"sample"``: ``n_draws`` calls of ``choose`` per row on the frozen copy, seeded;
        when a ``Choice`` reports ``probabilities`` (the policy's distribution given its internal
        draws, e.g. shared-mode linear TS) their average is used, which is unbiased for the
        marginal and less noisy than counting choices; otherwise the choices are counted.
        ``"auto"``: exact when the policy provides it, else sampled.
    n_draws
        Draws per row for sampling (>= 1). The sampling error of each probability is at most
        ``0.5 / sqrt(n_draws)`` (standard deviation); IPS and DR stay unbiased with the sampled
        distribution because they are linear in it.
    seed
        Seed of the sampling draws (same seed, same distribution).

    Returns
    -------
    (dist, method_used)
        ``dist`` (n, K) with rows summing to 1; ``method_used`` is ``"exact"`` or
        ``"sampled(N)"``.
    """
    if method not in ("auto", "exact", "sample"):
        raise ConfigError.for_field("method", method, "must be 'auto', 'exact' or 'sample'")
    if isinstance(n_draws, bool) or not isinstance(n_draws, int | np.integer) or n_draws < 1:
        raise ConfigError.for_field("n_draws", n_draws, "must be an int >= 1")
    base = _policy_of(policy)
    frozen = freeze_policy(base, seed)
    n, K = log.n_rows, log.n_actions
    out = np.zeros((n, K))
    use_exact = method in ("auto", "exact")
    if use_exact:
        ids, Z, idx = log.arms_of(0)
        first = frozen.probabilities(log.context[0], ids, Z)
        if first is None:
            if method == "exact":
                raise ConfigError(
                    f"policy {base.name!r} cannot give exact probabilities "
                    "(policy.probabilities returned None); use method='sample'",
                    field="method",
                    value=method,
                )
            use_exact = False
    name = base.name
    if use_exact:
        for i in range(n):
            ids, Z, idx = log.arms_of(i)
            p = frozen.probabilities(log.context[i], ids, Z)
            if p is None:
                raise ValidationError.for_field(
                    "probabilities", i, "was None on a later row although the first row had them"
                )
            p = _check_distribution(p, len(ids), i, name)
            if idx is None:
                out[i] = p
            else:
                out[i, idx] = p
        return out, "exact"
    for i in range(n):
        ids, Z, idx = log.arms_of(i)
        acc = np.zeros(len(ids))
        for _ in range(int(n_draws)):
            choice = frozen.choose(log.context[i], ids, Z)
            if choice.probabilities is not None:
                acc += _check_distribution(choice.probabilities, len(ids), i, name)
            else:
                acc[choice.index] += 1.0
        acc /= float(n_draws)
        if idx is None:
            out[i] = acc
        else:
            out[i, idx] = acc
    return out, f"sampled({int(n_draws)})"


def fit_policy(policy: Policy, log: PolicyLog, *, seed: SeedLike = None) -> Policy:
    """A copy of ``policy`` trained on every row of ``log``, in order (the original is unchanged).

    Each row is one ``update(x, logged arm, its features, reward, logged propensity)``: supervised
    learning from the logged decisions. For per-arm regressions (LinUCB, linear TS) on a uniformly
    random log this is an unbiased fit of each arm's mean reward; on logs of a non-uniform policy
    the fits see the contexts in which that policy chose each arm (a selection bias the policy
    does not correct). Rows without a propensity are learned with propensity 1.
    """
    trained = freeze_policy(_policy_of(policy), seed)
    ps = log.pscore
    for i in range(log.n_rows):
        a = int(log.action[i])
        p = 1.0 if ps is None or math.isnan(ps[i]) else float(ps[i])
        trained.update(log.context[i], log.arm_ids[a], log.arm_features[a], float(log.reward[i]), p)
    return trained


# --------------------------------------------------------------------------------------------
# Online replay (Li et al. 2011)
# --------------------------------------------------------------------------------------------


def _check_uniform_log(log: PolicyLog, what: str) -> None:
    if log.pscore is None or np.isnan(log.pscore).any():
        raise DataError(
            f"{what} needs a uniformly random log, and this log has no (or incomplete) "
            "propensities to check that; pass check_uniform=False if you know it was uniform",
            field="pscore",
            value=None,
        )
    expected = 1.0 / log.candidate_counts()
    bad = np.flatnonzero(~np.isclose(log.pscore, expected, rtol=1e-6, atol=0.0))
    if bad.shape[0]:
        shown = ", ".join(f"{log.pscore[i]:.6g}" for i in bad[:5])
        raise DataError(
            f"{what} assumes uniformly random logging (pscore = 1 / number of candidates), but "
            f"{bad.shape[0]} of {log.n_rows} rows differ (indices "
            f"{', '.join(map(str, bad[:5].tolist()))}; pscore {shown}); use ips or dr, which "
            "weight by the logged propensity",
            field="pscore",
            value=bad[:5].tolist(),
        )


def _online_replay_batch(
    policy: Policy, log: PolicyLog, seed: SeedLike, check_uniform: bool
) -> tuple[TermBatch, int]:
    if check_uniform:
        _check_uniform_log(log, "online replay")
    learner = freeze_policy(policy, seed)
    n = log.n_rows
    match = np.zeros(n)
    for i in range(n):
        ids, Z, idx = log.arms_of(i)
        choice = learner.choose(log.context[i], ids, Z)
        chosen = int(choice.index) if idx is None else int(idx[choice.index])
        if chosen != int(log.action[i]):
            continue  # Li et al.: a row the policy would not have produced is discarded
        match[i] = 1.0
        learner.update(
            log.context[i],
            log.arm_ids[chosen],
            log.arm_features[chosen],
            float(log.reward[i]),
            float(choice.propensity),
        )
    terms = np.stack((match * log.reward, match))
    return TermBatch(terms, match, 1.0 if match.any() else 0.0, 0, n), int(match.sum())


def online_replay(
    policy: Policy | Engine,
    log: PolicyLog,
    seed: SeedLike = 0,
    *,
    check_uniform: bool = True,
    level: float = 0.95,
) -> Estimate:
    """Evaluate a learning policy by online replay (Li, Chu, Langford, Wang, WSDM 2011).

    The policy (a deep copy: the original is unchanged) walks the log in order; on each row it
    chooses among the row's candidates; when its choice equals the logged action the row counts
    (its reward is recorded) and the policy learns from it, otherwise the row is discarded and
    nothing is learned. On a uniformly random log the kept rows are distributed as if the policy
    had been run live, so the mean kept reward estimates the policy's average reward over its first
    ``n`` live decisions, ``n`` being the number of kept rows (about ``n_rows / K``).

    Parameters
    ----------
    policy
        A policy or an engine (its policy, with whatever it learned so far).
    log
        A uniformly random log (checked: ``pscore == 1 / number of candidates``).
    seed
        Seed of the copy's random generator (tie-breaking, exploration).
    check_uniform
        Refuse non-uniform logs (DataError pointing at IPS / DR). Turn off only for logs known to
        be uniform that lack propensities.
    level
        Interval level. The interval is the ratio-estimator one of :func:`replay`; it is
        approximate here because the policy changes as it learns.

    Returns
    -------
    Estimate
        ``estimator == "online_replay"``, ``n`` the number of matched rows; ``extra`` holds
        ``n_logged`` and ``match_rate``.

    Raises
    ------
    DataError
        Non-uniform log, or no row matched.
    """
    batch, _ = _online_replay_batch(_policy_of(policy), log, seed, check_uniform)
    acc = ReplayAccumulator(check_uniform=False, level=level)
    acc.push(batch)
    try:
        est = acc.result()
    except DataError as exc:
        raise DataError(
            str(exc).replace("replay", "online replay", 1), field="action", value=0
        ) from None
    return replace(est, estimator="online_replay")


# --------------------------------------------------------------------------------------------
# Reward model
# --------------------------------------------------------------------------------------------


class LogisticRewardModel:
    """L2-penalised logistic regression (numpy, Newton's method) for 0/1 rewards.

    scikit-learn-style ``fit`` / ``predict_proba`` with ``classes_ == [0, 1]``, so
    :func:`~bandit_engine.evaluation.cross_fit_rewards` treats it as a classifier and predicts
    ``P(reward = 1)``. Minimises ``sum log-loss + alpha / 2 * ||b||^2`` (intercept unpenalised).

    Parameters
    ----------
    alpha
        L2 penalty (> 0); it also keeps the fit finite on separable data.
    max_iter
        Newton steps at most (>= 1).
    tol
        Stop when the largest coefficient change is below ``tol``.
    """

    def __init__(self, *, alpha: float = 1.0, max_iter: int = 50, tol: float = 1e-8) -> None:
        self.alpha = check_positive("alpha", alpha)
        if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
            raise ConfigError.for_field("max_iter", max_iter, "must be an int >= 1")
        self.max_iter = max_iter
        self.tol = check_positive("tol", tol)
        self.coef_: FloatArray | None = None
        self.intercept_ = 0.0
        self.classes_ = np.array([0, 1])

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"alpha": self.alpha, "max_iter": self.max_iter, "tol": self.tol}

    def __repr__(self) -> str:
        return f"LogisticRewardModel(alpha={self.alpha!r})"

    def fit(self, X: ArrayLike, y: ArrayLike) -> LogisticRewardModel:
        """Fit on (n, p) features and (n,) 0/1 targets."""
        Xa, ya = fit_inputs(X, y)
        if not np.isin(ya, (0.0, 1.0)).all():
            raise ValidationError.for_field("y", sorted(set(ya.tolist()))[:5], "must be 0 or 1")
        n, p = Xa.shape
        A = np.hstack((np.ones((n, 1)), Xa))
        penalty = np.full(p + 1, self.alpha)
        penalty[0] = 1e-10  # the intercept is (almost) unpenalised; keeps the Hessian invertible
        beta = np.zeros(p + 1)
        for _ in range(self.max_iter):
            eta = np.clip(A @ beta, -35.0, 35.0)
            mu = 1.0 / (1.0 + np.exp(-eta))
            grad = A.T @ (mu - ya) + penalty * beta
            hess = (A * (mu * (1.0 - mu))[:, None]).T @ A
            hess[np.diag_indices_from(hess)] += penalty
            step = np.linalg.solve(hess, grad)
            beta -= step
            if float(np.abs(step).max()) < self.tol:
                break
        self.intercept_ = float(beta[0])
        self.coef_ = beta[1:]
        return self

    def predict_proba(self, X: ArrayLike) -> FloatArray:
        """(n, 2): ``P(reward = 0)``, ``P(reward = 1)``."""
        Xa, coef = predict_inputs(X, self.coef_, "LogisticRewardModel")
        p1 = 1.0 / (1.0 + np.exp(-np.clip(Xa @ coef + self.intercept_, -35.0, 35.0)))
        return np.column_stack((1.0 - p1, p1))


def _reward_model(spec: Any, reward: FloatArray) -> Any:
    if spec is None or spec == "ridge":
        return RidgeRewardModel(alpha=1.0)
    if spec == "logistic":
        if not np.isin(reward, (0.0, 1.0)).all():
            raise ConfigError(
                "reward model 'logistic' needs rewards in {0, 1}, but the log has other values; "
                "use 'ridge'",
                field="reward_model",
                value=spec,
            )
        return LogisticRewardModel(alpha=1.0)
    if isinstance(spec, str):
        raise ConfigError.for_field("reward_model", spec, "must be 'ridge' or 'logistic'")
    return spec  # an object with fit/predict(_proba); cross_fit_rewards validates it


# --------------------------------------------------------------------------------------------
# Estimates and uplift
# --------------------------------------------------------------------------------------------


#: Uplifts this close to 0 are floating-point rounding, never a finding.
_ROUNDING = 1e-12


@dataclass(frozen=True)
class Uplift:
    """The candidate's value minus the logging policy's, with its interval (module notes).

    ``significant`` is true when the interval excludes 0 and the uplift is more than floating-point
    rounding (``|value| > 1e-12``): evaluating the logging policy itself gives an uplift of 0 with an
    interval of rounding width, which must not read as a finding.
    """

    estimator: str
    value: float
    ci_low: float
    ci_high: float
    std_error: float
    level: float = 0.95
    ci_method: str = "normal"

    @property
    def significant(self) -> bool:
        if not abs(self.value) > _ROUNDING:
            return False
        return bool(self.ci_low > 0.0 or self.ci_high < 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimator": self.estimator,
            "value": self.value,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "std_error": self.std_error,
            "level": self.level,
            "ci_method": self.ci_method,
            "significant": self.significant,
        }


@dataclass(frozen=True, eq=False)
class PolicyEvaluation:
    """The result of :func:`evaluate_policy` / :func:`evaluate_action_dist`.

    Attributes
    ----------
    policy
        Description of the evaluated policy.
    method
        How its action distribution was obtained (``"exact"``, ``"sampled(N)"``, ``"given"``);
        ``"online"`` when only online replay ran.
    n_rows, n_actions
        Logged rows evaluated and number of actions.
    n_nonzero_rewards
        Rows with a non-zero reward (clicks, for click logs): what the precision rests on.
    logged
        The logging policy's value: the on-policy mean reward of the log (``estimator="logged"``).
    estimates, uplifts
        Per estimator (in the order requested): the candidate's value, and its uplift over
        ``logged``.
    skipped
        Estimators that could not run on this log, with the reason (DataError message).
    warnings
        When the data cannot support a confident answer (few non-zero rewards, tiny effective
        sample size, few replay matches, many clipped weights, skipped estimators).
    settings
        The evaluation settings (estimators, reward model, interval, seed ...).
    """

    policy: str
    method: str
    n_rows: int
    n_actions: int
    n_nonzero_rewards: int
    logged: Estimate
    estimates: dict[str, Estimate]
    uplifts: dict[str, Uplift]
    skipped: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain data with stable keys (non-finite numbers are kept as floats; see report)."""
        return {
            "policy": self.policy,
            "method": self.method,
            "n_rows": self.n_rows,
            "n_actions": self.n_actions,
            "n_nonzero_rewards": self.n_nonzero_rewards,
            "logged": self.logged.to_dict(),
            "estimates": [
                {**est.to_dict(), "uplift": self.uplifts[name].to_dict()}
                for name, est in self.estimates.items()
            ],
            "skipped": [{"estimator": k, "reason": v} for k, v in self.skipped.items()],
            "warnings": list(self.warnings),
            "settings": dict(self.settings),
        }


def _check_estimators(estimators: Sequence[str]) -> tuple[str, ...]:
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


def _logged_estimate(
    reward: FloatArray, *, level: float, ci: str, n_bootstrap: int, rng: np.random.Generator
) -> tuple[Estimate, TermBatch]:
    n = reward.shape[0]
    value = float(reward.mean())
    se = float(reward.std(ddof=1) / math.sqrt(n)) if n >= 2 else float("nan")
    low, high = normal_interval(value, se, level)
    method = "normal"
    if ci == "bootstrap":
        low, high, _ = bootstrap_interval(
            reward[None, :], lambda m: m[:, 0], n_bootstrap=n_bootstrap, level=level, seed=rng
        )
        method = "bootstrap"
    est = Estimate(
        estimator="logged",
        value=value,
        ci_low=low,
        ci_high=high,
        std_error=se,
        n=n,
        ci_method=method,
        level=level,
    )
    return est, TermBatch(reward[None, :], None, float("nan"), 0, n)


def _uplift(
    name: str,
    acc: OPEAccumulator,
    batch: TermBatch,
    reward: FloatArray,
    *,
    level: float,
    ci: str,
    n_bootstrap: int,
    rng: np.random.Generator,
) -> Uplift:
    """``f(mean T) - mean r`` with the joint delta-method (or joint bootstrap) interval."""
    m = batch.terms.shape[0]
    stacked = np.vstack((batch.terms, reward[None, :]))
    n = stacked.shape[1]
    means = stacked.mean(axis=1)
    value = float(acc.value_of(means[:m])) - float(means[m])
    grad = np.append(acc.gradient(means[:m]), -1.0)
    cov = np.cov(stacked, ddof=1) if n >= 2 else np.full((m + 1, m + 1), np.nan)
    se = delta_method_se(grad, np.atleast_2d(cov), n)
    low, high = normal_interval(value, se, level)
    method = "normal"
    if ci == "bootstrap":

        def stat(M: FloatArray) -> FloatArray:
            out: FloatArray = acc.value_of(M[:, :m]) - M[:, m]
            return out

        with np.errstate(divide="ignore", invalid="ignore"):
            low, high, _ = bootstrap_interval(
                stacked, stat, n_bootstrap=n_bootstrap, level=level, seed=rng
            )
        method = "bootstrap"
    return Uplift(name, value, float(low), float(high), float(se), level, method)


def _finish(
    acc: OPEAccumulator,
    batch: TermBatch,
    *,
    ci: str,
    n_bootstrap: int,
    rng: np.random.Generator,
) -> Estimate:
    acc.push(batch)
    est = acc.result()
    if ci == "bootstrap":
        with np.errstate(divide="ignore", invalid="ignore"):
            low, high, std = bootstrap_interval(
                batch.terms, acc.value_of, n_bootstrap=n_bootstrap, level=acc.level, seed=rng
            )
        est = replace(
            est,
            ci_low=low,
            ci_high=high,
            ci_method="bootstrap",
            extra={**est.extra, "bootstrap_std": std, "n_bootstrap": float(n_bootstrap)},
        )
    return est


def _warnings(
    n_rows: int,
    n_nonzero: int,
    estimates: Mapping[str, Estimate],
    skipped: Mapping[str, str],
) -> list[str]:
    out: list[str] = []
    if n_nonzero < MIN_NONZERO_REWARDS:
        out.append(
            f"only {n_nonzero} of {n_rows} rows have a non-zero reward (clicks): the estimates "
            "rest on very few events, so they are imprecise and their normal intervals "
            "unreliable (too narrow with so few events, a single point with none); treat them "
            "as indicative only"
        )
    for name, est in estimates.items():
        if name in ("replay", "online_replay"):
            if est.n < MIN_MATCHES:
                out.append(
                    f"{name}: only {est.n} of {n_rows} rows matched the policy's choice: the "
                    "estimate rests on too few rows"
                )
            continue
        if not math.isnan(est.ess) and est.ess < MIN_ESS:
            out.append(
                f"{name}: effective sample size {est.ess:.1f} of {est.n} rows (largest weight "
                f"{est.max_weight:.3g}): a few rows dominate the estimate"
            )
        if est.clipped_share > MAX_CLIPPED_SHARE:
            out.append(
                f"{name}: {100 * est.clipped_share:.1f}% of the weights were clipped or switched "
                "to the model: the estimate is biased towards the reward model / downwards"
            )
    for name, reason in skipped.items():
        out.append(f"{name} skipped: {reason}")
    return out


def _seed_sequence(seed: SeedLike) -> np.random.SeedSequence:
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

    def add(self, name: str, acc: OPEAccumulator, batch: TermBatch) -> None:
        est = _finish(acc, batch, ci=self.ci, n_bootstrap=self.n_bootstrap, rng=self.boot_rng)
        if name != est.estimator:
            est = replace(est, estimator=name)
        self.estimates[name] = est
        self.uplifts[name] = _uplift(
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
            reasons = "; ".join(f"{k}: {v}" for k, v in self.skipped.items())
            raise DataError(
                f"no estimator could run on this log ({reasons})",
                field="estimators",
                value=list(self.skipped),
            )
        n = int(self.reward.shape[0])
        logged, _ = _logged_estimate(
            self.reward,
            level=self.level,
            ci=self.ci,
            n_bootstrap=self.n_bootstrap,
            rng=self.boot_rng,
        )
        order = [k for k in names if k in self.estimates]
        n_nonzero = int(np.count_nonzero(self.reward))
        skipped = {k: self.skipped[k] for k in names if k in self.skipped}
        return PolicyEvaluation(
            policy=policy,
            method=method,
            n_rows=n,
            n_actions=n_actions,
            n_nonzero_rewards=n_nonzero,
            logged=logged,
            estimates={k: self.estimates[k] for k in order},
            uplifts={k: self.uplifts[k] for k in order},
            skipped=skipped,
            warnings=tuple(_warnings(n, n_nonzero, self.estimates, skipped)),
            settings=settings,
        )


def _missing_pscore(name: str) -> DataError:
    return DataError(
        f"{name} needs the logging propensity of every row, but the log has none; use dm, which "
        "needs no propensities",
        field="pscore",
        value=None,
    )


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
) -> None:
    """Run the distribution-based estimators into ``run`` (DataErrors become ``skipped``)."""
    r, lvl = run.reward, run.level
    fold_ss, replay_ss = seeds.spawn(2)
    qhat: ArrayLike | None = estimated_rewards
    if qhat is None and any(n in _MODEL_ESTIMATORS for n in names):
        ctx = np.zeros((r.shape[0], 0)) if context is None else context
        qhat = cross_fit_rewards(
            context=ctx,
            action=action,
            reward=r,
            n_actions=int(dist.shape[1]),
            model=_reward_model(reward_model, r),
            action_context=action_context,
            n_folds=n_folds,
            seed=np.random.default_rng(fold_ss),
            position=position,
        )
    for name in names:
        acc: OPEAccumulator
        try:
            if name == "replay":
                racc = ReplayAccumulator(seed=np.random.default_rng(replay_ss), level=lvl)
                batch = racc.row_terms(
                    reward=r,
                    action=action,
                    action_dist=dist,
                    position=position,
                    pscore=pscore,
                    n_candidates=n_candidates,
                )
                acc = racc
            elif name in ("ips", "snips"):
                if pscore is None:
                    raise _missing_pscore(name)
                wacc = (
                    IPSAccumulator(clip=clip, level=lvl)
                    if name == "ips"
                    else SNIPSAccumulator(clip=clip, level=lvl)
                )
                batch = wacc.row_terms(
                    reward=r, action=action, pscore=pscore, action_dist=dist, position=position
                )
                acc = wacc
            elif name == "dm":
                dacc = DMAccumulator(level=lvl)
                assert qhat is not None
                batch = dacc.row_terms(
                    action_dist=dist,
                    estimated_rewards=qhat,
                    reward=r,
                    action=action,
                    position=position,
                )
                acc = dacc
            else:
                if pscore is None:
                    raise _missing_pscore(name)
                facc: DRAccumulator | SwitchDRAccumulator
                if name == "dr":
                    facc = DRAccumulator(clip=clip, level=lvl)
                elif name == "sndr":
                    facc = SNDRAccumulator(clip=clip, level=lvl)
                else:
                    facc = SwitchDRAccumulator(tau=tau, level=lvl)
                assert qhat is not None
                batch = facc.row_terms(
                    reward=r,
                    action=action,
                    pscore=pscore,
                    action_dist=dist,
                    estimated_rewards=qhat,
                    position=position,
                )
                acc = facc
            run.add(name, acc, batch)
        except DataError as exc:
            run.skipped[name] = exc.message


def _settings(
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
    names = _check_estimators(estimators)
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
    offline_ss, boot_ss = _seed_sequence(seed).spawn(2)
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
    settings = _settings(
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

    names = _check_estimators(estimators)
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
    pol = _policy_of(policy)
    dist_ss, offline_ss, online_ss, boot_ss = _seed_sequence(seed).spawn(4)
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
        )
    if "online_replay" in names:
        try:
            batch, _ = _online_replay_batch(
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
    settings = _settings(
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
