"""Export the log's decisions, events and learned rewards as Parquet or CSV for BI tools.

Users appear only as the log's keyed pseudonyms (no raw id is on disk to export); contexts and
score blobs are left out (they are model internals, not business facts). Tables are written page
by page, so memory stays bounded on large logs. Parquet needs ``pyarrow`` (the ``parquet`` extra).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..errors import ConfigError
from ..store import EventStore

__all__ = ["FORMATS", "export_log"]

FORMATS = ("parquet", "csv")
_TABLES = ("decisions", "events", "learned")
_INT = frozenset({"seq", "n_events"})
_FLOAT = frozenset({"ts", "propensity", "reward", "closed_at", "value"})


def _schema(columns: list[str]) -> object:
    """A fixed Arrow schema per table, so pages with all-NULL columns still match."""
    import pyarrow as pa  # type: ignore[import-untyped]

    return pa.schema(
        [
            (c, pa.int64() if c in _INT else pa.float64() if c in _FLOAT else pa.string())
            for c in columns
        ]
    )


def export_log(
    log: EventStore,
    folder: str | Path,
    *,
    format: str = "parquet",
    since: float | None = None,
    until: float | None = None,
    chunk: int = 200_000,
) -> dict[str, tuple[Path, int]]:
    """Write ``decisions``, ``events`` and ``learned`` (of the decisions with
    ``since <= ts < until``) to ``folder/<table>.<format>``. Returns ``{table: (path, rows)}``.
    The decisions' ``grp`` column is the holdout group (``None``: logged without a plan)."""
    if format not in FORMATS:
        raise ConfigError.for_field("format", format, f"must be one of {list(FORMATS)}")
    writer_cls = None
    if format == "parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq  # type: ignore[import-untyped]
        except ImportError:
            raise ConfigError(
                "format parquet needs pyarrow: pip install 'bandit-engine[parquet]' "
                "(or use --format csv)",
                field="format",
                value=format,
            ) from None
        writer_cls = pq.ParquetWriter
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, tuple[Path, int]] = {}
    for table in _TABLES:
        path = out / f"{table}.{format}"
        n = 0
        writer = None
        columns: list[str] = []
        try:
            for cols, rows in log.export_chunks(table, since=since, until=until, chunk=chunk):
                columns = list(cols)
                frame = pd.DataFrame.from_records(rows, columns=columns)
                if writer_cls is not None:
                    schema = _schema(columns)
                    batch = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
                    if writer is None:
                        writer = writer_cls(path, schema)
                    writer.write_table(batch)
                else:
                    frame.to_csv(path, mode="w" if n == 0 else "a", header=n == 0, index=False)
                n += len(rows)
            if n == 0:  # an empty table is still a file with its columns
                from ..store.columns import EXPORT_TABLES

                empty = pd.DataFrame(columns=list(EXPORT_TABLES[table]))
                if writer_cls is not None:
                    pq.write_table(
                        pa.Table.from_pandas(
                            empty, schema=_schema(list(empty.columns)), preserve_index=False
                        ),
                        path,
                    )
                else:
                    empty.to_csv(path, index=False)
        finally:
            if writer is not None:
                writer.close()
        result[table] = (path, n)
    return result
