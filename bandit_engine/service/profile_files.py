"""Reading a platform's profile table from a CSV or Parquet file in chunks of bounded size.

:func:`open_profile_file` checks the file's columns against what the platform declares (naming
every missing and unknown column, with a "did you mean" for near misses) before any row is read,
then :meth:`ProfileFile.chunks` yields ``chunk_rows`` rows at a time as pandas frames, so memory
stays bounded whatever the file's size.

* **Parquet** columns keep their types (numbers, timestamps, lists of str for tags, bools); only
  the declared columns are read.
* **CSV** cells are read as text (pyarrow's streaming reader) and typed per field by
  :mod:`~bandit_engine.service.profile_import`; a cell that is not valid in the file's
  ``encoding`` is reported with its row instead of failing the file.

Rows are numbered from 1, the header not counted (CSV: the data row; with no quoted line breaks,
line ``row + 1``). Needs pyarrow (the ``parquet`` extra).
"""

from __future__ import annotations

import codecs
import difflib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from ..errors import ConfigError, NotFoundError, ValidationError

__all__ = [
    "FileFormat",
    "ProfileFile",
    "RawChunk",
    "RowError",
    "check_columns",
    "open_profile_file",
]

FileFormat = Literal["csv", "parquet"]
_SUFFIXES: dict[str, FileFormat] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


@dataclass(frozen=True)
class RowError:
    """One bad row: its number in the file (from 1, header not counted), the field (as
    ``<platform>.<column>``), the value it held and what is wrong."""

    row: int
    field: str
    value: Any
    message: str

    def __str__(self) -> str:
        return f"row {self.row}: {self.message}"


@dataclass(frozen=True)
class RawChunk:
    """``frame``: rows ``start + 1 .. start + len(frame)`` of the file; ``errors``: cells that
    could not be decoded (their cells hold ``None`` in ``frame``)."""

    start: int
    frame: pd.DataFrame
    errors: list[RowError] = field(default_factory=list)


def _pyarrow() -> Any:
    try:
        import pyarrow  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        raise ConfigError(
            f"reading profile files needs pyarrow ({exc}): pip install 'bandit-engine[parquet]'",
            field="file",
        ) from None
    return pyarrow


def check_columns(
    found: Sequence[str],
    declared: Sequence[str],
    *,
    key: str,
    platform: str,
    ignore_extra: bool = False,
    optional: Sequence[str] = (),
) -> list[str]:
    """The columns to read: the key, every declared field, then those of ``optional`` (the
    consent columns) that the file has.

    Raises :class:`ValidationError` naming every missing column and every unknown one (unless
    ``ignore_extra``), each unknown one with its closest declared name when there is a near one.
    """
    wanted = [key, *declared]
    extra = [c for c in optional if c not in wanted]
    missing = [c for c in wanted if c not in found]
    unknown = [] if ignore_extra else [c for c in found if c not in wanted and c not in extra]
    dup = sorted({c for c in found if list(found).count(c) > 1})
    if not (missing or unknown or dup):
        return wanted + [c for c in extra if c in found]
    parts = []
    if missing:
        parts.append(f"missing column(s) {missing}")
    if unknown:
        hints = []
        for c in unknown:
            near = difflib.get_close_matches(c, [w for w in wanted if w in missing] or wanted, n=1)
            hints.append(f"{c!r} (did you mean {near[0]!r}?)" if near else repr(c))
        parts.append(f"unknown column(s) {', '.join(hints)}")
    if dup:
        parts.append(f"duplicated column(s) {dup}")
    raise ValidationError(
        f"{platform} file columns must be {wanted} (the key and the declared fields; optional: "
        f"{extra}; --ignore-extra-columns skips others), got {list(found)}: " + "; ".join(parts),
        field=f"{platform}.columns",
        value=list(found),
    )


