"""Streaming accumulators: off-policy estimates over logs too large for one (n, K) array.

Each estimator is a smooth function of the means of a few per-row terms (see
:mod:`bandit_engine.evaluation.intervals`). An accumulator keeps only sufficient statistics: the
row count, the running means and the co-moment matrix of those terms (merged chunk by chunk with the
parallel update of Chan, Golub and LeVeque, which stays accurate where naive sums of squares would
cancel), plus weight diagnostics (sum of weights, sum of squared weights, largest weight, number
clipped). Feed chunks with ``update(**arrays)`` (the same keyword arrays as the in-memory function)
and read ``result()``; the result equals the in-memory function's normal-interval result up to
floating-point rounding (the in-memory functions are built on these classes: one code path).

Limitation: bootstrap intervals need every row's terms and are only offered in memory
(``ips(..., ci="bootstrap")`` ...), not here.

Example
-------
>>> acc = DRAccumulator(clip=50.0)
>>> for chunk in chunks:  # doctest: +SKIP
...     acc.update(reward=chunk.r, action=chunk.a, pscore=chunk.p,
...                action_dist=chunk.pi, estimated_rewards=chunk.q)
>>> acc.result()  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike

from ..errors import DataError, ValidationError
from ..policies.base import SeedLike, make_rng
from ..records import Estimate
from ._validate import (
    FloatArray,
    IntArray,
    LoggedRows,
    as_action,
    check_clip,
    check_finite_terms,
    check_level,
    pick,
    preview_rows,
    validate_rows,
)
from .intervals import bootstrap_interval, check_ci, delta_method_se, normal_interval

__all__ = [
    "DMAccumulator",
    "DRAccumulator",
    "IPSAccumulator",
    "Moments",
    "OPEAccumulator",
    "ReplayAccumulator",
    "SNDRAccumulator",
    "SNIPSAccumulator",
    "SwitchDRAccumulator",
    "TermBatch",
    "run_in_memory",
]


class Moments:
    """Running count, means and co-moment matrix of ``m`` per-row terms.

    ``covariance()`` is the sample covariance (ddof 1) of all rows added so far, whatever the
    chunking.
    """

    def __init__(self, m: int) -> None:
        self.n = 0
        self.mean = np.zeros(m)
        self.comoment = np.zeros((m, m))

    def add(self, terms: FloatArray) -> None:
        """Add a block of rows given term by term, shape (m, k)."""
        k = int(terms.shape[1])
        if k == 0:
            return
        mean_b = terms.mean(axis=1)
        centered = terms - mean_b[:, None]
        m = terms.shape[0]
        # m <= 3: pairwise dot products of contiguous rows beat a general matrix product.
        m_b = np.empty((m, m))
        for i in range(m):
            for j in range(i, m):
                m_b[i, j] = m_b[j, i] = float(np.dot(centered[i], centered[j]))
        if self.n == 0:
            self.n, self.mean, self.comoment = k, mean_b, m_b
            return
        n_a = self.n
        total = n_a + k
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (k / total)
        self.comoment = self.comoment + m_b + np.outer(delta, delta) * (n_a * k / total)
        self.n = total

    def covariance(self) -> FloatArray:
        if self.n < 2:
            return np.full_like(self.comoment, np.nan)
        out: FloatArray = self.comoment / (self.n - 1)
        return out


@dataclass(frozen=True, eq=False)
class TermBatch:
    """Per-row terms of one chunk and its weight diagnostics.

    Attributes
    ----------
    terms
        (m, k) per-row terms, one row per term (contiguous), whose means determine the estimate.
    weight
        (k,) importance weights the estimator used (after clipping), or ``None`` (DM).
    max_raw_weight
        Largest weight before clipping (``nan`` without weights).
    n_clipped
        Rows whose weight was clipped (or switched to the model, for Switch-DR).
    n_rows
        Logged rows in the chunk (replay keeps only some of them as ``n``).
    """

    terms: FloatArray
    weight: FloatArray | None
    max_raw_weight: float
    n_clipped: int
    n_rows: int


class OPEAccumulator:
    """Base of the streaming estimators (sufficient statistics, diagnostics, normal interval)."""

    estimator: ClassVar[str] = "base"
    term_names: ClassVar[tuple[str, ...]] = ("term",)
    uses_weights: ClassVar[bool] = True

    def __init__(self, *, level: float = 0.95) -> None:
        self.level = check_level(level)
        self.moments_ = Moments(len(self.term_names))
        self.n_rows_ = 0
        self.sum_w_ = 0.0
        self.sum_w2_ = 0.0
        self.max_weight_ = float("-inf")
        self.max_raw_weight_ = float("-inf")
        self.n_clipped_ = 0

    # -- to be specialised -------------------------------------------------------------------
    def value_of(self, means: FloatArray) -> FloatArray:
        """The estimate as a function of the term means (vectorised over leading axes)."""
        out: FloatArray = means[..., 0]
        return out

    def gradient(self, means: FloatArray) -> FloatArray:
        """Gradient of :meth:`value_of` at ``means`` (m,), for the delta method."""
        g = np.zeros(means.shape[0])
        g[0] = 1.0
        return g

    def _extra(self, means: FloatArray) -> dict[str, float]:
        return {}

    def _n_reported(self) -> int:
        return self.moments_.n

    def _check_defined(self, means: FloatArray) -> None:
        """Raise DataError when the estimate is undefined (e.g. all weights zero)."""

    # -- shared ------------------------------------------------------------------------------
    def push(self, batch: TermBatch) -> None:
        """Add a chunk's terms and diagnostics to the sufficient statistics."""
        self.moments_.add(batch.terms)
        self.n_rows_ += batch.n_rows
        self.n_clipped_ += batch.n_clipped
        if batch.weight is not None and batch.weight.shape[0]:
            w = batch.weight
            self.sum_w_ += float(w.sum())
            self.sum_w2_ += float(w @ w)
            self.max_weight_ = max(self.max_weight_, float(w.max()))
            self.max_raw_weight_ = max(self.max_raw_weight_, batch.max_raw_weight)

    def result(self) -> Estimate:
        """The estimate with its normal (delta-method) interval and weight diagnostics."""
        if self.n_rows_ == 0:
            raise DataError(
                f"{self.estimator}: no rows were added (call update with at least one row)",
                field="reward",
                value=0,
            )
        means = self.moments_.mean
        self._check_defined(means)
        value = float(self.value_of(means))
        se = delta_method_se(self.gradient(means), self.moments_.covariance(), self.moments_.n)
        low, high = normal_interval(value, se, self.level)
        extra = self._extra(means)
        if self.uses_weights:
            ess = self.sum_w_**2 / self.sum_w2_ if self.sum_w2_ > 0 else 0.0
            max_w = self.max_weight_
            extra["max_raw_weight"] = self.max_raw_weight_
        else:
            ess, max_w = float("nan"), float("nan")
        return Estimate(
            estimator=self.estimator,
            value=value,
            ci_low=low,
            ci_high=high,
            std_error=se,
            n=self._n_reported(),
            ess=float(ess),
            max_weight=float(max_w),
            clipped_share=self.n_clipped_ / self.n_rows_,
            ci_method="normal",
            level=self.level,
            extra=extra,
        )


