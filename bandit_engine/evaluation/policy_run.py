"""The evaluated policy on every logged row: its action distribution, and a copy trained on a log.

:func:`action_distribution` gives the policy's (n, K) distribution over the arms on every logged
row: exact where the policy knows it (``policy.probabilities``), else estimated from ``n_draws``
seeded calls of ``choose`` per row. Both run on a copy of the policy (:func:`freeze_policy`), so
evaluating never changes the engine: not its learned state, not its random generator.
:func:`fit_policy` trains a copy on the logged decisions.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConfigError, ValidationError
from ..policies.base import Policy, SeedLike, make_rng
from ._validate import FloatArray
from .policy_log import PolicyLog

if TYPE_CHECKING:
    from ..engine import Engine

__all__ = [
    "action_distribution",
    "describe_policy",
    "fit_policy",
    "freeze_policy",
    "policy_of",
]


#: Largest accepted ``|sum(probabilities) - 1|`` of a policy's distribution before renormalising.
_SUM_SLACK = 1e-3


def describe_policy(policy: Policy) -> str:
    """``name(k=v, ...)`` with the policy's non-default-looking parameters (``seed`` left out)."""
    params = {k: v for k, v in policy.get_params().items() if k != "seed" and v is not None}
    return f"{policy.name}({', '.join(f'{k}={v!r}' for k, v in params.items())})"


def policy_of(policy_or_engine: Policy | Engine) -> Policy:
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
    base = policy_of(policy)
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
    trained = freeze_policy(policy_of(policy), seed)
    ps = log.pscore
    for i in range(log.n_rows):
        a = int(log.action[i])
        p = 1.0 if ps is None or math.isnan(ps[i]) else float(ps[i])
        trained.update(log.context[i], log.arm_ids[a], log.arm_features[a], float(log.reward[i]), p)
    return trained
