"""Off-policy evaluation: estimate a policy's mean reward from logs of another policy.

Estimators are pure functions of keyword arrays with the Open Bandit Pipeline meanings:
``reward`` (n,), ``action`` (n,), ``pscore`` (n,), ``action_dist`` (n, K) or (n, K, L) with
``position``, ``action_prob`` (n,) where only the logged action's probability is needed (IPS,
SNIPS), and ``estimated_rewards`` (n, K) for DM and the DR family (see
:func:`cross_fit_rewards`). Each returns a :class:`~bandit_engine.records.Estimate` with a 95%
interval (normal, or a seeded percentile bootstrap) and weight diagnostics (effective sample size,
largest weight, share clipped).

Position-based logs: values are averages over logged rows, positions pooled; use
:func:`per_position` for one value per position. Logs too large for an (n, K) array are evaluated
chunk by chunk with the accumulators of :mod:`bandit_engine.evaluation.streaming`, which also
:func:`merge` across files and processes (:mod:`~bandit_engine.evaluation.parallel` runs the parts
on Dask workers). Whether the log supports the evaluated policy at all (a logger that played one
action with certainty never shows the others) is decided by one rule,
:mod:`~bandit_engine.evaluation.support`; without support no uplift is called significant.

Evaluating an engine or a policy on a log (its action distribution on every logged context, the
estimators, and the uplift over the logging policy with a confidence interval):
:mod:`bandit_engine.evaluation.dispatch`, with the log in :mod:`~bandit_engine.evaluation.policy_log`,
the policy run on it in :mod:`~bandit_engine.evaluation.policy_run`, the uplift in
:mod:`~bandit_engine.evaluation.uplift` and the online replay of learning policies on uniform-random
logs in :mod:`~bandit_engine.evaluation.online_replay`. Loading logs (CSV / Parquet, the engine's
event log, the Open Bandit Dataset): :mod:`bandit_engine.evaluation.datasets`. All of it from a log
file in one call, as ``bandit evaluate`` does: :func:`evaluate_log`.
"""

from __future__ import annotations

from .dispatch import evaluate_action_dist, evaluate_policy
from .dm import DMAccumulator, dm
from .dr import DRAccumulator, dr
from .evaluate_log import LogEvaluation, evaluate_log
from .intervals import bootstrap_interval, normal_interval
from .ips import IPSAccumulator, ips
from .online_replay import online_replay
from .policy_log import PolicyLog
from .policy_run import action_distribution
from .positions import per_position
from .replay import ReplayAccumulator, replay
from .results import PolicyEvaluation
from .reward_models import RidgeRewardModel, cross_fit_rewards
from .sndr import SNDRAccumulator, sndr
from .snips import SNIPSAccumulator, snips
from .streaming import OPEAccumulator, merge
from .switch_dr import SwitchDRAccumulator, switch_dr
from .uplift import Uplift

__all__ = [
    "DMAccumulator",
    "DRAccumulator",
    "IPSAccumulator",
    "LogEvaluation",
    "OPEAccumulator",
    "PolicyEvaluation",
    "PolicyLog",
    "ReplayAccumulator",
    "RidgeRewardModel",
    "SNDRAccumulator",
    "SNIPSAccumulator",
    "SwitchDRAccumulator",
    "Uplift",
    "action_distribution",
    "bootstrap_interval",
    "cross_fit_rewards",
    "dm",
    "dr",
    "evaluate_action_dist",
    "evaluate_log",
    "evaluate_policy",
    "ips",
    "merge",
    "normal_interval",
    "online_replay",
    "per_position",
    "replay",
    "sndr",
    "snips",
    "switch_dr",
]