def run_in_memory(
    acc: OPEAccumulator, batch: TermBatch, *, ci: str, n_bootstrap: int, seed: SeedLike
) -> Estimate:
    """Push one batch, read the result and, on request, replace the interval by a bootstrap one."""
    check_ci(ci, n_bootstrap)
    acc.push(batch)
    est = acc.result()
    if ci == "normal":
        return est
    with np.errstate(divide="ignore", invalid="ignore"):
        low, high, std = bootstrap_interval(
            batch.terms, acc.value_of, n_bootstrap=n_bootstrap, level=acc.level, seed=seed
        )
    return replace(
        est,
        ci_low=low,
        ci_high=high,
        ci_method="bootstrap",
        extra={**est.extra, "bootstrap_std": std, "n_bootstrap": float(n_bootstrap)},
    )


def _max_raw(w: FloatArray) -> float:
    """Largest weight before clipping or switching (``nan`` for an empty chunk)."""
    return float(w.max()) if w.shape[0] else float("nan")


def _clipped(w: FloatArray, clip: float) -> tuple[FloatArray, int, float]:
    max_raw = _max_raw(w)
    if np.isinf(clip):
        return w, 0, max_raw
    return np.minimum(w, clip), int(np.count_nonzero(w > clip)), max_raw


def _dm_terms(rows: LoggedRows) -> FloatArray:
    assert rows.dist is not None and rows.qhat is not None
    dm = np.einsum("ij,ij->i", rows.dist, rows.qhat)
    check_finite_terms("estimated_rewards", dm, rows.qhat)
    out: FloatArray = dm
    return out


