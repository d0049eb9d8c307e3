"""Evaluate a policy or a saved engine on a log file in one call: what ``bandit evaluate`` does.

:func:`evaluate_log` reads the log in any supported format (the engine's SQLite event log, a CSV /
Parquet decision log, an Open Bandit Dataset folder), turns it into a
:class:`~bandit_engine.evaluation.policy_log.PolicyLog`, loads the engine (or takes the policy),
optionally trains the policy on the first part of the log, runs the estimators with their uplift
over the logging policy (:func:`~bandit_engine.evaluation.dispatch.evaluate_policy`) and returns a
:class:`LogEvaluation`: the :class:`~bandit_engine.evaluation.results.PolicyEvaluation` plus what
was read and evaluated (the ``log`` and ``policy`` objects of the ``bandit-evaluate/1`` JSON
document of :mod:`bandit_engine.evaluation.report`).

A ``log`` with glob characters (``"logs/*.parquet"``) names several CSV or Parquet files, read
as one log in sorted file-name order (:func:`~bandit_engine.evaluation.datasets.load_logs`). With
``workers`` the policy runs on that many Dask processes, part by part, merged to the same result
(:mod:`~bandit_engine.evaluation.parallel`).

The command line only parses its options into these arguments and renders the result.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..engine import Engine
from ..errors import ConfigError, DataError, NotFoundError, ValidationError
from ..policies.base import Policy
from .datasets import load_engine_log, load_logs, load_obd
from .dispatch import DEFAULT_ESTIMATORS, evaluate_policy
from .policy_log import PolicyLog, policy_log_from_logged, policy_log_from_obd
from .policy_run import describe_policy, fit_policy
from .report import evaluation_json
from .results import PolicyEvaluation

__all__ = [
    "LOG_FORMATS",
    "LogEvaluation",
    "evaluate_log",
    "infer_format",
    "read_policy_log",
    "resolve_log",
    "resolve_logs",
]

#: The log formats :func:`evaluate_log` reads.
LOG_FORMATS = ("sqlite", "csv", "parquet", "obd")
_SUFFIXES = {
    ".sqlite": "sqlite",
    ".sqlite3": "sqlite",
    ".db": "sqlite",
    ".csv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def infer_format(path: Path, fmt: str | None) -> str:
    """The log format: ``fmt`` if given (validated), else from the path (a folder is the OBD)."""
    if fmt is not None:
        if fmt not in LOG_FORMATS:
            raise ConfigError.for_field("format", fmt, f"must be one of {list(LOG_FORMATS)}")
        return fmt
    if path.is_dir():
        return "obd"
    found = _SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise ConfigError.for_field(
            "format",
            None,
            f"must be given (one of {list(LOG_FORMATS)}): cannot infer it from {path.name!r}",
        )
    return found


def resolve_log(log: str | Path, fmt: str | None = None) -> tuple[Path, str]:
    """``(path, format)`` of a log that exists (:func:`infer_format`, then NotFoundError if absent)."""
    path = Path(log)
    kind = infer_format(path, fmt)
    if not path.exists():
        raise NotFoundError.for_field("log", str(path), "does not exist")
    return path, kind


def resolve_logs(log: str | Path, fmt: str | None = None) -> tuple[list[Path], str]:
    """``(paths, format)``: one existing log (:func:`resolve_log`), or the files a glob pattern
    (``*``, ``?``, ``[``) matches, sorted by name, all CSV or all Parquet."""
    text = str(log)
    if not glob.has_magic(text):
        path, kind = resolve_log(log, fmt)
        return [path], kind
    paths = [Path(p) for p in sorted(glob.glob(text))]
    if not paths:
        raise NotFoundError.for_field("log", text, "matches no file")
    kinds = {infer_format(p, fmt) for p in paths}
    if len(kinds) > 1 or not kinds <= {"csv", "parquet"}:
        raise ConfigError.for_field(
            "log", text, f"must match CSV or Parquet files of one format, got {sorted(kinds)}"
        )
    return paths, kinds.pop()


@dataclass(frozen=True, eq=False)
class LogEvaluation:
    """The result of :func:`evaluate_log`.

    Attributes
    ----------
    evaluation
        Estimates, uplifts, skipped estimators and warnings.
    log
        What was read: ``path``, ``format``, ``files`` (a glob: the files, in order), for the
        OBD ``behavior`` and ``campaign``, for an engine log ``n_pending_skipped`` (decisions
        whose window was still open) and, when it holds several, ``model_ids`` (decisions per
        model id), then ``n_rows_loaded``, ``uniform_logging``, ``n_rows_evaluated`` and
        ``notes`` (how the log was read: an aliased propensity column, columns not read,
        several model ids pooled; they are also among the evaluation's warnings, right after
        the support one).
    policy
        What was evaluated: ``source`` (``"model"``, ``"engine"`` or ``"policy"``), ``model`` (the
        file) or ``spec`` (the policy's description), and ``train_rows`` (rows it was trained on
        before the evaluation).
    """

    evaluation: PolicyEvaluation
    log: dict[str, Any] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)

    @property
    def alerts(self) -> tuple[str, ...]:
        """What a command should say out loud (on stderr), not only in the report: missing
        support first, then the notes on how the log was read."""
        support = self.evaluation.support
        message = support.message() if support is not None else None
        return ((message,) if message is not None else ()) + tuple(self.log.get("notes", ()))

    def to_dict(self) -> dict[str, Any]:
        """The ``bandit-evaluate/1`` JSON document (:func:`~bandit_engine.evaluation.report.evaluation_json`)."""
        return evaluation_json(self.evaluation, log=self.log, policy=self.policy)


def _read_log(
    paths: list[Path],
    kind: str,
    *,
    engine: Engine | None,
    obd_behavior: str,
    obd_campaign: str,
    max_rows: int | None,
    model_id: str | None,
    log_info: dict[str, Any],
    pool_models: bool = False,
) -> PolicyLog:
    catalog = engine.catalog if engine is not None else None
    path = paths[0]
    if kind == "obd":
        obd = load_obd(
            path,
            behavior=obd_behavior,  # type: ignore[arg-type]
            campaign=obd_campaign,  # type: ignore[arg-type]
            max_rows=max_rows,
        )
        log_info.update(behavior=obd_behavior, campaign=obd_campaign)
        return policy_log_from_obd(obd)
    if kind == "sqlite":
        try:
            engine_data = load_engine_log(path, model_id=model_id)
        except DataError as exc:
            if exc.field != "x_dim":
                raise
            raise DataError(
                f"{exc.message}; choose one model with --model-id (model_id)",
                field=exc.field,
                value=exc.value,
            ) from None
        plog = policy_log_from_logged(engine_data, catalog=catalog, source=str(path))
        log_info["n_pending_skipped"] = engine_data.n_pending
        if len(engine_data.model_ids) > 1:
            counts = engine_data.frame["model_id"].astype(str).value_counts()
            per_id = {m: int(counts[m]) for m in engine_data.model_ids}
            if not pool_models:
                listed = ", ".join(f"{m} ({n} decisions)" for m, n in per_id.items())
                raise DataError(
                    f"the log holds decisions of {len(per_id)} model ids: {listed}; choose one "
                    "with --model-id ID, or evaluate them as one mixed logging policy with "
                    "--pool-models",
                    field="model_id",
                    value=list(per_id),
                )
            log_info["model_ids"] = per_id
            log_info.setdefault("notes", []).append(_pooled_note(per_id))
        return plog
    data = load_logs(paths, format=kind)  # type: ignore[arg-type]
    if len(paths) > 1:
        log_info["files"] = [str(p) for p in paths]
    if data.notes:
        log_info.setdefault("notes", []).extend(data.notes)
    return policy_log_from_logged(data, catalog=catalog, source=str(path))


def read_policy_log(
    log: str | Path,
    *,
    format: str | None = None,
    engine: Engine | None = None,
    obd_behavior: str = "random",
    obd_campaign: str = "all",
    max_rows: int | None = None,
    model_id: str | None = None,
    pool_models: bool = False,
) -> tuple[PolicyLog, dict[str, Any]]:
    """Read a log exactly as :func:`evaluate_log` does, without evaluating anything.

    Returns the :class:`~bandit_engine.evaluation.policy_log.PolicyLog` and the ``log`` record
    (``path``, ``format``, ``files``, ``notes``, ..., ``n_rows_loaded``, ``uniform_logging``) of
    :class:`LogEvaluation`. The same rules hold: several model ids in an engine log are refused
    unless ``model_id`` or ``pool_models`` says what to do, OBD logs take ``obd_behavior`` /
    ``obd_campaign`` / ``max_rows``, and ``engine`` (when given) supplies the bundles' features
    from its catalog. Used by ``bandit simulate --from-log``.
    """
    paths, kind = resolve_logs(log, format)
    log_info: dict[str, Any] = {"path": str(log) if len(paths) > 1 else str(paths[0])}
    log_info["format"] = kind
    plog = _read_log(
        paths,
        kind,
        engine=engine,
        obd_behavior=obd_behavior,
        obd_campaign=obd_campaign,
        max_rows=max_rows,
        model_id=model_id,
        log_info=log_info,
        pool_models=pool_models,
    )
    log_info["n_rows_loaded"] = plog.n_rows
    log_info["uniform_logging"] = plog.is_uniform()
    if engine is not None and plog.context.shape[1] != engine.features.n_features:
        raise ValidationError(
            f"the log's contexts have {plog.context.shape[1]} features but the model's feature "
            f"map makes {engine.features.n_features}: the log was not written by (a version "
            "of) this model",
            field="context",
            value=plog.context.shape,
        )
    return plog, log_info


def _pooled_note(per_id: dict[str, int]) -> str:
    """The note for an engine log holding several model ids, evaluated pooled (``pool_models``).

    Pooling is a decision, not an accident: IPS, SNIPS and the DR family weight every row by its
    *own* logged propensity, and a row logged by model m has expectation ``E_x sum_a pi(a|x)
    r(x, a)`` under that weight whatever m was, so the pooled estimates stay unbiased for a
    mixture of logging policies (support permitting: the support check runs on the pooled
    rows). What changes is the baseline: the "logging policy" value is the mixture's mean
    reward, not any one model's, so the uplift is over that mixture. That is a different
    question from "better than model m?", so pooling is asked for explicitly (--pool-models);
    without it a mixed log is refused with the ids, the counts and both flags.
    """
    listed = ", ".join(f"{m} ({n} decisions)" for m, n in per_id.items())
    return (
        f"the log holds decisions of {len(per_id)} model ids: {listed}. They are evaluated "
        "pooled: each row is weighted by its own logged propensity, so IPS / DR stay unbiased "
        "for this mix of logging policies, but the 'logging policy' value and every uplift are "
        "against the mix, not one model; pass --model-id ID to evaluate against one of them"
    )


def evaluate_log(
    log: str | Path,
    *,
    format: str | None = None,
    model: str | Path | Engine | None = None,
    policy: Policy | None = None,
    policy_spec: str | None = None,
    estimators: Sequence[str] | str = DEFAULT_ESTIMATORS,
    reward_model: Any = "ridge",
    train_fraction: float | None = None,
    n_draws: int = 100,
    clip: float | None = None,
    tau: float = 100.0,
    ci: str = "normal",
    n_bootstrap: int = 1000,
    seed: int = 0,
    obd_behavior: str = "random",
    obd_campaign: str = "all",
    max_rows: int | None = None,
    model_id: str | None = None,
    workers: int | None = None,
    dask: str | None = None,
    pool_models: bool = False,
) -> LogEvaluation:
    """Evaluate a saved engine or a policy on a log file: estimates and uplift per estimator.

    Parameters
    ----------
    log
        An engine event log (``.sqlite``, ``.sqlite3``, ``.db``), a ``.csv`` / ``.txt`` /
        ``.parquet`` / ``.pq`` decision log (:func:`~bandit_engine.evaluation.datasets.load_log`)
        or an Open Bandit Dataset folder.
    format
        ``"sqlite"``, ``"csv"``, ``"parquet"`` or ``"obd"``; inferred from the path when ``None``.
    model, policy
        Exactly one: a saved engine (a model file, or an :class:`~bandit_engine.Engine`), evaluated
        as it is; or a policy, trained first on the first ``train_fraction`` of the log (in log
        order) and evaluated on the rest. Neither is modified.
    policy_spec
        How the policy was specified (recorded as ``policy["spec"]``; default: its description).
    estimators
        Names from :data:`~bandit_engine.evaluation.dispatch.ESTIMATORS` plus ``"online_replay"``,
        or one comma-separated string.
    reward_model
        ``"ridge"`` or ``"logistic"`` (0/1 rewards), or a scikit-learn-style model, for DM and the
        DR family.
    train_fraction
        Share of the log, in [0, 1), the policy is trained on (default 0.5 with ``policy``, 0 with
        ``model``).
    n_draws
        Draws per row for policies that can only be sampled.
    clip, tau, ci, n_bootstrap, seed
        As in :func:`~bandit_engine.evaluation.dispatch.evaluate_policy`; ``seed`` also seeds the
        training copy of the policy.
    obd_behavior, obd_campaign, max_rows
        Open Bandit Dataset logs: which logging policy and campaign, and how many rows to read.
    model_id
        Engine logs: only the decisions of this model id.
    pool_models
        Engine logs holding several model ids: evaluate them pooled, as one mixed logging
        policy (each row weighted by its own logged propensity). Without it (and without
        ``model_id``) such a log is refused with the ids and their counts.
    workers
        Run the policy on this many Dask worker processes
        (:func:`~bandit_engine.evaluation.parallel.evaluate_policy_parallel`: the same estimates
        up to rounding; ``ips``, ``snips``, ``dm`` and the DR family only, exact probabilities,
        normal intervals). ``None``: in this process.
    dask
        Instead of ``workers``: the address of a running Dask scheduler (``tcp://host:8786``);
        the parts go to its workers (same limits and result).

    Raises
    ------
    ConfigError
        Not exactly one of ``model`` and ``policy``, an unknown format or estimator.
    NotFoundError
        The log or the model file does not exist.
    ValidationError
        The log's contexts do not have the model's length, or the log's rows are invalid.
    DataError
        No estimator could run on the log (each one's reason is given).
    """
    if (model is None) == (policy is None):
        raise ConfigError(
            "give exactly one of model (a saved engine) and policy",
            field="model" if model is not None else "policy",
            value=None,
        )
    resolve_logs(log, format)  # a missing log is reported before anything about the model
    engine: Engine | None = None
    evaluated: Policy
    policy_info: dict[str, Any]
    if isinstance(model, Engine):
        engine = model
        evaluated = engine.policy
        policy_info = {"source": "engine"}
    elif model is not None:
        if not Path(model).is_file():
            raise NotFoundError.for_field("model", str(model), "is not an existing file")
        engine = Engine.load(model)
        evaluated = engine.policy
        policy_info = {"source": "model", "model": str(model)}
    else:
        assert policy is not None
        evaluated = policy
        spec = policy_spec if policy_spec is not None else describe_policy(policy)
        policy_info = {"source": "policy", "spec": spec}

    if getattr(evaluated, "pair_features", False):
        # a pair policy scores each user's own candidate rows (profile x bundle pairs and the
        # user's live behaviour at that moment); a log holds one row per bundle, not those
        raise ConfigError(
            f"policy {evaluated.name!r} scores per-user candidate rows (pair features and live "
            "behaviour) that a decision log does not hold, so it cannot be evaluated offline "
            "here; compare it in the simulator (bandit simulate --policy "
            f"{evaluated.name}) or with a live holdout",
            field="model" if model is not None else "policy",
            value=evaluated.name,
        )
    plog, log_info = read_policy_log(
        log,
        format=format,
        engine=engine,
        obd_behavior=obd_behavior,
        obd_campaign=obd_campaign,
        max_rows=max_rows,
        model_id=model_id,
        pool_models=pool_models,
    )

    fraction = train_fraction if train_fraction is not None else (0.5 if engine is None else 0.0)
    train, test = plog.split(fraction)
    policy_info["train_rows"] = 0 if train is None else train.n_rows
    target: Policy | Engine = engine if engine is not None else evaluated
    if train is not None:
        target = fit_policy(evaluated, train, seed=seed)
    if workers is not None and dask is not None:
        raise ConfigError.for_field(
            "dask", dask, "and workers exclude each other: a scheduler brings its own workers"
        )
    if dask is not None:
        from .parallel import client_workers, connect_dask, evaluate_policy_parallel

        client = connect_dask(dask)
        try:
            ev = evaluate_policy_parallel(
                target,
                test,
                workers=client_workers(client),
                estimators=estimators,
                reward_model=reward_model,
                clip=clip,
                tau=tau,
                ci=ci,
                seed=seed,
                client=client,
            )
        finally:
            client.close()
    elif workers is not None:
        from .parallel import evaluate_policy_parallel

        ev = evaluate_policy_parallel(
            target,
            test,
            workers=workers,
            estimators=estimators,
            reward_model=reward_model,
            clip=clip,
            tau=tau,
            ci=ci,
            seed=seed,
        )
    else:
        ev = evaluate_policy(
            target,
            test,
            estimators=estimators,
            n_draws=n_draws,
            reward_model=reward_model,
            clip=clip,
            tau=tau,
            ci=ci,
            n_bootstrap=n_bootstrap,
            seed=seed,
        )
    log_info["n_rows_evaluated"] = ev.n_rows
    notes = tuple(log_info.get("notes", ()))
    if notes:
        # after the support warning (the loudest), before the precision ones
        head = ev.warnings[:1] if not ev.supported else ()
        ev = replace(ev, warnings=(*head, *notes, *ev.warnings[len(head) :]))
    return LogEvaluation(ev, log_info, policy_info)
