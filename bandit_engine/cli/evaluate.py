"""``bandit evaluate``: off-policy evaluation of a saved engine or a named policy on a log.

Only typer is imported at module level; numpy, pandas and the evaluation code are imported inside
the command body so that ``bandit --help`` stays fast. Errors go through the central
:func:`bandit_engine.cli.run` (one error -> exit code mapping).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

__all__ = ["infer_format", "register"]

_FORMATS = ("sqlite", "csv", "parquet", "obd")
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
    from ..errors import ConfigError

    if fmt is not None:
        if fmt not in _FORMATS:
            raise ConfigError.for_field("format", fmt, f"must be one of {list(_FORMATS)}")
        return fmt
    if path.is_dir():
        return "obd"
    found = _SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise ConfigError.for_field(
            "format",
            None,
            f"must be given (one of {list(_FORMATS)}): cannot infer it from {path.name!r}",
        )
    return found


def evaluate(
    log: str = typer.Argument(
        ..., help="The log: an engine event log (.sqlite), a .csv / .parquet file or an OBD folder."
    ),
    fmt: str | None = typer.Option(
        None, "--format", help="sqlite, csv, parquet or obd (default: from the path)."
    ),
    model: str | None = typer.Option(None, "--model", help="Saved engine file to evaluate."),
    policy: str | None = typer.Option(
        None,
        "--policy",
        help="Policy to evaluate instead of a model: NAME[:key=value,...], e.g. "
        "linucb:alpha=0.5,epsilon=0.1.",
    ),
    estimators: str = typer.Option(
        "ips,snips,dm,dr",
        "--estimators",
        help="Comma-separated: replay, ips, snips, dm, dr, sndr, switch_dr, online_replay.",
    ),
    reward_model: str = typer.Option(
        "ridge", "--reward-model", help="Reward model of DM and the DR family: ridge or logistic."
    ),
    train_fraction: float | None = typer.Option(
        None,
        "--train-fraction",
        help="Train the policy on this first share of the log and evaluate on the rest "
        "(default 0.5 with --policy, 0 with --model).",
    ),
    draws: int = typer.Option(
        100, "--draws", help="Draws per row for policies that can only be sampled."
    ),
    clip: float | None = typer.Option(None, "--clip", help="Clip importance weights at this."),
    tau: float = typer.Option(100.0, "--tau", help="Switch-DR weight threshold."),
    bootstrap: int | None = typer.Option(
        None, "--bootstrap", help="Bootstrap resamples (default: normal intervals)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of folds, draws and bootstrap."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (stable keys) instead."),
    plot: str | None = typer.Option(None, "--plot", help="Write a PNG of the estimates here."),
    obd_behavior: str = typer.Option("random", "--obd-behavior", help="OBD logs: random or bts."),
    obd_campaign: str = typer.Option("all", "--obd-campaign", help="OBD logs: all, men or women."),
    max_rows: int | None = typer.Option(None, "--max-rows", help="OBD logs: read this many rows."),
    model_id: str | None = typer.Option(
        None, "--model-id", help="Engine logs: only the decisions of this model id."
    ),
) -> None:
    """Estimate a policy's value from logged decisions, with intervals and the uplift over the
    policy that logged them."""
    from . import run

    def body() -> None:
        _evaluate(
            log=log,
            fmt=fmt,
            model=model,
            policy=policy,
            estimators=estimators,
            reward_model=reward_model,
            train_fraction=train_fraction,
            draws=draws,
            clip=clip,
            tau=tau,
            bootstrap=bootstrap,
            seed=seed,
            as_json=as_json,
            plot=plot,
            obd_behavior=obd_behavior,
            obd_campaign=obd_campaign,
            max_rows=max_rows,
            model_id=model_id,
        )

    run(body)


def _evaluate(
    *,
    log: str,
    fmt: str | None,
    model: str | None,
    policy: str | None,
    estimators: str,
    reward_model: str,
    train_fraction: float | None,
    draws: int,
    clip: float | None,
    tau: float,
    bootstrap: int | None,
    seed: int,
    as_json: bool,
    plot: str | None,
    obd_behavior: str,
    obd_campaign: str,
    max_rows: int | None,
    model_id: str | None,
) -> None:
    from ..engine import Engine
    from ..errors import ConfigError, NotFoundError, ValidationError
    from ..evaluation.datasets import load_engine_log, load_log, load_obd
    from ..evaluation.dispatch import evaluate_policy
    from ..evaluation.policy_log import policy_log_from_logged, policy_log_from_obd
    from ..evaluation.policy_run import fit_policy
    from ..evaluation.report import evaluation_json, format_table, plot_evaluation
    from ..policies.base import Policy
    from ..policies.registry import make_policy

    if (model is None) == (policy is None):
        raise ConfigError(
            "give exactly one of --model FILE (a saved engine) and --policy NAME[:key=value,...]",
            field="model" if model is not None else "policy",
            value=None,
        )
    if reward_model not in ("ridge", "logistic"):
        raise ConfigError.for_field("reward-model", reward_model, "must be 'ridge' or 'logistic'")
    if bootstrap is not None and bootstrap < 2:
        raise ConfigError.for_field("bootstrap", bootstrap, "must be an int >= 2")
    if plot is not None and not plot.lower().endswith(".png"):
        raise ConfigError.for_field("plot", plot, "must be a .png file name")
    names = [e.strip() for e in estimators.split(",") if e.strip()]
    path = Path(log)
    kind = infer_format(path, fmt)
    if not path.exists():
        raise NotFoundError.for_field("log", str(path), "does not exist")

    engine: Engine | None = None
    evaluated: Policy
    policy_info: dict[str, Any]
    if model is not None:
        if not Path(model).is_file():
            raise NotFoundError.for_field("model", model, "is not an existing file")
        engine = Engine.load(model)
        evaluated = engine.policy
        policy_info = {"source": "model", "model": model}
    else:
        assert policy is not None
        from ..simulation.scenario import parse_policy_spec

        spec = parse_policy_spec(policy)
        params = spec.kwargs
        params.setdefault("seed", seed)
        evaluated = make_policy(spec.name, **params)
        policy_info = {"source": "policy", "spec": policy}

    log_info: dict[str, Any] = {"path": str(path), "format": kind}
    catalog = engine.catalog if engine is not None else None
    if kind == "obd":
        obd = load_obd(
            path,
            behavior=obd_behavior,  # type: ignore[arg-type]
            campaign=obd_campaign,  # type: ignore[arg-type]
            max_rows=max_rows,
        )
        plog = policy_log_from_obd(obd)
        log_info.update(behavior=obd_behavior, campaign=obd_campaign)
    elif kind == "sqlite":
        engine_data = load_engine_log(path, model_id=model_id)
        plog = policy_log_from_logged(engine_data, catalog=catalog, source=str(path))
        log_info["n_pending_skipped"] = engine_data.n_pending
    else:
        data = load_log(path, format=kind)  # type: ignore[arg-type]
        plog = policy_log_from_logged(data, catalog=catalog, source=str(path))
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
    fraction = train_fraction if train_fraction is not None else (0.5 if model is None else 0.0)
    train, test = plog.split(fraction)
    policy_info["train_rows"] = 0 if train is None else train.n_rows
    target: Policy | Engine = engine if engine is not None else evaluated
    if train is not None:
        target = fit_policy(evaluated, train, seed=seed)
    ev = evaluate_policy(
        target,
        test,
        estimators=names,
        n_draws=draws,
        reward_model=reward_model,
        clip=clip,
        tau=tau,
        ci="bootstrap" if bootstrap is not None else "normal",
        n_bootstrap=bootstrap if bootstrap is not None else 1000,
        seed=seed,
    )
    log_info["n_rows_evaluated"] = ev.n_rows
    if plot is not None:
        plot_evaluation(ev, plot, title=f"{ev.policy} on {path.name}")
    if as_json:
        doc = evaluation_json(ev, log=log_info, policy=policy_info)
        typer.echo(json.dumps(doc, indent=2, allow_nan=False))
        return
    typer.echo(format_table(ev, log=log_info, policy=policy_info), nl=False)
    if plot is not None:
        typer.echo(f"\nplot written to {plot}")


def register(app: typer.Typer) -> None:
    """Add ``bandit evaluate`` to the root app."""
    app.command("evaluate")(evaluate)
