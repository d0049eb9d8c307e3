"""Streaming accumulators: off-policy estimates over logs too large for one (n, K) array.

Each estimator is a smooth function of the means of a few per-row terms (see
:mod:`bandit_engine.evaluation.intervals`). An accumulator keeps only sufficient statistics: the
row count, the running means and the co-moment matrix of those terms (merged chunk by chunk with the
parallel update of Chan, Golub and LeVeque, which stays accurate where naive sums of squares would
cancel), plus weight diagnostics (sum of weights, sum of squared weights, largest weight, number
clipped). Feed chunks with ``update(**arrays)`` (the same keyword arrays as the in-memory function)
and read ``result()``; the result equals the in-memory function's normal-interval result up to
floating-point rounding (the in-memory functions are built on these classes: one code path).

This module holds what every estimator shares: :class:`Moments`, the :class:`TermBatch` of a chunk,
the :class:`OPEAccumulator` base (chunk in with ``push``, estimate and normal interval out with
``result``), :func:`run_in_memory` (one batch, optionally a bootstrap interval) and the weight
helpers. Each estimator's accumulator lives beside its in-memory function: ``IPSAccumulator`` in
:mod:`~bandit_engine.evaluation.ips`, ``SNIPSAccumulator`` in
:mod:`~bandit_engine.evaluation.snips`, ``DMAccumulator`` in :mod:`~bandit_engine.evaluation.dm`,
``DRAccumulator`` in :mod:`~bandit_engine.evaluation.dr`, ``SNDRAccumulator`` in
:mod:`~bandit_engine.evaluation.sndr`, ``SwitchDRAccumulator`` in
:mod:`~bandit_engine.evaluation.switch_dr` and ``ReplayAccumulator`` in
:mod:`~bandit_engine.evaluation.replay`; all are exported by :mod:`bandit_engine.evaluation`.

Merging: ``a.merge(b)`` (or :func:`merge`) returns a new accumulator holding the rows of both,
so a log split into parts (files, workers, processes) is evaluated part by part and the partial
accumulators combined in any grouping. Counts, maxima and clipped counts merge exactly; the means
and co-moments merge by the same Chan-Golub-LeVeque update, so the merged estimate, interval and
diagnostics equal the single-pass result up to floating-point rounding (relative 1e-12 in the
property tests of ``tests/test_evaluation_merge.py``, whatever the partition and the merge tree),
not bit for bit: float addition is not associative.

Limitation: bootstrap intervals need every row's terms and are only offered in memory
(``ips(..., ci="bootstrap")`` ...), not here.

Chunk size: tens of thousands of rows. With 80 actions a 16,384-row chunk keeps each
``action_dist`` near 10 MB, which the allocator reuses; 500,000-row chunks (320 MB arrays) are
mapped and unmapped on every call and spent over half their time in page faults
(``benchmarks/bench_dask_ope.py``).

Example
-------
>>> acc = DRAccumulator(clip=50.0)
>>> for chunk in chunks:  # doctest: +SKIP
...     acc.update(reward=chunk.r, action=chunk.a, pscore=chunk.p,
...                action_dist=chunk.pi, estimated_rewards=chunk.q)
>>> acc.result()  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any, ClassVar, TypeVar

import numpy as np

from ..errors import ConfigError, DataError
from ..policies.base import SeedLike
from ..records import Estimate
from ._validate import FloatArray, check_level
from .intervals import bootstrap_interval, check_ci, delta_method_se, normal_interval
from .support import SupportStats

__all__ = [
    "Moments",
    "OPEAccumulator",
    "RatioOfMeans",
    "TermBatch",
    "check_weight_mass",
    "clip_weights",
    "max_raw_weight",
    "merge",
    "run_in_memory",
]

A = TypeVar("A", bound="OPEAccumulator")


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

    def merge(self, other: Moments) -> Moments:
        """The moments of the rows of both (a new object; Chan, Golub and LeVeque's pairwise
        update: ``M = M_a + M_b + d d' n_a n_b / n`` with ``d`` the difference of the means)."""
        if self.mean.shape != other.mean.shape:
            raise ConfigError.for_field(
                "terms", (self.mean.shape[0], other.mean.shape[0]), "must be as many to merge"
            )
        out = Moments(self.mean.shape[0])
        if other.n == 0 or self.n == 0:
            src = self if other.n == 0 else other
            out.n, out.mean, out.comoment = src.n, src.mean.copy(), src.comoment.copy()
            return out
        total = self.n + other.n
        delta = other.mean - self.mean
        out.n = total
        out.mean = self.mean + delta * (other.n / total)
        out.comoment = (
            self.comoment + other.comoment + np.outer(delta, delta) * (self.n * other.n / total)
        )
        return out

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
    support
        Support statistics of the chunk (:mod:`~bandit_engine.evaluation.support`), for the
        estimators that weight by the logged propensity; ``None`` otherwise.
    """

    terms: FloatArray
    weight: FloatArray | None
    max_raw_weight: float
    n_clipped: int
    n_rows: int
    support: SupportStats | None = None


class OPEAccumulator:
    """Base of the streaming estimators (sufficient statistics, diagnostics, normal interval)."""

    estimator: ClassVar[str] = "base"
    term_names: ClassVar[tuple[str, ...]] = ("term",)
    uses_weights: ClassVar[bool] = True
    #: Settings two accumulators must share to be merged (attribute names).
    merge_settings: ClassVar[tuple[str, ...]] = ("level",)

    def __init__(self, *, level: float = 0.95) -> None:
        self.level = check_level(level)
        self.moments_ = Moments(len(self.term_names))
        self.n_rows_ = 0
        self.sum_w_ = 0.0
        self.sum_w2_ = 0.0
        self.max_weight_ = float("-inf")
        self.max_raw_weight_ = float("-inf")
        self.n_clipped_ = 0
        self.support_ = SupportStats()

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
        if batch.support is not None:
            self.support_ = self.support_.merge(batch.support)
        if batch.weight is not None and batch.weight.shape[0]:
            w = batch.weight
            self.sum_w_ += float(w.sum())
            self.sum_w2_ += float(w @ w)
            self.max_weight_ = max(self.max_weight_, float(w.max()))
            self.max_raw_weight_ = max(self.max_raw_weight_, batch.max_raw_weight)

    def merge(self: A, other: A) -> A:
        """A new accumulator holding the rows of ``self`` and ``other`` (neither is changed).

        Exact for the counts, the largest weights and the clipped counts; the means, co-moments
        and weight sums up to floating-point rounding (module docstring). Both must be the same
        estimator with the same settings (``level``, ``clip``, ``tau`` ...).

        Raises
        ------
        ConfigError
            Different estimators or settings.
        """
        if type(other) is not type(self):
            raise ConfigError.for_field(
                "other",
                type(other).__name__,
                f"must be a {type(self).__name__} to merge with one",
            )
        for name in self.merge_settings:
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                raise ConfigError.for_field(
                    name.strip("_"), (mine, theirs), "must be the same in both accumulators"
                )
        out = copy.deepcopy(self)
        out.moments_ = self.moments_.merge(other.moments_)
        out.n_rows_ = self.n_rows_ + other.n_rows_
        out.n_clipped_ = self.n_clipped_ + other.n_clipped_
        out.sum_w_ = self.sum_w_ + other.sum_w_
        out.sum_w2_ = self.sum_w2_ + other.sum_w2_
        out.max_weight_ = max(self.max_weight_, other.max_weight_)
        out.max_raw_weight_ = max(self.max_raw_weight_, other.max_raw_weight_)
        out.support_ = self.support_.merge(other.support_)
        out._merge_extra(other)
        return out

    def _merge_extra(self, other: Any) -> None:
        """Merge estimator-specific state into ``self`` (a fresh copy; see :meth:`merge`)."""

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
            if self.support_.n_rows:
                extra["deterministic_share"] = self.support_.deterministic_share
                extra["unsupported_share"] = self.support_.unsupported_share
                extra["unsupported_mass"] = self.support_.unsupported_mass
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


def merge(first: A, *others: A) -> A:
    """The accumulator of all the rows of ``first`` and ``others`` (left to right; any grouping
    gives the same estimate up to rounding: :meth:`OPEAccumulator.merge`)."""
    out = first
    for acc in others:
        out = out.merge(acc)
    return out if others else copy.deepcopy(first)


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


def max_raw_weight(w: FloatArray) -> float:
    """Largest weight before clipping or switching (``nan`` for an empty chunk)."""
    return float(w.max()) if w.shape[0] else float("nan")


def clip_weights(w: FloatArray, clip: float) -> tuple[FloatArray, int, float]:
    """``(min(w, clip), number of weights above clip, largest weight before clipping)``."""
    max_raw = max_raw_weight(w)
    if np.isinf(clip):
        return w, 0, max_raw
    return np.minimum(w, clip), int(np.count_nonzero(w > clip)), max_raw


class RatioOfMeans(OPEAccumulator):
    """An estimate that is the ratio of its two term means (SNIPS, replay).

    Its delta-method interval is the ratio estimator's.
    """

    def value_of(self, means: FloatArray) -> FloatArray:
        out: FloatArray = means[..., 0] / means[..., 1]
        return out

    def gradient(self, means: FloatArray) -> FloatArray:
        return np.array([1.0 / means[1], -means[0] / means[1] ** 2])


def check_weight_mass(estimator: str, mean_w: float) -> None:
    """DataError when the mean weight is 0: a self-normalised estimate has nothing to divide by."""
    if mean_w <= 0.0:
        raise DataError(
            f"{estimator} is undefined: every importance weight is 0 (the evaluated policy gives "
            "probability 0 to every logged action), so there is nothing to normalise by; "
            "use dm() or a policy that overlaps the logged actions",
            field="action_dist",
            value=mean_w,
        )
