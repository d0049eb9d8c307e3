"""Evaluating a log in parts on several processes (Dask), merged to the single-process result.

The costly step of an offline evaluation is running the evaluated policy on every logged row
(``policy.probabilities`` row by row). :func:`evaluate_policy_parallel` splits the evaluated rows
into parts, lets Dask workers compute each part's action distribution and estimator terms into a
:class:`PartialEvaluation` (the streaming accumulators, the moments of the paired uplift, the
support statistics: all mergeable), and merges the parts on the driver. What must see the whole
log stays on the driver, exactly as in :func:`~bandit_engine.evaluation.dispatch.evaluate_policy`:
reading the files, training the policy on the first rows, and the cross-fitted reward model of DM
and the DR family (its folds are drawn over all rows from the same seed). So the estimates,
intervals, uplifts and diagnostics equal the single-process ones up to floating-point rounding
(tested to 1e-12).

Limits: only estimators whose terms do not depend on random draws run in parts (``ips``,
``snips``, ``dm``, ``dr``, ``sndr``, ``switch_dr``; ``replay`` draws the policy's actions in one
stream and ``online_replay`` walks the log in order), the policy must give exact probabilities
(sampled distributions draw in one stream too), intervals are normal ones (a bootstrap needs every
row's terms in one place), and the driver still holds the log in memory. Dask is an optional
dependency (``pip install 'bandit-engine[dask]'``), imported only here and only when used.

Where the workers are: ``workers=N`` starts a local cluster of N processes for the call;
:func:`connect_dask` connects to a running scheduler (``bandit evaluate --dask tcp://host:8786``)
and the parts go to its workers, however many it has.
"""

from __future__ import annotations

import functools
import importlib
import itertools
import pickle
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, DataError, ValidationError
from ..policies.base import Policy, SeedLike
from ..records import Estimate
from ._validate import FloatArray, check_level
from .dispatch import (
    DEFAULT_ESTIMATORS,
    assemble_evaluation,
    check_estimators,
    estimator_batch,
    fit_rewards,
    log_context_groups,
    log_support,
    seed_sequence,
    settings_of,
)
from .policy_log import PolicyLog
from .policy_run import action_distribution, describe_policy, policy_of
from .results import PolicyEvaluation
from .streaming import Moments, OPEAccumulator
from .support import ContextGroups, SupportStats
from .uplift import Uplift, logged_from_moments, paired_moments, uplift_from_moments

if TYPE_CHECKING:
    from ..engine import Engine

__all__ = [
    "PARALLEL_ESTIMATORS",
    "WORKER_CONFIG",
    "WORKER_MALLOC_ENVIRON",
    "PartialEvaluation",
    "client_workers",
    "connect_dask",
    "evaluate_policy_parallel",
    "local_cluster",
    "partial_evaluation",
]

#: Estimators whose per-row terms do not depend on random draws, so parts merge exactly.
PARALLEL_ESTIMATORS = ("ips", "snips", "dm", "dr", "sndr", "switch_dr")


@dataclass
class PartialEvaluation:
    """What an evaluation over some rows has accumulated; :meth:`merge` combines two.

    Attributes
    ----------
    accumulators
        Per estimator, its streaming accumulator over these rows.
    paired
        Per estimator, the moments of the per-row vectors ``(T_i, r_i)`` (the uplift's).
    reward
        Moments of the logged rewards (the logging policy's value).
    n_nonzero
        Rows with a non-zero reward.
    support
        Support statistics (``None`` without complete propensities).
    skipped
        Estimators that could not run on some of these rows, with the reason.
    """

    accumulators: dict[str, OPEAccumulator] = field(default_factory=dict)
    paired: dict[str, Moments] = field(default_factory=dict)
    reward: Moments = field(default_factory=lambda: Moments(1))
    n_nonzero: int = 0
    support: SupportStats | None = None
    skipped: dict[str, str] = field(default_factory=dict)

    def merge(self, other: PartialEvaluation) -> PartialEvaluation:
        """Both parts' rows (a new object). An estimator skipped on either part is skipped."""
        skipped = {**other.skipped, **self.skipped}
        names = [n for n in self.accumulators if n in other.accumulators and n not in skipped]
        support = (
            None
            if self.support is None or other.support is None
            else self.support.merge(other.support)
        )
        return PartialEvaluation(
            accumulators={n: self.accumulators[n].merge(other.accumulators[n]) for n in names},
            paired={n: self.paired[n].merge(other.paired[n]) for n in names},
            reward=self.reward.merge(other.reward),
            n_nonzero=self.n_nonzero + other.n_nonzero,
            support=support,
            skipped=skipped,
        )


