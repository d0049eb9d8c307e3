"""Switch doubly robust estimator (Wang, Agarwal, Dudík, ICML 2017).

The in-memory function :func:`switch_dr` and its streaming accumulator :class:`SwitchDRAccumulator`
(chunks in with ``update``, the estimate out with ``result``); the function pushes one batch
through the accumulator, so both give the same estimate (base class and shared helpers:
:mod:`bandit_engine.evaluation.streaming`).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike

from ..policies.base import SeedLike
from ..records import Estimate
from ._validate import FloatArray, check_clip
from .dr import DRFamily
from .intervals import check_ci
from .streaming import max_raw_weight, run_in_memory

__all__ = ["SwitchDRAccumulator", "switch_dr"]


def switch_dr(
    *,
    reward: ArrayLike,
    action: ArrayLike,
    pscore: ArrayLike,
    action_dist: ArrayLike,
    estimated_rewards: ArrayLike,
    tau: float,
    position: ArrayLike | None = None,
    level: float = 0.95,
    ci: str = "normal",
    n_bootstrap: int = 1000,
    seed: SeedLike = None,
) -> Estimate:
    """Estimate the evaluated policy's mean reward with Switch-DR.

    ``value = mean_i [ dm_i + 1(w_i <= tau) w_i (r_i - qhat(x_i, a_i)) ]``: rows whose weight is
    at most ``tau`` get the DR correction, rows with larger weights trust the model alone.

    Limitation: Wang et al. switch per (context, action) pair, which needs the logging policy's
    probability of every action; logs record only the logged action's propensity, so this
    switches per logged row (the Open Bandit Pipeline's variant). ``tau=inf`` gives DR,
    ``tau=0`` gives DM (up to rows with zero weight, which contribute nothing either way).

    Parameters
    ----------
    tau
        Weight threshold, >= 0 (``inf`` allowed).
    others
        As in :func:`~bandit_engine.evaluation.dr`.

    Returns
    -------
    Estimate
        ``clipped_share`` is the share of rows switched to the model; ``ess`` and
        ``max_weight`` describe the weights kept.
    """
    check_ci(ci, n_bootstrap)
    acc = SwitchDRAccumulator(tau=tau, level=level)
    batch = acc.row_terms(
        reward=reward,
        action=action,
        pscore=pscore,
        action_dist=action_dist,
        estimated_rewards=estimated_rewards,
        position=position,
    )
    return run_in_memory(acc, batch, ci=ci, n_bootstrap=n_bootstrap, seed=seed)


# --------------------------------------------------------------------------------------------
# Streaming accumulator
# --------------------------------------------------------------------------------------------


class SwitchDRAccumulator(DRFamily):
    """Switch-DR: the DR correction on rows with ``w_i <= tau``, the model alone elsewhere.

    Value: ``mean(dm_i + [w_i <= tau] w_i (r_i - qhat(x_i, a_i)))``. ``tau = inf`` is DR,
    ``tau = 0`` is DM. ``clipped_share`` is the share of rows switched to the model.
    """

    estimator: ClassVar[str] = "switch_dr"
    term_names: ClassVar[tuple[str, ...]] = ("dm", "switched_w_residual")
    merge_settings: ClassVar[tuple[str, ...]] = ("level", "tau")

    def __init__(self, *, tau: float, level: float = 0.95) -> None:
        super().__init__(level=level)
        self.tau = check_clip("tau", tau, allow_zero=True)

    def _weights(self, w: FloatArray) -> tuple[FloatArray, int, float]:
        keep = w <= self.tau
        return np.where(keep, w, 0.0), int(w.shape[0] - np.count_nonzero(keep)), max_raw_weight(w)