def _q_logged(rows: LoggedRows) -> FloatArray:
    assert rows.qhat is not None
    return pick(rows.qhat, rows.action)


class _RatioOfMeans(OPEAccumulator):
    """An estimate that is the ratio of its two term means (SNIPS, replay).

    Its delta-method interval is the ratio estimator's.
    """

    def value_of(self, means: FloatArray) -> FloatArray:
        out: FloatArray = means[..., 0] / means[..., 1]
        return out

    def gradient(self, means: FloatArray) -> FloatArray:
        return np.array([1.0 / means[1], -means[0] / means[1] ** 2])


# --------------------------------------------------------------------------------------------
# Importance weighting
# --------------------------------------------------------------------------------------------


class IPSAccumulator(OPEAccumulator):
    """Inverse propensity scoring, optionally with weights clipped at ``clip``.

    Value: ``mean(min(w, clip) * r)`` with ``w = pi(a_i | x_i) / pscore_i``.
    """

    estimator: ClassVar[str] = "ips"
    term_names: ClassVar[tuple[str, ...]] = ("w_r",)

    def __init__(self, *, clip: float | None = None, level: float = 0.95) -> None:
        super().__init__(level=level)
        self.clip = clip
        self._clip = check_clip("clip", clip)

    def row_terms(
        self,
        *,
        reward: ArrayLike,
        action: ArrayLike,
        pscore: ArrayLike,
        action_dist: ArrayLike | None = None,
        action_prob: ArrayLike | None = None,
        position: ArrayLike | None = None,
    ) -> TermBatch:
        rows = validate_rows(
            estimator=self.estimator,
            reward=reward,
            action=action,
            pscore=pscore,
            action_dist=action_dist,
            action_prob=action_prob,
            position=position,
            need_pscore=True,
            allow_action_prob=True,
        )
        w, n_clipped, max_raw = _clipped(rows.weight, self._clip)
        return TermBatch(self._terms(w, rows.reward), w, max_raw, n_clipped, rows.n)

    def _terms(self, w: FloatArray, r: FloatArray) -> FloatArray:
        return (w * r)[None, :]

    def update(
        self,
        *,
        reward: ArrayLike,
        action: ArrayLike,
        pscore: ArrayLike,
        action_dist: ArrayLike | None = None,
        action_prob: ArrayLike | None = None,
        position: ArrayLike | None = None,
    ) -> None:
        """Add a chunk of logged rows (same arrays as :func:`~bandit_engine.evaluation.ips`)."""
        self.push(
            self.row_terms(
                reward=reward,
                action=action,
                pscore=pscore,
                action_dist=action_dist,
                action_prob=action_prob,
                position=position,
            )
        )


class SNIPSAccumulator(_RatioOfMeans, IPSAccumulator):
    """Self-normalized IPS: ``sum(w r) / sum(w)``; interval from the ratio-estimator variance."""

    estimator: ClassVar[str] = "snips"
    term_names: ClassVar[tuple[str, ...]] = ("w_r", "w")

    def _terms(self, w: FloatArray, r: FloatArray) -> FloatArray:
        return np.stack((w * r, w))

    def _check_defined(self, means: FloatArray) -> None:
        _check_weight_mass(self.estimator, float(means[-1]))


def _check_weight_mass(estimator: str, mean_w: float) -> None:
    if mean_w <= 0.0:
        raise DataError(
            f"{estimator} is undefined: every importance weight is 0 (the evaluated policy gives "
            "probability 0 to every logged action), so there is nothing to normalise by; "
            "use dm() or a policy that overlaps the logged actions",
            field="action_dist",
            value=mean_w,
        )


# --------------------------------------------------------------------------------------------
# Direct method and the doubly robust family
# --------------------------------------------------------------------------------------------