def partial_evaluation(
    policy: Policy,
    part: PolicyLog,
    qhat: FloatArray | None,
    names: Sequence[str],
    *,
    clip: float | None,
    tau: float,
    level: float,
    groups: ContextGroups | None = None,
) -> PartialEvaluation:
    """The :class:`PartialEvaluation` of ``policy`` on the rows of ``part`` (what a worker runs):
    its exact action distribution, each estimator's terms pushed into its accumulator, the paired
    moments, the support statistics. ``qhat`` holds the part's rows of the reward model's
    predictions (``None`` when no estimator needs them)."""
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    # one BLAS thread per worker: the policy works on tiny matrices row by row, and extra
    # threads per process only contend with the other workers for the same cores
    with threadpool_limits(limits=1, user_api="blas"):
        dist, _ = action_distribution(policy, part, method="exact")
    r = part.reward
    moments = Moments(1)
    moments.add(r[None, :])
    out = PartialEvaluation(
        reward=moments,
        n_nonzero=int(np.count_nonzero(r)),
        support=log_support(
            r, part.action, dist, part.pscore, part.position, part.logging_dist, groups
        ),
    )
    for name in names:
        try:
            acc, batch = estimator_batch(
                name,
                reward=r,
                action=part.action,
                dist=dist,
                pscore=part.pscore,
                position=part.position,
                n_candidates=part.candidate_counts(),
                qhat=qhat,
                clip=clip,
                tau=tau,
                level=level,
            )
        except DataError as exc:
            out.skipped[name] = exc.message
            continue
        acc.push(batch)
        out.accumulators[name] = acc
        out.paired[name] = paired_moments(batch, r)
    return out


def _partial_from_bytes(policy: Policy, blob: bytes, **kwargs: Any) -> PartialEvaluation:
    """:func:`partial_evaluation` of a ``(part, qhat)`` pickled by the driver (what is sent)."""
    part, qhat, groups = pickle.loads(blob)
    return partial_evaluation(policy, part, qhat, groups=groups, **kwargs)


def _finish(
    merged: PartialEvaluation,
    names: Sequence[str],
    *,
    level: float,
    policy: str,
    n_actions: int,
    settings: dict[str, Any],
) -> PolicyEvaluation:
    estimates: dict[str, Estimate] = {}
    uplifts: dict[str, Uplift] = {}
    skipped = dict(merged.skipped)
    for name, acc in merged.accumulators.items():
        try:
            est = acc.result()
        except DataError as exc:
            skipped[name] = exc.message
            continue
        estimates[name] = est
        uplifts[name] = uplift_from_moments(name, acc, merged.paired[name], level=level)
    return assemble_evaluation(
        names,
        estimates=estimates,
        uplifts=uplifts,
        skipped=skipped,
        support=merged.support,
        logged=logged_from_moments(merged.reward, level=level),
        n_nonzero=merged.n_nonzero,
        policy=policy,
        method="exact",
        n_actions=n_actions,
        settings=settings,
    )


def _check_parallel(names: Sequence[str], ci: str, workers: int) -> None:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError.for_field("workers", workers, "must be an int >= 1")
    for name in names:
        if name not in PARALLEL_ESTIMATORS:
            raise ConfigError.for_field(
                "estimators",
                name,
                f"must be in {list(PARALLEL_ESTIMATORS)} with workers (replay draws the policy's "
                "actions in one stream, online_replay walks the log in order): run it without "
                "workers",
            )
    if ci != "normal":
        raise ConfigError.for_field(
            "ci",
            ci,
            "must be 'normal' with workers (a bootstrap resamples every row in one place)",
        )


