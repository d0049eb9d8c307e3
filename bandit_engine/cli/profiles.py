"""``bandit profiles import``: a platform's profile table into the event log the server reads.

Only typer is imported at module level (``bandit --help`` stays fast).
"""

from __future__ import annotations

import sys

import typer

__all__ = ["register"]

profiles_app = typer.Typer(
    name="profiles",
    help="Profiles in the event log: bulk import from the platforms' tables.",
    no_args_is_help=True,
)


@profiles_app.command("import")
def import_command(
    file: str = typer.Argument(..., help="The platform's table: a .csv or .parquet file."),
    db: str = typer.Option(..., "--db", help="Event log: a SQLite file or a postgresql:// URL."),
    platform: str = typer.Option(
        ..., "--platform", help="The platform the table belongs to (as the engine declares it)."
    ),
    model: str | None = typer.Option(
        None, "--model", help="Saved engine whose profile schema the rows are checked against."
    ),
    demo: bool = typer.Option(
        False, "--demo", help="Check against the demo engine's schema (a server without --model)."
    ),
    mode: str = typer.Option(
        "upsert",
        "--mode",
        help="upsert: each row becomes the user's record on the platform; replace: also delete "
        "the platform's records of users not in the file.",
    ),
    fmt: str | None = typer.Option(
        None, "--format", help="csv or parquet (default: from the file suffix)."
    ),
    encoding: str = typer.Option("utf-8", "--encoding", help="CSV text encoding (e.g. gb18030)."),
    delimiter: str = typer.Option(",", "--delimiter", help="CSV field separator."),
    chunk_rows: int = typer.Option(
        100_000, "--chunk-rows", help="Rows read and checked at a time."
    ),
    commit_rows: int = typer.Option(
        500_000,
        "--commit-rows",
        help="Rows written per transaction (larger: faster on large tables, but a server on the "
        "same SQLite file waits longer for each).",
    ),
    skip_bad_rows: bool = typer.Option(
        False,
        "--skip-bad-rows",
        help="Write the good rows and report the bad ones (default: writing stops at the first "
        "chunk with a bad row; every bad row is still reported).",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Check the whole file and write nothing."
    ),
    max_errors: int = typer.Option(
        1000, "--max-errors", help="Stop reading after this many bad rows."
    ),
    ignore_extra_columns: bool = typer.Option(
        False, "--ignore-extra-columns", help="Skip columns the platform does not declare."
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        help="1: read and check the file in a second process while this one writes; 0: all in "
        "this process (default: 1 for a file of 200,000 rows or more on two CPUs or more).",
    ),
    hmac_key_file: str | None = typer.Option(
        None, "--hmac-key-file", help="File holding the user-id HMAC key (else $BANDIT_HMAC_KEY)."
    ),
) -> None:
    """Check a platform's profile table against the engine's schema and store it (under user
    pseudonyms) in the event log, where `bandit serve-policy` finds it.

    Every bad row is reported by row number (from 1, header not counted) and field. The file is
    written one chunk per transaction; writing stops at the first chunk with a bad row (the
    chunks before it stay committed, and the same import run again after a fix completes it).
    --dry-run checks without writing. Optional columns `consent` (this platform may be fused for
    cross-platform marketing) and `personalisation` (false: the user opts out) carry consent:
    true / false only; a row with consent false is not stored and the user's stored record of the
    platform is deleted."""
    from .exits import run

    def body() -> None:
        from ..engine import Engine
        from ..errors import ConfigError
        from ..service.profile_import import ProfileImportError, import_profiles
        from ..store import load_hmac_key, open_log

        if (model is None) == (not demo):
            raise ConfigError.for_field(
                "model",
                model,
                "must name the served engine (--model ENGINE) or --demo must be given for the "
                "demo engine's schema (one of the two)",
            )
        if model is not None:
            engine = Engine.load(model)
        else:
            from ..demo import demo_engine

            engine = demo_engine(seed=0)
        features = engine.features
        key = load_hmac_key(file=hmac_key_file)
        with open_log(db, hmac_key=key) as log:
            served = log.get_meta("engine_model_id")
            if served is not None and model is not None and served != engine.model_id:
                typer.secho(
                    f"warning: this event log's server serves model {served}, not "
                    f"{engine.model_id} ({model}): the rows are checked against {model}'s schema",
                    err=True,
                    fg=typer.colors.YELLOW,
                )
            tty = sys.stderr.isatty()

            def progress(read: int, written: int) -> None:
                if tty:
                    typer.echo(f"\r{read:,} rows read, {written:,} written", err=True, nl=False)

            try:
                rep = import_profiles(
                    log,
                    features,
                    file,
                    platform=platform,
                    mode=mode,  # type: ignore[arg-type]
                    fmt=fmt,  # type: ignore[arg-type]
                    encoding=encoding,
                    delimiter=delimiter,
                    chunk_rows=chunk_rows,
                    commit_rows=commit_rows,
                    skip_bad_rows=skip_bad_rows,
                    dry_run=dry_run,
                    max_errors=max_errors,
                    ignore_extra=ignore_extra_columns,
                    progress=progress,
                    workers=workers,
                )
            except ProfileImportError as exc:
                if tty:
                    typer.echo("", err=True)
                for e in exc.report.errors:
                    typer.echo(f"{file}: {e}", err=True)
                raise
            if tty:
                typer.echo("", err=True)
            for e in rep.errors:
                typer.echo(f"{file}: {e} (skipped)", err=True)
            counts = log.profile_counts()
        typer.echo(
            f"{platform}: {rep.rows_read} rows read, {rep.rows_written} written"
            f"{' (dry run)' if dry_run else ''}, "
            f"{len(rep.errors)} bad (skipped), {rep.deleted} deleted ({rep.mode}) in "
            f"{rep.seconds:.1f} s; the store now holds "
            + ", ".join(f"{p}={n}" for p, n in counts.items())
        )
        if served is None:
            typer.echo(
                "note: no server has used this event log yet; serve it with the same engine",
                err=True,
            )

    run(body)


def register(app: typer.Typer) -> None:
    """Add ``bandit profiles`` to the ``bandit`` app."""
    app.add_typer(profiles_app, name="profiles")