class DMAccumulator(OPEAccumulator):
    """Direct method: ``mean_i sum_a pi(a | x_i) qhat(x_i, a)``; no propensities needed."""

    estimator: ClassVar[str] = "dm"
    term_names: ClassVar[tuple[str, ...]] = ("dm",)
    uses_weights: ClassVar[bool] = False

    def row_terms(
        self,
        *,
        action_dist: ArrayLike,
        estimated_rewards: ArrayLike,
        reward: ArrayLike | None = None,
        action: ArrayLike | None = None,
        position: ArrayLike | None = None,
    ) -> TermBatch:
        if action is None:
            # DM never looks at the logged action; a placeholder keeps the shared checks.
            n = int(np.shape(action_dist)[0]) if np.ndim(action_dist) >= 1 else 0
            action = np.zeros(n, dtype=np.int64)
        rows = validate_rows(
            estimator=self.estimator,
            reward=reward,
            action=action,
            action_dist=action_dist,
            position=position,
            estimated_rewards=estimated_rewards,
            need_pscore=False,
            need_qhat=True,
        )
        return TermBatch(_dm_terms(rows)[None, :], None, float("nan"), 0, rows.n)

    def update(
        self,
        *,
        action_dist: ArrayLike,
        estimated_rewards: ArrayLike,
        reward: ArrayLike | None = None,
        action: ArrayLike | None = None,
        position: ArrayLike | None = None,
    ) -> None:
        """Add a chunk (same arrays as :func:`~bandit_engine.evaluation.dm`)."""
        self.push(
            self.row_terms(
                action_dist=action_dist,
                estimated_rewards=estimated_rewards,
                reward=reward,
                action=action,
                position=position,
            )
        )


class _DRFamily(OPEAccumulator):
    """Shared input handling of DR, SNDR and Switch-DR, and the DR value
    ``mean(dm_i) + mean(w_i residual_i)`` that DR and Switch-DR share (they differ only in how
    the weights are capped: :meth:`_weights`)."""

    def _weights(self, w: FloatArray) -> tuple[FloatArray, int, float]:
        raise NotImplementedError

    def _family_terms(self, dm: FloatArray, w: FloatArray, residual: FloatArray) -> FloatArray:
        return np.stack((dm, w * residual))

    def value_of(self, means: FloatArray) -> FloatArray:
        out: FloatArray = means[..., 0] + means[..., 1]
        return out

    def gradient(self, means: FloatArray) -> FloatArray:
        return np.ones(2)

    def row_terms(
        self,
        *,
        reward: ArrayLike,
        action: ArrayLike,
        pscore: ArrayLike,
        action_dist: ArrayLike,
        estimated_rewards: ArrayLike,
        position: ArrayLike | None = None,
    ) -> TermBatch:
        rows = validate_rows(
            estimator=self.estimator,
            reward=reward,
            action=action,
            pscore=pscore,
            action_dist=action_dist,
            position=position,
            estimated_rewards=estimated_rewards,
            need_pscore=True,
            need_qhat=True,
        )
        dm = _dm_terms(rows)
        w, n_clipped, max_raw = self._weights(rows.weight)
        residual = rows.reward - _q_logged(rows)
        return TermBatch(self._family_terms(dm, w, residual), w, max_raw, n_clipped, rows.n)

    def update(
        self,
        *,
        reward: ArrayLike,
        action: ArrayLike,
        pscore: ArrayLike,
        action_dist: ArrayLike,
        estimated_rewards: ArrayLike,
        position: ArrayLike | None = None,
    ) -> None:
        """Add a chunk (same arrays as :func:`~bandit_engine.evaluation.dr`)."""
        self.push(
            self.row_terms(
                reward=reward,
                action=action,
                pscore=pscore,
                action_dist=action_dist,
                estimated_rewards=estimated_rewards,
                position=position,
            )
        )

    def _extra(self, means: FloatArray) -> dict[str, float]:
        return {"dm": float(means[0]), "correction": float(self.value_of(means) - means[0])}


