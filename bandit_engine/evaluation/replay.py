"""Replay (rejection-sampling) evaluation on uniformly-random logs."""

from __future__ import annotations

from numpy.typing import ArrayLike

from ..policies.base import SeedLike, make_rng
from ..records import Estimate
from .intervals import check_ci
from .streaming import ReplayAccumulator, run_in_memory

__all__ = ["replay"]


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
