"""The uplift of an evaluated policy over the logging policy, with a paired interval, and the
estimates' bootstrap intervals.

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

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..records import Estimate
from ._validate import FloatArray
from .intervals import bootstrap_interval, delta_method_se, normal_interval
from .streaming import Moments, OPEAccumulator, TermBatch

__all__ = [
    "Uplift",
    "finish_estimate",
    "logged_estimate",
    "logged_from_moments",
    "paired_moments",
    "paired_uplift",
    "uplift_from_moments",
]


#: Uplifts this close to 0 are floating-point rounding, never a finding.
_ROUNDING = 1e-12


@dataclass(frozen=True)
class Uplift:
    """The candidate's value minus the logging policy's, with its interval (module notes).

    ``significant`` is true when the interval excludes 0, the uplift is more than floating-point
    rounding (``|value| > 1e-12``) and the log supports the evaluated policy (``supported``, set
    from :class:`~bandit_engine.evaluation.support.SupportStats`): evaluating the logging policy
    itself gives an uplift of 0 with an interval of rounding width, and an estimate the log cannot
    support has an interval that says nothing about its bias; neither must read as a finding.
    """

    estimator: str
    value: float
    ci_low: float
    ci_high: float
    std_error: float
    level: float = 0.95
    ci_method: str = "normal"
    supported: bool = True

    @property
    def significant(self) -> bool:
        if not self.supported:
            return False
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
            "supported": self.supported,
        }


def logged_from_moments(moments: Moments, *, level: float) -> Estimate:
    """The logging policy's value, ``mean(r)``, with its normal interval, from the moments of
    the rewards (one term)."""
    value = float(moments.mean[0])
    se = delta_method_se(np.ones(1), moments.covariance(), moments.n)
    low, high = normal_interval(value, se, level)
    return Estimate(
        estimator="logged",
        value=value,
        ci_low=low,
        ci_high=high,
        std_error=se,
        n=moments.n,
        ci_method="normal",
        level=level,
    )


def logged_estimate(
    reward: FloatArray, *, level: float, ci: str, n_bootstrap: int, rng: np.random.Generator
) -> tuple[Estimate, TermBatch]:
    n = reward.shape[0]
    moments = Moments(1)
    moments.add(reward[None, :])
    est = logged_from_moments(moments, level=level)
    if ci == "bootstrap":
        low, high, _ = bootstrap_interval(
            reward[None, :], lambda m: m[:, 0], n_bootstrap=n_bootstrap, level=level, seed=rng
        )
        est = replace(est, ci_low=low, ci_high=high, ci_method="bootstrap")
    return est, TermBatch(reward[None, :], None, float("nan"), 0, n)


def paired_moments(batch: TermBatch, reward: FloatArray) -> Moments:
    """The moments of the stacked per-row vectors ``(T_i, r_i)`` of a batch (mergeable)."""
    moments = Moments(batch.terms.shape[0] + 1)
    moments.add(np.vstack((batch.terms, reward[None, :])))
    return moments


def uplift_from_moments(
    name: str, acc: OPEAccumulator, moments: Moments, *, level: float
) -> Uplift:
    """``f(mean T) - mean r`` with the joint delta-method interval (module notes), from the
    moments of ``(T_i, r_i)`` (:func:`paired_moments`, merged over parts or not)."""
    m = moments.mean.shape[0] - 1
    means = moments.mean
    value = float(acc.value_of(means[:m])) - float(means[m])
    grad = np.append(acc.gradient(means[:m]), -1.0)
    se = delta_method_se(grad, moments.covariance(), moments.n)
    low, high = normal_interval(value, se, level)
    return Uplift(name, value, float(low), float(high), float(se), level, "normal")


def paired_uplift(
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
    up = uplift_from_moments(name, acc, paired_moments(batch, reward), level=level)
    if ci != "bootstrap":
        return up
    m = batch.terms.shape[0]
    stacked = np.vstack((batch.terms, reward[None, :]))

    def stat(M: FloatArray) -> FloatArray:
        out: FloatArray = acc.value_of(M[:, :m]) - M[:, m]
        return out

    with np.errstate(divide="ignore", invalid="ignore"):
        low, high, _ = bootstrap_interval(
            stacked, stat, n_bootstrap=n_bootstrap, level=level, seed=rng
        )
    return replace(up, ci_low=float(low), ci_high=float(high), ci_method="bootstrap")


def finish_estimate(
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