class DRAccumulator(_DRFamily):
    """Doubly robust: ``mean(dm_i + min(w_i, clip) * (r_i - qhat(x_i, a_i)))``."""

    estimator: ClassVar[str] = "dr"
    term_names: ClassVar[tuple[str, ...]] = ("dm", "w_residual")

    def __init__(self, *, clip: float | None = None, level: float = 0.95) -> None:
        super().__init__(level=level)
        self.clip = clip
        self._clip = check_clip("clip", clip)

    def _weights(self, w: FloatArray) -> tuple[FloatArray, int, float]:
        return _clipped(w, self._clip)


class SNDRAccumulator(DRAccumulator):
    """Self-normalized DR: ``mean(dm_i) + sum(w (r - qhat_a)) / sum(w)``."""

    estimator: ClassVar[str] = "sndr"
    term_names: ClassVar[tuple[str, ...]] = ("dm", "w_residual", "w")

    def _family_terms(self, dm: FloatArray, w: FloatArray, residual: FloatArray) -> FloatArray:
        return np.stack((dm, w * residual, w))

    def value_of(self, means: FloatArray) -> FloatArray:
        out: FloatArray = means[..., 0] + means[..., 1] / means[..., 2]
        return out

    def gradient(self, means: FloatArray) -> FloatArray:
        return np.array([1.0, 1.0 / means[2], -means[1] / means[2] ** 2])

    def _check_defined(self, means: FloatArray) -> None:
        _check_weight_mass(self.estimator, float(means[2]))


class SwitchDRAccumulator(_DRFamily):
    """Switch-DR: the DR correction on rows with ``w_i <= tau``, the model alone elsewhere.

    Value: ``mean(dm_i + [w_i <= tau] w_i (r_i - qhat(x_i, a_i)))``. ``tau = inf`` is DR,
    ``tau = 0`` is DM. ``clipped_share`` is the share of rows switched to the model.
    """

    estimator: ClassVar[str] = "switch_dr"
    term_names: ClassVar[tuple[str, ...]] = ("dm", "switched_w_residual")

    def __init__(self, *, tau: float, level: float = 0.95) -> None:
        super().__init__(level=level)
        self.tau = check_clip("tau", tau, allow_zero=True)

    def _weights(self, w: FloatArray) -> tuple[FloatArray, int, float]:
        keep = w <= self.tau
        return np.where(keep, w, 0.0), int(w.shape[0] - np.count_nonzero(keep)), _max_raw(w)


# --------------------------------------------------------------------------------------------
# Replay
# --------------------------------------------------------------------------------------------


