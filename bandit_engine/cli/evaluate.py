"""``bandit evaluate``: off-policy evaluation of a saved engine or a named policy on a log.

The command parses its options (the ``--policy`` syntax is the simulator's, one parser), calls
:func:`bandit_engine.evaluation.evaluate_log.evaluate_log`, which does the work, and renders its
result as a table, JSON or a PNG (:mod:`bandit_engine.evaluation.report`). Only typer is imported
at module level; numpy, pandas and the evaluation code are imported inside the command body so that
``bandit --help`` stays fast. Errors go through the central :func:`bandit_engine.cli.run` (one
error -> exit code mapping).
"""

from __future__ import annotations

import json

import typer

__all__ = ["register"]


def evaluate(
    log: str = typer.Argument(
        ...,
        help="The log: an engine event log (.sqlite), a .csv / .parquet file, a quoted glob of "
        "them ('logs/*.parquet', read as one log in name order) or an OBD folder.",
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
    pool_models: bool = typer.Option(
        False,
        "--pool-models",
        help="Engine logs of several model ids: evaluate them pooled, as one mixed logging "
        "policy (without it such a log is refused; or pick one with --model-id).",
    ),
    catalog: str | None = typer.Option(
        None,
        "--catalog",
        help="With --policy: the saved engine that logged the decisions; its catalog gives the "
        "bundles' current features and the names of their columns "
        "(fixed_rule:column=deal.discount).",
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        help="Run the policy on N Dask worker processes (needs the 'dask' extra; ips, snips, "
        "dm and the DR family, normal intervals; same estimates as without).",
    ),
    dask: str | None = typer.Option(
        None,
        "--dask",
        help="Instead of --workers: a running Dask scheduler (tcp://host:8786); the parts go "
        "to its workers.",
    ),
) -> None:
    """Estimate a policy's value from logged decisions, with intervals and the uplift over the
    policy that logged them."""
    from .exits import run

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
            workers=workers,
            dask=dask,
            pool_models=pool_models,
            catalog=catalog,
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
    workers: int | None = None,
    dask: str | None = None,
    pool_models: bool = False,
    catalog: str | None = None,
) -> None:
    from ..errors import ConfigError
    from ..evaluation.evaluate_log import evaluate_log, resolve_logs
    from ..evaluation.report import format_table, plot_evaluation
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
    # The log's format and existence are checked before --policy is parsed, so that with several
    # mistakes the same one is reported first as always (evaluate_log checks them again).
    paths, _ = resolve_logs(log, fmt)

    evaluated: Policy | None = None
    if policy is not None:
        from ..simulation.policy_spec import parse_policy_spec

        spec = parse_policy_spec(policy)
        params = spec.kwargs
        params.setdefault("seed", seed)
        evaluated = make_policy(spec.name, **params)
    if catalog is not None and model is not None:
        raise ConfigError(
            "--catalog goes with --policy (a --model engine has its own catalog)",
            field="catalog",
            value=catalog,
        )
    from ..catalog import Catalog
    from ..engine import Engine

    bundles: Catalog | None = Engine.load(catalog).catalog if catalog is not None else None

    result = evaluate_log(
        log,
        format=fmt,
        model=model,
        policy=evaluated,
        policy_spec=policy,
        estimators=estimators,
        reward_model=reward_model,
        train_fraction=train_fraction,
        n_draws=draws,
        clip=clip,
        tau=tau,
        ci="bootstrap" if bootstrap is not None else "normal",
        n_bootstrap=bootstrap if bootstrap is not None else 1000,
        seed=seed,
        obd_behavior=obd_behavior,
        obd_campaign=obd_campaign,
        max_rows=max_rows,
        model_id=model_id,
        workers=workers,
        dask=dask,
        pool_models=pool_models,
        catalog=bundles,
    )
    ev = result.evaluation
    # said out loud on stderr (also with --json), not only in the report's warnings
    for i, alert in enumerate(result.alerts):
        loud = i == 0 and not ev.supported
        typer.secho(
            f"warning: {alert}",
            err=True,
            fg=typer.colors.RED if loud else typer.colors.YELLOW,
            bold=loud,
        )
    if plot is not None:
        where = paths[0].name if len(paths) == 1 else log
        plot_evaluation(ev, plot, title=f"{ev.policy} on {where}")
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, allow_nan=False))
        return
    typer.echo(format_table(ev, log=result.log, policy=result.policy), nl=False)
    if plot is not None:
        typer.echo(f"\nplot written to {plot}")


def register(app: typer.Typer) -> None:
    """Add ``bandit evaluate`` to the root app."""
    app.command("evaluate")(evaluate)
