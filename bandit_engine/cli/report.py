"""``bandit report`` and ``bandit export``: live measurement from an event log.

Thin adapters over :mod:`bandit_engine.reporting`: parse the options, open the log read-only
(no HMAC key is needed: a report reads pseudonyms, never ids), call the library, print. Errors go
through the central :func:`bandit_engine.cli.run`.
"""

from __future__ import annotations

import typer

__all__ = ["register"]


def report(
    db: str = typer.Option(
        ..., "--db", help="The event log: a SQLite file or a postgresql:// URL."
    ),
    since: str | None = typer.Option(
        None, "--since", help="Start of the window (included): 2026-12-01, ISO time or epoch s."
    ),
    until: str | None = typer.Option(
        None, "--until", help="End of the window (excluded), same forms as --since."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the whole report as JSON."),
    csv_dir: str | None = typer.Option(
        None, "--csv", help="Write groups / segments / uplift / conversion CSV files here."
    ),
    plots: str | None = typer.Option(None, "--plots", help="Write PNG charts to this folder."),
    top_bundles: int = typer.Option(
        20, "--top-bundles", help="Bundles shown in the bundle breakdown (most decided first)."
    ),
) -> None:
    """Policy against each holdout group, per day and segment, with uplift and 95% intervals
    clustered by user; cross-platform conversion; the sample-ratio check."""
    from .exits import run

    def body() -> None:
        from ..errors import ConfigError
        from ..reporting import report_from_log
        from ..reporting.render import render_text, write_csv, write_plots
        from ..reporting.window import check_window, parse_time
        from ..store import open_log

        start = parse_time("since", since)
        end = parse_time("until", until)
        check_window(start, end)
        if top_bundles < 1:
            raise ConfigError.for_field("top_bundles", top_bundles, "must be >= 1")
        log = open_log(db, hmac_key=None, read_only=True, must_exist=True)
        try:
            rep, _ = report_from_log(log, since=start, until=end, top_bundles=top_bundles)
        finally:
            log.close()
        if csv_dir is not None:
            for path in write_csv(rep, csv_dir):
                typer.echo(f"wrote {path}", err=True)
        if plots is not None:
            for path in write_plots(rep, plots):
                typer.echo(f"wrote {path}", err=True)
        if as_json:
            typer.echo(rep.to_json())
        else:
            typer.echo(render_text(rep, breakdowns=("overall", "presence", "user_type")))

    run(body)


def export(
    db: str = typer.Option(
        ..., "--db", help="The event log: a SQLite file or a postgresql:// URL."
    ),
    out: str = typer.Option("export", "--out", help="Folder for decisions / events / learned."),
    fmt: str = typer.Option("parquet", "--format", help="parquet or csv."),
    since: str | None = typer.Option(None, "--since", help="Decisions from (included)."),
    until: str | None = typer.Option(None, "--until", help="Decisions until (excluded)."),
) -> None:
    """Export decisions, events and learned rewards (users as pseudonyms) for BI tools."""
    from .exits import run

    def body() -> None:
        from ..reporting.export import export_log
        from ..reporting.window import check_window, parse_time
        from ..store import open_log

        start = parse_time("since", since)
        end = parse_time("until", until)
        check_window(start, end)
        log = open_log(db, hmac_key=None, read_only=True, must_exist=True)
        try:
            written = export_log(log, out, format=fmt, since=start, until=end)
        finally:
            log.close()
        for table, (path, n) in written.items():
            typer.echo(f"{table}: {n:,} rows -> {path}")

    run(body)


def register(app: typer.Typer) -> None:
    app.command("report")(report)
    app.command("export")(export)