class ReplayAccumulator(_RatioOfMeans):
    """Replay (Li, Chu, Langford, Wang, WSDM 2011) on uniformly-random logs.

    Keeps the rows where the logged action equals the evaluated policy's action; the value is the
    mean reward of the kept rows (a ratio of means, so its interval is the ratio-estimator one and
    ``n`` is the number of kept rows). A stochastic policy given as ``action_dist`` is sampled once
    per row from ``seed``; the draws do not depend on the chunking.
    """

    estimator: ClassVar[str] = "replay"
    term_names: ClassVar[tuple[str, ...]] = ("match_r", "match")

    def __init__(
        self, *, seed: SeedLike = None, check_uniform: bool = True, level: float = 0.95
    ) -> None:
        super().__init__(level=level)
        self.seed = seed if not isinstance(seed, np.random.Generator) else None
        self.check_uniform = bool(check_uniform)
        self.rng_ = make_rng(seed)
        self.uniform_pscore_: float | None = None

    def _n_reported(self) -> int:
        return round(self.sum_w_)

    def _extra(self, means: FloatArray) -> dict[str, float]:
        return {"n_logged": float(self.n_rows_), "match_rate": float(means[1])}

    def _check_defined(self, means: FloatArray) -> None:
        if means[1] <= 0.0:
            raise DataError(
                f"replay matched 0 of {self.n_rows_} logged rows: the evaluated policy never "
                "chose the logged action, so replay has no data (use more logs, or ips/dr)",
                field="action",
                value=0,
            )

    def row_terms(
        self,
        *,
        reward: ArrayLike,
        action: ArrayLike,
        policy_action: ArrayLike | None = None,
        action_dist: ArrayLike | None = None,
        position: ArrayLike | None = None,
        pscore: ArrayLike | None = None,
        n_candidates: ArrayLike | None = None,
    ) -> TermBatch:
        if (policy_action is None) == (action_dist is None):
            raise ValidationError(
                "replay needs exactly one of policy_action (n,) and action_dist (n, K)",
                field="policy_action",
                value=None,
            )
        if action_dist is not None:
            rows = validate_rows(
                estimator=self.estimator,
                reward=reward,
                action=action,
                pscore=pscore,
                action_dist=action_dist,
                position=position,
                need_pscore=False,
            )
            assert rows.dist is not None
            chosen = _sample_rows(rows.dist, self.rng_)
        else:
            rows = validate_rows(
                estimator=self.estimator,
                reward=reward,
                action=action,
                pscore=pscore,
                action_prob=np.ones(np.shape(action)[0] if np.ndim(action) else 0),
                need_pscore=False,
                allow_action_prob=True,
            )
            assert policy_action is not None
            chosen = as_action("policy_action", policy_action)
            if chosen.shape[0] != rows.n:
                raise ValidationError(
                    f"policy_action (n={chosen.shape[0]}) and action (n={rows.n}) must have "
                    "the same length",
                    field="policy_action",
                    value=chosen.shape,
                )
        if self.check_uniform and rows.pscore is not None:
            self._check_uniform(rows.pscore, n_candidates)
        match = (chosen == rows.action).astype(np.float64)
        terms = np.stack((match * rows.reward, match))
        return TermBatch(terms, match, 1.0 if match.any() else 0.0, 0, rows.n)

    def _check_uniform(self, pscore: FloatArray, n_candidates: ArrayLike | None) -> None:
        if n_candidates is not None:
            nc = as_action("n_candidates", n_candidates)
            if nc.shape != pscore.shape:
                raise ValidationError(
                    f"n_candidates must have shape {pscore.shape} like pscore, got {nc.shape}",
                    field="n_candidates",
                    value=nc.shape,
                )
            expected = 1.0 / np.maximum(nc, 1)
            bad_mask = ~np.isclose(pscore, expected, rtol=1e-6, atol=0.0) | (nc < 1)
            if bad_mask.any():
                bad = np.flatnonzero(bad_mask)
                raise DataError(
                    "replay assumes uniformly random logging (pscore = 1 / n_candidates), but "
                    f"{preview_rows(bad, pscore[bad], total=pscore.shape[0])} differ; "
                    "use ips() or dr(), which weight by the logged propensity",
                    field="pscore",
                    value=pscore[bad[:5]].tolist(),
                )
            return
        ref = self.uniform_pscore_ if self.uniform_pscore_ is not None else float(pscore[0])
        bad_mask = ~np.isclose(pscore, ref, rtol=1e-6, atol=0.0)
        if bad_mask.any():
            bad = np.flatnonzero(bad_mask)
            raise DataError(
                f"replay assumes uniformly random logging, but pscore is not constant ({ref:.6g} "
                f"elsewhere): {preview_rows(bad, pscore[bad], total=pscore.shape[0])}; pass "
                "n_candidates if candidate sets vary in size, or use ips()/dr()",
                field="pscore",
                value=pscore[bad[:5]].tolist(),
            )
        self.uniform_pscore_ = ref

    def update(
        self,
        *,
        reward: ArrayLike,
        action: ArrayLike,
        policy_action: ArrayLike | None = None,
        action_dist: ArrayLike | None = None,
        position: ArrayLike | None = None,
        pscore: ArrayLike | None = None,
        n_candidates: ArrayLike | None = None,
    ) -> None:
        """Add a chunk (same arrays as :func:`~bandit_engine.evaluation.replay`)."""
        self.push(
            self.row_terms(
                reward=reward,
                action=action,
                policy_action=policy_action,
                action_dist=action_dist,
                position=position,
                pscore=pscore,
                n_candidates=n_candidates,
            )
        )


def _sample_rows(dist: FloatArray, rng: np.random.Generator) -> IntArray:
    """One action per row from (n, K) probabilities, by inverting the row's CDF."""
    u = rng.random(size=(dist.shape[0],))
    cdf = np.cumsum(dist, axis=1)
    idx = (u[:, None] >= cdf).sum(axis=1)
    # Rounding can leave the last CDF entry just below 1; never return K.
    out: IntArray = np.minimum(idx, dist.shape[1] - 1).astype(np.int64)
    return out
