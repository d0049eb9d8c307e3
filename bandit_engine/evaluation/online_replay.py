"""Online replay of a learning policy on a uniformly random log (Li, Chu, Langford, Wang, WSDM
2011): the policy walks the rows in order and learns only from the rows where it chose the logged
action.

Limitation: the matched rewards come from a policy that changes as it learns, so the interval is
approximate.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DataError
from ..policies.base import Policy, SeedLike
from ..records import Estimate
from .policy_log import PolicyLog
from .policy_run import freeze_policy, policy_of
from .replay import ReplayAccumulator
from .streaming import TermBatch

if TYPE_CHECKING:
    from ..engine import Engine

__all__ = [
    "online_replay",
    "online_replay_batch",
]


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


def online_replay_batch(
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
    batch, _ = online_replay_batch(policy_of(policy), log, seed, check_uniform)
    acc = ReplayAccumulator(check_uniform=False, level=level)
    acc.push(batch)
    try:
        est = acc.result()
    except DataError as exc:
        raise DataError(
            str(exc).replace("replay", "online replay", 1), field="action", value=0
        ) from None
    return replace(est, estimator="online_replay")