class ProfileFile:
    """An opened profile file whose columns passed :func:`check_columns`."""

    def __init__(
        self,
        path: Path,
        fmt: FileFormat,
        columns: list[str],
        *,
        encoding: str,
        delimiter: str,
        chunk_rows: int,
    ) -> None:
        self.path = path
        self.format = fmt
        self.columns = columns
        self.encoding = encoding
        self.delimiter = delimiter
        self.chunk_rows = chunk_rows

    def chunks(self) -> Iterator[RawChunk]:
        """The file, ``chunk_rows`` rows at a time (a new pass over the file on each call)."""
        if self.format == "parquet":
            yield from self._parquet_chunks()
        else:
            yield from self._csv_chunks()

    def _parquet_chunks(self) -> Iterator[RawChunk]:
        pa = _pyarrow()
        import pyarrow.parquet as pq  # type: ignore[import-untyped]

        start = 0
        with pq.ParquetFile(self.path) as f:
            for batch in f.iter_batches(batch_size=self.chunk_rows, columns=self.columns):
                data: dict[str, Any] = {}
                for name in self.columns:
                    col = batch.column(name)
                    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
                        # Python lists: the tag rules' fast path (numpy arrays are slower)
                        data[name] = pd.Series(col.to_pylist(), dtype=object)
                    else:
                        data[name] = col.to_pandas()
                yield RawChunk(start, pd.DataFrame(data, columns=self.columns))
                start += batch.num_rows

    def _csv_chunks(self) -> Iterator[RawChunk]:
        pa = _pyarrow()
        from pyarrow import csv

        utf8 = codecs.lookup(self.encoding).name == "utf-8"
        read = csv.ReadOptions(
            block_size=1 << 22,
            # another encoding is transcoded to UTF-8 by pyarrow; UTF-8 is read as bytes and
            # checked per cell below, so a bad byte names its row instead of failing the file
            encoding="utf8" if utf8 else self.encoding,
        )
        types = {c: pa.binary() if utf8 else pa.string() for c in self.columns}
        convert = csv.ConvertOptions(
            column_types=types,
            include_columns=self.columns,
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        parse = csv.ParseOptions(delimiter=self.delimiter, newlines_in_values=True)
        start = 0
        pending: list[Any] = []
        held = 0
        try:
            reader = csv.open_csv(
                self.path, read_options=read, parse_options=parse, convert_options=convert
            )
            for batch in reader:
                pending.append(batch)
                held += batch.num_rows
                while held >= self.chunk_rows:
                    table = pa.Table.from_batches(pending)
                    head, rest = table.slice(0, self.chunk_rows), table.slice(self.chunk_rows)
                    yield self._csv_chunk(start, head, utf8)
                    start += head.num_rows
                    pending, held = rest.to_batches(), rest.num_rows
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            raise ValidationError(
                f"file {str(self.path)!r} cannot be read as {self.encoding} CSV after row {start} "
                f"({exc}); pass --encoding (e.g. gb18030) or fix the file",
                field="file",
                value=str(self.path),
            ) from None
        if held:
            yield self._csv_chunk(start, pa.Table.from_batches(pending), utf8)

    def _csv_chunk(self, start: int, table: Any, utf8: bool) -> RawChunk:
        pa = _pyarrow()
        errors: list[RowError] = []
        data: dict[str, Any] = {}
        for name in self.columns:
            col = table.column(name)
            if not utf8:
                data[name] = col.to_pandas()
                continue
            try:
                data[name] = col.cast(pa.string()).to_pandas()
                continue
            except pa.ArrowInvalid:
                pass
            values: list[str | None] = []
            for i, raw in enumerate(col.to_pylist()):
                try:
                    values.append(raw.decode("utf-8"))
                except UnicodeDecodeError as exc:
                    values.append(None)
                    errors.append(
                        RowError(
                            start + i + 1,
                            name,
                            raw,
                            f"{name} must be text in {self.encoding} ({exc.reason} at byte "
                            f"{exc.start}; pass --encoding, e.g. gb18030), got {raw[:40]!r}",
                        )
                    )
            data[name] = pd.Series(values, dtype=object)
        frame = pd.DataFrame(data, columns=self.columns)
        return RawChunk(start, frame, errors)


def _file_columns(path: Path, fmt: FileFormat, encoding: str, delimiter: str) -> list[str]:
    _pyarrow()
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            return list(pq.read_schema(path).names)
        except Exception as exc:  # pyarrow raises several kinds for a bad file
            raise ValidationError.for_field(
                "file", str(path), f"must be a readable Parquet file ({exc})"
            ) from None
    with open(path, "rb") as f:
        head = f.readline()
    try:
        text = head.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ValidationError.for_field(
            "file", str(path), f"must start with a {encoding} header line ({exc}); pass --encoding"
        ) from None
    import csv as pycsv

    row = next(pycsv.reader([text.lstrip("\ufeff")], delimiter=delimiter), [])
    return list(row)


def open_profile_file(
    path: str | Path,
    *,
    declared: Sequence[str],
    key: str,
    platform: str,
    fmt: FileFormat | None = None,
    encoding: str = "utf-8",
    delimiter: str = ",",
    chunk_rows: int = 100_000,
    ignore_extra: bool = False,
    optional: Sequence[str] = (),
) -> ProfileFile:
    """Open ``path`` (CSV or Parquet, from the suffix unless ``fmt``) and check its columns."""
    p = Path(path)
    if not p.is_file():
        raise NotFoundError.for_field("file", str(p), "must be an existing file")
    if fmt is None:
        fmt = _SUFFIXES.get(p.suffix.lower())
        if fmt is None:
            raise ConfigError.for_field(
                "format", p.suffix, "must be csv or parquet (from the file suffix or --format)"
            )
    elif fmt not in ("csv", "parquet"):
        raise ConfigError.for_field("format", fmt, "must be 'csv' or 'parquet'")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ConfigError.for_field("encoding", encoding, "must be a known text encoding") from None
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise ConfigError.for_field("delimiter", delimiter, "must be one character")
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise ConfigError.for_field("chunk_rows", chunk_rows, "must be an integer >= 1")
    found = _file_columns(p, fmt, encoding, delimiter)
    columns = check_columns(
        found, declared, key=key, platform=platform, ignore_extra=ignore_extra, optional=optional
    )
    return ProfileFile(
        p, fmt, columns, encoding=encoding, delimiter=delimiter, chunk_rows=chunk_rows
    )