def evaluate_policy_parallel(
    policy: Policy | Engine,
    log: PolicyLog,
    *,
    workers: int,
    estimators: Sequence[str] = DEFAULT_ESTIMATORS,
    reward_model: Any = "ridge",
    n_folds: int = 5,
    clip: float | None = None,
    tau: float = 100.0,
    level: float = 0.95,
    ci: str = "normal",
    seed: SeedLike = 0,
    n_parts: int | None = None,
    processes: bool = True,
    client: Any = None,
) -> PolicyEvaluation:
    """:func:`~bandit_engine.evaluation.dispatch.evaluate_policy` with the policy run on
    ``workers`` Dask workers, part by part (module docstring); the same result up to rounding.

    Parameters
    ----------
    workers
        Dask workers of the local cluster started for the call (>= 1).
    n_parts
        Parts the rows are split into (default ``4 * workers``, at most one per row).
    processes
        Workers are processes (default) or threads of this process (cheaper to start; the
        policy's Python loop then shares one interpreter lock).
    client
        An existing ``distributed.Client`` to use instead of starting a local cluster.
    others
        As in :func:`~bandit_engine.evaluation.dispatch.evaluate_policy` (``method`` is always
        ``"exact"``).

    Raises
    ------
    ConfigError
        ``replay`` / ``online_replay`` requested, a bootstrap interval, a policy without exact
        probabilities, or Dask not installed.
    """
    from ..engine import Engine

    names = check_estimators(estimators)
    lvl = check_level(level)
    _check_parallel(names, ci, workers)
    if isinstance(policy, Engine) and log.context.shape[1] != policy.features.n_features:
        raise ValidationError(
            f"the log's contexts have {log.context.shape[1]} features but the model's feature "
            f"map makes {policy.features.n_features}: the log was not written by (a version of) "
            "this model",
            field="context",
            value=log.context.shape,
        )
    pol = policy_of(policy)
    action_distribution(pol, log.rows([0]), method="exact")  # refuses sample-only policies here
    # the same seed streams as evaluate_policy: its reward-model folds, bit for bit
    _, offline_ss, _, _ = seed_sequence(seed).spawn(4)
    fold_ss, _ = offline_ss.spawn(2)
    qhat = fit_rewards(
        names,
        reward=log.reward,
        action=log.action,
        n_actions=log.n_actions,
        position=log.position,
        context=log.context,
        action_context=log.arm_features,
        reward_model=reward_model,
        n_folds=n_folds,
        seed=fold_ss,
    )
    parts = min(n_parts if n_parts is not None else 4 * workers, log.n_rows)
    bounds = np.linspace(0, log.n_rows, parts + 1).astype(np.int64)
    pieces = [(int(lo), int(hi)) for lo, hi in itertools.pairwise(bounds) if hi > lo]
    task = functools.partial(_partial_from_bytes, names=names, clip=clip, tau=tau, level=lvl)
    # each part travels as one pickled blob: left to itself, Dask would send the candidate
    # sets (one small array per row) as one frame each, which cost more than the work here
    # the context groups need every row (which actions each group never tried): found here,
    # each part gets its rows' group ids and the (groups x actions) table
    groups = log_context_groups(log, seed=0)
    blobs = [
        pickle.dumps(
            (
                log.rows(np.arange(lo, hi)),
                None if qhat is None else qhat[lo:hi],
                groups.rows(np.arange(lo, hi)),
            ),
            protocol=pickle.HIGHEST_PROTOCOL,
        )
        for lo, hi in pieces
    ]
    results = _run_on_dask(task, pol, blobs, workers, processes, client)
    merged = functools.reduce(PartialEvaluation.merge, results)
    settings = settings_of(
        names,
        reward_model=reward_model,
        n_folds=n_folds,
        clip=clip,
        tau=tau,
        level=lvl,
        ci=ci,
        n_bootstrap=0,
        seed=seed,
    )
    settings["n_draws"] = None  # as evaluate_policy says of an exact distribution
    settings["workers"] = workers
    return _finish(
        merged,
        names,
        level=lvl,
        policy=describe_policy(pol),
        n_actions=log.n_actions,
        settings=settings,
    )


