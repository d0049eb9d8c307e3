"""``bandit report`` and ``bandit export``: live measurement from an event log.

Thin adapters over :mod:`bandit_engine.reporting`: parse the options, open the log read-only
(no HMAC key is needed: a report reads pseudonyms, never ids), call the library, print. Errors go
through the central :func:`bandit_engine.cli.run`.
"""

from __future__ import annotations

import json

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
    dp_epsilon: float | None = typer.Option(
        None,
        "--dp-epsilon",
        help="Release a differentially private report instead (counts, rates, uplifts per "
        "group, OpenDP), spending this epsilon from the log's privacy ledger.",
    ),
    dp_delta: float = typer.Option(
        0.0, "--dp-delta", help="Delta recorded for the release (its mechanisms are pure DP)."
    ),
    dp_cap: int = typer.Option(
        20, "--dp-cap", help="Decisions per user counted in a DP release (the sensitivity)."
    ),
    dp_budget: float | None = typer.Option(
        None,
        "--dp-budget",
        help="Total epsilon of the log's ledger (needed once, when the ledger is created).",
    ),
    dp_budget_delta: float = typer.Option(
        0.0, "--dp-budget-delta", help="Total delta of the ledger (with --dp-budget)."
    ),
) -> None:
    """Policy against each holdout group, per day and segment, with uplift and 95% intervals
    clustered by user; cross-platform conversion; the sample-ratio check. With --dp-epsilon: a
    differentially private release of counts, rates and uplifts, recorded in the ledger."""
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
        if dp_epsilon is not None:
            if csv_dir is not None or plots is not None:
                raise ConfigError.for_field(
                    "dp_epsilon",
                    dp_epsilon,
                    "prints its release as JSON only: leave out --csv and --plots (they would "
                    "show exact figures)",
                )
            _dp_report(db, start, end, dp_epsilon, dp_delta, dp_cap, dp_budget, dp_budget_delta)
            return
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


def _dp_report(
    db: str,
    start: float | None,
    end: float | None,
    epsilon: float,
    delta: float,
    cap: int,
    budget: float | None,
    budget_delta: float,
) -> None:
    """``bandit report --dp-epsilon``: check, open the ledger (read-write), release, print."""
    import math

    from ..errors import ConfigError
    from ..reporting.dp_report import dp_report
    from ..reporting.report import _iso, experiment_of
    from ..reporting.table import table_from_log
    from ..store import open_log
    from ..store.connection import LogConnection
    from ..store.ledger import PrivacyLedger

    if not math.isfinite(epsilon) or epsilon <= 0:
        raise ConfigError.for_field("dp_epsilon", epsilon, "must be a finite number > 0")
    if cap < 1:
        raise ConfigError.for_field("dp_cap", cap, "must be an integer >= 1")
    log = open_log(db, hmac_key=None, must_exist=True)
    try:
        total, total_delta = budget, budget_delta
        recorded = log.get_meta("dp_budget")
        if total is None:
            if recorded is None:
                raise ConfigError.for_field(
                    "dp_budget",
                    None,
                    "must be given the first time a release is made from this log (the total "
                    "epsilon its ledger allows)",
                )
            rec = json.loads(recorded)
            total, total_delta = float(rec["epsilon"]), float(rec["delta"])
        assert isinstance(log, LogConnection)  # both backends are
        ledger = PrivacyLedger(log, total_epsilon=total, total_delta=total_delta)
        shares, types = experiment_of(log)
        table = table_from_log(log, since=start, until=end)
        groups = sorted(shares) if shares is not None else None
        event_types = sorted({"click", "order", *types}) if types else None
        rep = dp_report(
            table,
            epsilon=epsilon,
            delta=delta,
            cap=cap,
            ledger=ledger,
            groups=groups,
            event_types=event_types,
            label="bandit report",
            window={"since": _iso(start), "until": _iso(end)},
        )
    finally:
        log.close()
    typer.echo(rep.to_json())


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
