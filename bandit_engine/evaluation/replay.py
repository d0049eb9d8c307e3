"""Replay (rejection-sampling) evaluation on uniformly-random logs.

The in-memory function :func:`replay` and its streaming accumulator :class:`ReplayAccumulator`
(chunks in with ``update``, the estimate out with ``result``); the function pushes one batch
through the accumulator, so both give the same estimate (base class and shared helpers:
:mod:`bandit_engine.evaluation.streaming`).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike

from ..errors import DataError, ValidationError
from ..policies.base import SeedLike, make_rng
from ..records import Estimate
from ._validate import FloatArray, IntArray, as_action, preview_rows, validate_rows
from .intervals import check_ci
from .streaming import RatioOfMeans, TermBatch, run_in_memory

__all__ = ["ReplayAccumulator", "replay"]


def replay(
    *,
    reward: ArrayLike,
    action: ArrayLike,
    policy_action: ArrayLike | None = None,
    action_dist: ArrayLike | None = None,
    position: ArrayLike | None = None,
    pscore: ArrayLike | None = None,
    n_candidates: ArrayLike | None = None,
    check_uniform: bool = True,
    level: float = 0.95,
    ci: str = "normal",
    n_bootstrap: int = 1000,
    seed: SeedLike = None,
) -> Estimate:
    """Evaluate a policy by replay (Li, Chu, Langford, Wang, WSDM 2011).

    Keep the logged rows whose action equals the evaluated policy's action on that row; the
    value is the mean reward of the kept rows. This is unbiased only when the logs came from a
    uniformly random logging policy (each candidate equally likely); with any other logging
    policy use :func:`~bandit_engine.evaluation.ips` or :func:`~bandit_engine.evaluation.dr`.
    Only about ``n / K`` rows survive, so the interval is wide.

    Parameters
    ----------
    reward, action
        (n,) logged rewards and action indices.
    policy_action
        (n,) the evaluated (deterministic) policy's action on each row; or
    action_dist
        (n, K) or (n, K, L) with ``position``: a stochastic policy, whose action is drawn once
        per row with ``seed``.
    pscore, n_candidates
        Optional (n,) logging propensities and candidate-set sizes. With ``check_uniform`` the
        propensities are checked to equal ``1 / n_candidates`` (or to be constant when
        ``n_candidates`` is not given), and a DataError pointing at IPS/DR is raised otherwise.
    level, ci, n_bootstrap, seed
        As in :func:`~bandit_engine.evaluation.ips`; ``seed`` drives the policy draws first, then
        the bootstrap.

    Returns
    -------
    Estimate
        ``n`` is the number of matched rows; ``extra`` holds ``n_logged`` and ``match_rate``.

    Raises
    ------
    DataError
        When no row matched, or the propensities show the logging was not uniform.
    """
    check_ci(ci, n_bootstrap)
    rng = make_rng(seed)
    acc = ReplayAccumulator(seed=rng, check_uniform=check_uniform, level=level)
    batch = acc.row_terms(
        reward=reward,
        action=action,
        policy_action=policy_action,
        action_dist=action_dist,
        position=position,
        pscore=pscore,
        n_candidates=n_candidates,
    )
    return run_in_memory(acc, batch, ci=ci, n_bootstrap=n_bootstrap, seed=rng)


# --------------------------------------------------------------------------------------------
# Streaming accumulator
# --------------------------------------------------------------------------------------------


class ReplayAccumulator(RatioOfMeans):
    """Replay (Li, Chu, Langford, Wang, WSDM 2011) on uniformly-random logs.

    Keeps the rows where the logged action equals the evaluated policy's action; the value is the
    mean reward of the kept rows (a ratio of means, so its interval is the ratio-estimator one and
    ``n`` is the number of kept rows). A stochastic policy given as ``action_dist`` is sampled once
    per row from ``seed``; the draws do not depend on the chunking. Merged accumulators keep the
    first one's generator: parts that each sampled ``action_dist`` with their own generator give
    a valid replay estimate, but not the single pass's draws (``policy_action`` merges exactly).
    """

    estimator: ClassVar[str] = "replay"
    term_names: ClassVar[tuple[str, ...]] = ("match_r", "match")
    merge_settings: ClassVar[tuple[str, ...]] = ("level", "check_uniform")

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

    def _merge_extra(self, other: ReplayAccumulator) -> None:
        # the uniform-logging check spans both parts: one propensity for all of them
        mine, theirs = self.uniform_pscore_, other.uniform_pscore_
        if mine is None:
            self.uniform_pscore_ = theirs
        elif theirs is not None and not np.isclose(mine, theirs, rtol=1e-6, atol=0.0):
            raise DataError(
                "replay assumes uniformly random logging, but the merged parts have different "
                f"constant propensities ({mine:.6g} and {theirs:.6g}); use ips() or dr()",
                field="pscore",
                value=[mine, theirs],
            )

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