def _distributed(field: str, value: Any) -> Any:
    try:
        # imported by name: an optional dependency, typed as Any whether installed or not
        return importlib.import_module("distributed")
    except ImportError as exc:
        raise ConfigError(
            f"{field} needs Dask: pip install 'bandit-engine[dask]'", field=field, value=value
        ) from exc


def connect_dask(address: str, *, timeout: float = 10.0) -> Any:
    """A ``distributed.Client`` connected to the scheduler at ``address`` (``tcp://host:port``),
    to pass as ``client`` and close when done. An unreachable scheduler or a scheduler without
    workers is a :class:`~bandit_engine.errors.ConfigError` naming ``dask``."""
    if not isinstance(address, str) or "://" not in address:
        raise ConfigError.for_field(
            "dask", address, "must be a scheduler address like tcp://host:8786"
        )
    distributed = _distributed("dask", address)
    try:
        client = distributed.Client(address, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(
            f"dask scheduler {address!r} could not be reached ({type(exc).__name__}: {exc})",
            field="dask",
            value=address,
        ) from None
    if not client.scheduler_info().get("workers"):
        client.close()
        raise ConfigError.for_field("dask", address, "must be a scheduler with workers")
    return client


def client_workers(client: Any) -> int:
    """How many workers a connected client's scheduler has."""
    return max(1, len(client.scheduler_info().get("workers", {})))


def _run_on_dask(
    task: Any,
    policy: Policy,
    blobs: list[bytes],
    workers: int,
    processes: bool,
    client: Any,
) -> list[PartialEvaluation]:
    if client is not None:
        return _submit(client, task, policy, blobs)
    distributed = _distributed("workers", workers)
    with local_cluster(workers, processes=processes) as cluster, distributed.Client(cluster) as own:
        return _submit(own, task, policy, blobs)


#: Allocator settings (glibc) for local worker processes. Dask's nanny sets
#: ``MALLOC_TRIM_THRESHOLD_`` to 64 KiB so that idle workers hand memory back; setting any such
#: variable also freezes glibc's mmap threshold at 128 KiB, so an evaluation chunk's temporaries
#: (about 10 MB for 16,384 rows x 80 actions) were mapped, faulted in and unmapped on every chunk:
#: a worker took 1.5-1.8 s per 1,000,000-row partition against 0.8-0.9 s in one process
#: (``benchmarks/bench_dask_ope.py``). These values keep such blocks in the heap.
WORKER_MALLOC_ENVIRON = {
    "MALLOC_TRIM_THRESHOLD_": 256 * 2**20,
    "MALLOC_MMAP_THRESHOLD_": 32 * 2**20,
}


#: Dask settings for local evaluation workers. The statistical profiler samples every thread's
#: stack every 10 ms and folds the samples into per-task call trees for the dashboard, which
#: :func:`local_cluster` does not start (``dashboard_address=None``): nobody reads the profile, and
#: on a 2-core machine its sampling competes with the task for the worker's core.
WORKER_CONFIG: dict[str, Any] = {"distributed.worker.profile.enabled": False}


@contextmanager
def local_cluster(workers: int, *, processes: bool = True) -> Iterator[Any]:
    """A Dask ``LocalCluster`` of ``workers`` single-threaded workers for evaluation (processes
    by default), started with :data:`WORKER_MALLOC_ENVIRON` and :data:`WORKER_CONFIG`."""
    import dask

    distributed = _distributed("workers", workers)
    prefix = "distributed.nanny.pre-spawn-environ."
    settings: dict[str, Any] = {prefix + k: v for k, v in WORKER_MALLOC_ENVIRON.items()}
    settings.update(WORKER_CONFIG)
    with (
        dask.config.set(settings),
        distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=processes,
            dashboard_address=None,
        ) as cluster,
    ):
        yield cluster


def _submit(client: Any, task: Any, policy: Policy, blobs: list[bytes]) -> list[PartialEvaluation]:
    shared = client.scatter(policy, broadcast=True)
    futures = [client.submit(task, shared, blob, pure=False) for blob in blobs]
    out: list[PartialEvaluation] = client.gather(futures)
    return out
