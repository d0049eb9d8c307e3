"""``bandit simulate``: run policies against control groups in a synthetic two-platform world.

Only typer is imported at module level; the simulator (numpy, pandas, the engine) is imported
inside the command so that ``bandit --help`` stays fast. Errors go through the central
:func:`bandit_engine.cli.run` (one error -> exit code mapping).
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

__all__ = ["register", "simulate"]

_POLICY_HELP = (
    "Policy under test, NAME[:key=value,...], repeatable; replaces the scenario's policies. "
    "E.g. linucb:alpha=0.1  lin_ts:v=0.2  linucb:alpha=0.1,discount=0.999,label=LinUCB-forget  "
    "vw:exploration=bag,bag=5,interactions=[UA,UU]. Names: linucb, hybrid_linucb, lin_ts, vw, "
    "epsilon_greedy, popularity, fixed_rule, uniform."
)
_CONTROL_HELP = (
    "Control group, same syntax, repeatable; replaces the scenario's controls. E.g. uniform, "
    "popularity:epsilon=0.05, fixed_rule:column=deal.discount."
)


def simulate(
    scenario: str | None = typer.Argument(
        None,
        help="Scenario file (TOML), e.g. simulations/new_users.toml. Default: the embedded "
        "baseline (same as simulations/baseline.toml).",
    ),
    policy: Annotated[list[str] | None, typer.Option("--policy", "-p", help=_POLICY_HELP)] = None,
    control: Annotated[
        list[str] | None, typer.Option("--control", "-c", help=_CONTROL_HELP)
    ] = None,
    no_controls: bool = typer.Option(
        False, "--no-controls", help="Run without control groups (no uplift)."
    ),
    rounds: int | None = typer.Option(None, "--rounds", help="Decisions per seed."),
    seeds: int | None = typer.Option(
        None, "--seeds", help="Number of seeds (independent runs); >= 2 for t-intervals."
    ),
    seed: int | None = typer.Option(None, "--seed", help="First seed (seeds are S, S+1, ...)."),
    out: str | None = typer.Option(
        None,
        "--out",
        help="Write summary.json, curves.csv, timings.json and PNG plots into this directory "
        "(created, or replaced if it holds a previous report).",
    ),
    log: str | None = typer.Option(
        None,
        "--log",
        help="Write every decision, event and learned reward to this new SQLite event log "
        "(the engine's log format; read it with `bandit evaluate`).",
    ),
    no_progress: bool = typer.Option(
        False, "--no-progress", help="No progress bar (it is also off when stderr is not a TTY)."
    ),
    from_log: str | None = typer.Option(
        None,
        "--from-log",
        help="Instead of a scenario: a world fitted to this log (any log `bandit evaluate` "
        "reads: .sqlite, .csv, .parquet, a quoted glob, an OBD folder). Users, catalog and "
        "arrival order as logged, rewards from a cross-fitted reward model (the truth here); "
        "controls default to 'logged' (the logged actions) and 'uniform'.",
    ),
    model: str | None = typer.Option(
        None, "--model", help="--from-log: a saved engine file whose policy runs on the log."
    ),
    fmt: str | None = typer.Option(
        None, "--format", help="--from-log: sqlite, csv, parquet or obd (default: from the path)."
    ),
    obd_behavior: str = typer.Option(
        "random", "--obd-behavior", help="--from-log, OBD logs: random or bts."
    ),
    obd_campaign: str = typer.Option(
        "all", "--obd-campaign", help="--from-log, OBD logs: all, men or women."
    ),
    max_rows: int | None = typer.Option(
        None, "--max-rows", help="--from-log, OBD logs: read this many rows."
    ),
    model_id: str | None = typer.Option(
        None, "--model-id", help="--from-log, engine logs: only the decisions of this model id."
    ),
    pool_models: bool = typer.Option(
        False, "--pool-models", help="--from-log, engine logs: pool several model ids."
    ),
    reward_model: str = typer.Option(
        "auto",
        "--reward-model",
        help="--from-log: the world's reward model, auto (logistic for 0/1 rewards, else "
        "ridge), logistic or ridge.",
    ),
    per_action: bool = typer.Option(
        False,
        "--per-action",
        help="--from-log: one reward model per action (captures context x action effects; "
        "needs many rows per action) instead of one pooled model.",
    ),
) -> None:
    """Simulate policies against control groups and report uplift, regret and cold start.

    Every policy drives a real engine (decide, report clicks and orders, attribution windows, learning) in a synthetic world whose truth is known; controls see the same users and the same random outcomes. With no arguments: the baseline scenario on embedded defaults.
    """

    def body() -> None:
        from ..simulation.policy_spec import parse_policy_spec

        if from_log is not None:
            _from_log(
                from_log,
                scenario=scenario,
                policy=policy,
                control=control,
                no_controls=no_controls,
                rounds=rounds,
                seeds=seeds,
                seed=seed,
                out=out,
                log=log,
                model=model,
                format=fmt,
                obd_behavior=obd_behavior,
                obd_campaign=obd_campaign,
                max_rows=max_rows,
                model_id=model_id,
                pool_models=pool_models,
                reward_model=reward_model,
                per_action=per_action,
                progress=not no_progress and sys.stderr.isatty(),
            )
            return
        only_from_log = {
            "--model": model,
            "--format": fmt,
            "--max-rows": max_rows,
            "--model-id": model_id,
            "--pool-models": pool_models or None,
            "--reward-model": None if reward_model == "auto" else reward_model,
            "--per-action": per_action or None,
            "--obd-behavior": None if obd_behavior == "random" else obd_behavior,
            "--obd-campaign": None if obd_campaign == "all" else obd_campaign,
        }
        for flag, value in only_from_log.items():
            if value is not None:
                from ..errors import ConfigError

                raise ConfigError.for_field(
                    flag, value, "is for --from-log (a scenario's world builds its own engines)"
                )
        from ..simulation.scenario import default_scenario, load_scenario

        sc = load_scenario(scenario) if scenario is not None else default_scenario()
        pols = [parse_policy_spec(p, option="--policy") for p in policy] if policy else None
        ctrls: list[Any] | None = None
        if no_controls:
            if control:
                from ..errors import ConfigError

                raise ConfigError.for_field(
                    "--no-controls", True, "cannot be combined with --control"
                )
            ctrls = []
        elif control:
            ctrls = [parse_policy_spec(c, option="--control") for c in control]
        sc = _overrides(sc, rounds=rounds, seeds=seeds, seed=seed, policies=pols, controls=ctrls)
        _execute(sc, out=out, log=log, progress=not no_progress and sys.stderr.isatty())

    from .exits import run

    run(body)


def _overrides(sc: Any, **kwargs: Any) -> Any:
    from ..errors import ConfigError

    try:
        out = sc.with_overrides(**kwargs)
        out.check_policies()
    except ConfigError as exc:
        where = f"{sc.source}: " if sc.source and "--" not in exc.message else ""
        raise ConfigError(f"{where}{exc.message}", field=exc.field, value=exc.value) from None
    return out


def _execute(sc: Any, *, out: str | None, log: str | None, progress: bool) -> None:
    import contextlib

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    from ..simulation.driver import simulate as run_simulation
    from ..simulation.outputs import atomic_dir, atomic_log, check_output_paths, write_outputs
    from ..simulation.render import render
    from ..simulation.runner import total_steps
    from ..simulation.summary import summarize, timings

    check_output_paths(out, log)
    console = Console()
    err = Console(stderr=True)
    with contextlib.ExitStack() as stack:
        # one decision at a time on small matrices: extra BLAS threads only contend (the pair
        # policies' rank-one updates ran 1.4x slower with two threads than with one here)
        stack.enter_context(threadpool_limits(limits=1, user_api="blas"))
        event_log = stack.enter_context(atomic_log(log)) if log is not None else None
        bar = Progress(
            TextColumn("[bold]simulating[/bold] {task.description}"),
            BarColumn(),
            TextColumn("{task.completed:,}/{task.total:,} rounds"),
            TimeRemainingColumn(),
            console=err,
            disable=not progress,
            transient=True,
        )
        with bar:
            task = bar.add_task(sc.name, total=total_steps(sc))
            result = run_simulation(sc, log=event_log, progress=lambda k: bar.advance(task, k))
        summary = summarize(result)
        timing = timings(result)
        if out is not None:
            with atomic_dir(out) as tmp:
                write_outputs(result, summary, tmp)
    render(summary, console, timing)
    if out is not None:
        console.print(f"[dim]Report written to {out}/ (summary.json, curves.csv, plots).[/dim]")
    if log is not None:
        console.print(f"[dim]Event log written to {log}.[/dim]")
        from ..evaluation.datasets.engine_log import randomisation_warnings

        # said once the log exists, from what it holds: the logged propensities themselves
        # (model ids as the runner names them: sim-<scenario>-s<seed>-<arm index>)
        names = {
            f"sim-{sc.name}-s{s.seed}-{a}": arm.label
            for s in result.seeds
            for a, arm in enumerate(result.arms)
        }
        for message in randomisation_warnings(log, names):
            err.print(f"warning: {message}", style="yellow", markup=False)


def _from_log(
    from_log: str,
    *,
    scenario: str | None,
    policy: list[str] | None,
    control: list[str] | None,
    no_controls: bool,
    rounds: int | None,
    seeds: int | None,
    seed: int | None,
    out: str | None,
    log: str | None,
    progress: bool,
    **options: Any,
) -> None:
    """``--from-log``: parse the options, run :func:`~bandit_engine.simulation.from_log.run_from_log`,
    print its report (and write ``summary.json`` under ``--out``)."""
    import json
    from pathlib import Path

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn
    from threadpoolctl import threadpool_limits

    from ..errors import ConfigError
    from ..simulation.from_log import LOGGED, run_from_log
    from ..simulation.from_log_render import render_from_log
    from ..simulation.outputs import atomic_dir, check_output_paths
    from ..simulation.policy_spec import PolicySpec, parse_policy_spec

    if scenario is not None:
        raise ConfigError.for_field(
            "--from-log", from_log, f"replaces the scenario file; got both it and {scenario!r}"
        )
    if log is not None:
        raise ConfigError.for_field("--log", log, "cannot be combined with --from-log")
    if no_controls and control:
        raise ConfigError.for_field("--no-controls", True, "cannot be combined with --control")
    pols = [parse_policy_spec(p, option="--policy") for p in policy or ()]
    ctrls: list[PolicySpec | str] | None = None
    if no_controls:
        ctrls = []
    elif control:
        ctrls = [
            LOGGED if c.strip() == LOGGED else parse_policy_spec(c, option="--control")
            for c in control
        ]
    check_output_paths(out, None)
    err = Console(stderr=True)
    bar = Progress(
        TextColumn("[bold]simulating on the log[/bold]"),
        BarColumn(),
        TextColumn("{task.completed:,} rows"),
        console=err,
        disable=not progress,
        transient=True,
    )
    with threadpool_limits(limits=1, user_api="blas"), bar:
        task = bar.add_task("from-log", total=None)
        _, summary = run_from_log(
            from_log,
            policies=pols,
            controls=ctrls,
            seeds=5 if seeds is None else seeds,
            seed=0 if seed is None else seed,
            rounds=rounds,
            progress=lambda k: bar.advance(task, k),
            **options,
        )
    for note in summary["log"].get("notes", ()):
        err.print(f"warning: {note}", style="yellow", markup=False)
    console = Console()
    render_from_log(summary, console)
    if out is not None:
        with atomic_dir(out) as tmp:
            (Path(tmp) / "summary.json").write_text(
                json.dumps(summary, indent=2, allow_nan=False) + "\n", encoding="utf-8"
            )
        console.print(f"[dim]Report written to {out}/summary.json.[/dim]")


def register(app: typer.Typer) -> None:
    """Add ``bandit simulate`` to the root app."""
    app.command("simulate")(simulate)
