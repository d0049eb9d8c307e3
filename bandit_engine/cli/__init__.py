"""The ``bandit`` command: a thin typer adapter over the library.

Errors are mapped to exit codes in exactly one place, :func:`exit_code_for`; every command runs its body
through :func:`run`, which prints a one-line error naming the field and the value instead of a traceback.
Heavy imports happen inside the commands so that ``bandit --help`` stays fast.

Exit codes
----------
0 success; 1 unexpected internal error (a bug: please report it); 2 command-line usage error (typer);
3 invalid configuration or input (ConfigError, ValidationError, ConflictError); 4 unknown id or missing
file (NotFoundError, FileNotFoundError); 5 unreadable or incompatible model file (ModelFileError);
6 data cannot support the request (DataError); 7 the event log is busy or failing, retry
(StoreBusyError); 130 interrupted.
"""

from __future__ import annotations

import typer

from .exits import EXIT_CODES, exit_code_for, run

__all__ = ["EXIT_CODES", "app", "exit_code_for", "run"]

app = typer.Typer(
    name="bandit",
    help="Contextual bandits for cross-domain marketing: simulate, evaluate and serve bundle policies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command("version")
def version() -> None:
    """Print the library version."""
    from .._version import __version__

    typer.echo(__version__)


@app.command("inspect")
def inspect_model(
    model: str = typer.Argument(..., help="Path of a saved engine file."),
) -> None:
    """Summarize a saved engine file: policy, features, catalog, pending decisions."""

    def body() -> None:
        from ..engine import Engine

        engine = Engine.load(model)
        catalog = engine.catalog
        typer.echo(f"model_id:        {engine.model_id}")
        typer.echo(f"policy:          {engine.policy!r}")
        typer.echo(f"policy_version:  {engine.policy_version}")
        typer.echo(f"context features:{engine.features.n_features:>6}")
        typer.echo(f"bundle features: {catalog.n_arm_features:>6}")
        bundles = catalog.bundles()
        typer.echo(f"bundles:         {len(bundles)} ({int(bundles['active'].sum())} active)")
        typer.echo(f"decisions:       {engine.n_decisions} ({len(engine.attribution)} pending)")

    run(body)


# server commands (serve-policy, purge, forget-user) live in their own module
from .serve import register as _register_serve  # noqa: E402

_register_serve(app)

# offline evaluation (evaluate) lives in its own module
from .evaluate import register as _register_evaluate  # noqa: E402

_register_evaluate(app)

# simulation (simulate) lives in its own module
from .simulate import register as _register_simulate  # noqa: E402

_register_simulate(app)

# bulk profiles (profiles import) live in their own module
from .profiles import register as _register_profiles  # noqa: E402

_register_profiles(app)

# the learner role of the split deployment (learn) lives in its own module (issue 12)
from .learn import register as _register_learn  # noqa: E402

_register_learn(app)

# live measurement (report, export) lives in its own module
from .report import register as _register_report  # noqa: E402

_register_report(app)
