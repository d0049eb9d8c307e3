"""Bulk profiles: a platform's table (CSV or Parquet) checked against the engine's schema and
written to the event log's profile store, where the server reads them.

:func:`import_profiles` is what ``bandit profiles import`` runs.

Validation
----------
Every row goes through the rules a served profile goes through (the feature map's column rules,
then its encoders, so a value the encoders cannot use, such as an overflowing number, is refused
here and not at the user's next decision). Every bad row is reported, by its number in the file
(from 1, the header not counted) and its field (``<platform>.<column>``) with the value. CSV cells
are text: a number column takes decimal numbers, a timestamp column epoch seconds or ISO 8601, a
flag column ``true``/``false``/``1``/``0``, a tags column its declared separator or a JSON list
(``["a","b"]``); an empty cell is a missing value. The key column must be present in every row;
integer keys are written in decimal.

Modes
-----
``upsert`` (default): each row becomes the user's whole record on ``platform`` (every declared
field is in the file, so this is also the merge of the row over the stored record); users not in
the file and the user's other platforms are untouched. A user repeated in the file keeps their
last row. ``replace``: the same, then every record of ``platform`` that this import did not write
is deleted (users absent from the file, and those whose row was bad under ``skip_bad_rows``).
Records written by someone else while the import runs (the server's admin endpoint) are newer
and kept.

Consent columns (issue 15)
--------------------------
Two optional columns carry the users' consent (:mod:`bandit_engine.profiles`): ``consent``
(this platform's data may be fused for cross-platform marketing) and ``personalisation`` (the
global opt-out when false). Parquet: boolean columns; CSV: ``true`` / ``false`` (any case). An
empty cell changes nothing; any other value (``1``, ``yes``, a number) is a bad row naming
``<platform>.consent`` and the value. A row whose ``consent`` is false is not stored: its
consent is recorded (and logged) and the user's stored record of the platform is deleted
(:mod:`bandit_engine.store.consent`).

Speed
-----
Checking the file and writing it overlap. A large file (``workers``; by default 200,000 rows or
more on two CPUs or more) is read and checked, its records' JSON built and its users'
pseudonyms computed in a worker process while this process writes the previous batch
(:mod:`~bandit_engine.service._import_worker`: the pseudonyms and the records travel through a
pipe in memory, raw ids stay in the worker); a small one in this process, the writes on one
thread (SQLite and the PostgreSQL driver release the GIL while the database works). Either way
at most one batch is in flight besides the one being built, so memory stays at about two
batches, and the result is the same.

Atomicity: one transaction per chunk, and a report that says how far it got
--------------------------------------------------------------------------------
The file is read once, ``chunk_rows`` rows at a time; the checked rows are written in transactions
of about ``commit_rows`` rows, so memory stays bounded and a server using the same database waits
at most one transaction, never the whole import. At the first chunk with a bad row, the good rows
before it are committed and writing stops: the rest of the file is still checked, so :class:`ProfileImportError` lists
every bad row (up to ``max_errors``, where reading stops), and its report says how many rows (the
chunks before the first bad one) were committed. Those stay: nothing committed is undone, and
nothing is half-applied (an ``upsert`` chunk is new data, and ``replace`` deletes only after a
clean file). Fix the file and run the same import again: it is idempotent, and completes it. The
same holds when the database fails half-way (disk full, connection lost). ``dry_run`` checks the
whole file and writes nothing: run it first for all-or-nothing. With ``skip_bad_rows`` the good
rows of every chunk are written and the bad ones reported.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import repeat
from json.encoder import encode_basestring_ascii as _quote
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from ..errors import BanditError, ConfigError, ValidationError
from ..features import FeatureMap
from ..features._columns import canonical_column
from ..features._values import datetime64_to_us
from ..features.block import FittedBlock
from ..features.fields import FittedNumeric, FittedRecency
from ..features.specs import Boolean, Categorical, FieldSpec, Numeric, Recency, Tags
from ..profiles import PERSONALISATION
from ..store import EventStore
from ..store.profile_bulk import ProfileDigester
from ._import_worker import (
    Batch,
    End,
    Event,
    PackedBatch,
    Progress,
    Rows,
    WorkerEvents,
    worker_count,
)
from .profile_files import FileFormat, ProfileFile, RawChunk, RowError, open_profile_file

__all__ = [
    "CONSENT_COLUMNS",
    "ImportMode",
    "ImportReport",
    "ProfileImportError",
    "import_profiles",
    "validate_chunk",
]

ImportMode = Literal["upsert", "replace"]
#: The optional consent columns of a profile file (module docstring).
CONSENT_COLUMNS = ("consent", "personalisation")
_TRUE = frozenset({"true", "1", "yes", "t", "y"})
_FALSE = frozenset({"false", "0", "no", "f", "n"})


@dataclass(frozen=True)
class ImportReport:
    """What an import did: rows read, rows written, records deleted (``replace``), transactions
    committed, the bad rows (all of them up to ``max_errors``), and whether it stopped early."""

    file: str
    platform: str
    mode: ImportMode
    rows_read: int
    rows_written: int
    deleted: int
    commits: int
    errors: list[RowError] = field(default_factory=list)
    truncated: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """No bad row."""
        return not self.errors


class ProfileImportError(ValidationError):
    """A file with bad rows (nothing written) or a database that failed half-way (the committed
    chunks are in :attr:`report`)."""

    def __init__(self, message: str, report: ImportReport, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.report = report


# ---------------------------------------------------------------------------- CSV text -> types


def _blank(col: pd.Series) -> np.ndarray:
    """Missing or empty (only spaces) cells: missing values in CSV."""
    empty = col.astype(object).str.strip().eq("").fillna(False).to_numpy(dtype=bool)
    return np.asarray(col.isna().to_numpy(), dtype=bool) | empty


def _typed_csv_column(
    spec: FieldSpec, label: str, col: pd.Series, start: int, errors: list[RowError]
) -> pd.Series:
    """A CSV text column as the values the field's rules take; bad cells become missing and are
    recorded in ``errors``."""
    if isinstance(spec, Categorical):
        return col.where(~_blank(col), None)
    blank = _blank(col)
    values = col.to_numpy(dtype=object)

    def bad(mask: np.ndarray, requirement: str) -> None:
        for i in np.flatnonzero(mask):
            record(int(i), requirement)

    def record(i: int, requirement: str) -> None:
        errors.append(
            RowError(start + i + 1, label, values[i], f"{label} {requirement}, got {values[i]!r}")
        )

    if isinstance(spec, Numeric):
        num = pd.to_numeric(col.where(~blank, None), errors="coerce").astype(np.float64)
        wrong = ~blank & np.isnan(num.to_numpy())
        bad(wrong, "must be a number")
        return num
    if isinstance(spec, Recency):
        num = pd.to_numeric(col.where(~blank, None), errors="coerce").astype(np.float64)
        out = num.to_numpy().copy()
        rest = ~blank & np.isnan(out)
        if rest.any():
            parsed = pd.to_datetime(
                pd.Series(values[rest]), utc=True, format="ISO8601", errors="coerce"
            )
            index = pd.DatetimeIndex(parsed)
            secs = datetime64_to_us(index.asi8, str(index.unit)).astype(np.float64) / 1e6
            secs[np.asarray(index.isna())] = np.nan
            out[rest] = secs
        wrong = ~blank & np.isnan(out)
        bad(wrong, "must be epoch seconds or an ISO 8601 timestamp")
        return pd.Series(out, index=col.index)
    if isinstance(spec, Boolean):
        low = col.where(~blank, "").astype(str).str.strip().str.lower()
        yes, no = low.isin(_TRUE).to_numpy(), low.isin(_FALSE).to_numpy()
        wrong = ~blank & ~yes & ~no
        bad(wrong, "must be true / false (or 1 / 0)")
        out = np.where(yes, 1.0, np.where(no, 0.0, np.nan))
        return pd.Series(out, index=col.index)
    assert isinstance(spec, Tags)
    if spec.sep is not None:
        return col.where(~blank, None)
    parsed_tags: list[Any] = []
    for i, v in enumerate(values):
        if blank[i]:
            parsed_tags.append(None)
            continue
        try:
            item = json.loads(v)
        except ValueError:
            item = None
        if not isinstance(item, list):
            record(i, _TAGS_HINT)
            parsed_tags.append(None)
        else:
            parsed_tags.append(item)
    return pd.Series(parsed_tags, index=col.index, dtype=object)


_TAGS_HINT = 'must be a JSON list of str such as ["a","b"] (or declare Tags(..., sep="|"))'


# ---------------------------------------------------------------------------- the schema's rules


def _column_errors(
    spec: FieldSpec, label: str, col: pd.Series, start: int
) -> tuple[Any, list[RowError]]:
    """The canonical column, or every bad cell of it (each checked on its own, by the same
    rules: only a column that failed as a whole pays for this)."""

    def where(i: int) -> str:
        return f"row {start + i + 1}"

    try:
        return canonical_column(spec, label, col, where), []
    except ValidationError:
        pass
    found: list[RowError] = []
    for i in range(len(col)):
        try:
            canonical_column(spec, label, col.iloc[i : i + 1], where)
        except ValidationError as err:
            found.append(RowError(start + i + 1, label, col.iloc[i], err.message))
    return None, found


def _encode_errors(
    fitted: FittedNumeric | FittedRecency, canon: Any, start: int, now: float
) -> list[RowError]:
    """Rows whose value the field's encoder refuses, as it would at decision time."""
    out = np.zeros((len(canon), fitted.width))
    try:
        fitted.write_column(canon, out, 0, now, lambda i: f"row {start + i + 1}")
        return []
    except ValidationError:
        pass
    found: list[RowError] = []
    row = np.zeros(fitted.width)
    for i, v in enumerate(canon.tolist()):
        try:
            fitted.write(v, row, 0, now)
        except ValidationError as err:
            found.append(RowError(start + i + 1, fitted.label, v, err.message))
    return found


def _fragments(fitted: Any, canon: Any) -> list[str]:
    """The JSON text of each value of a canonical column (what ``json.dumps`` writes for the
    value :meth:`jsonify` gives), built per column instead of per record."""
    spec = fitted.spec
    if isinstance(spec, Categorical):
        return [_NULL if v is None else _quote(v) for v in canon]
    if isinstance(spec, Tags):
        return ["[" + ",".join(map(_quote, t)) + "]" for t in canon]
    if isinstance(spec, Boolean):
        return [_NULL if v != v else ("true" if v else "false") for v in canon.tolist()]
    values = canon.tolist()
    if not np.isnan(np.asarray(canon, dtype=np.float64)).any():
        return list(map(repr, values))  # the common case: no test per value (imports are long)
    return [_NULL if v != v else repr(v) for v in values]


_NULL = "null"


def _consent_flags(
    label: str, col: pd.Series, start: int, csv: bool, errors: list[RowError]
) -> list[bool | None]:
    """A consent column as ``True`` / ``False`` / ``None`` (no value: nothing changes); any
    other value is a bad row. Strict on purpose: a guessed consent is no consent."""
    out: list[bool | None] = []
    for i, v in enumerate(col.tolist()):
        if v is None or (isinstance(v, float) and v != v):
            out.append(None)
        elif isinstance(v, bool | np.bool_) and not csv:
            out.append(bool(v))
        elif csv and isinstance(v, str) and v.strip().lower() in ("true", "false", ""):
            w = v.strip().lower()
            out.append(None if w == "" else w == "true")
        else:
            out.append(None)
            errors.append(
                RowError(start + i + 1, label, v, f"{label} must be true or false, got {v!r}")
            )
    return out


def validate_chunk(
    block: FittedBlock, chunk: RawChunk, *, csv: bool, now: float
) -> tuple[list[str], list[str], list[RowError]]:
    """Check one chunk against the platform's fitted block: ``(user ids, records, errors)`` for
    the good rows (in file order; each record as its JSON text, keys sorted) and every bad one."""
    ids, texts, _, errors = _validate(block, chunk, csv=csv, now=now)
    return ids, texts, errors


def _validate(
    block: FittedBlock, chunk: RawChunk, *, csv: bool, now: float
) -> tuple[list[str], list[str], list[dict[str, bool]], list[RowError]]:
    """:func:`validate_chunk`, plus each good row's consent (``{}`` when the file has no consent
    column or the row's cells are empty)."""
    frame = chunk.frame
    start = chunk.start
    n = len(frame)
    errors = list(chunk.errors)
    key = block.key or "user_id"
    ids = _user_ids(block.prefix, key, frame[key], start, errors)
    declared = {f.spec.name for f in block.fields}
    flags = {
        (block.prefix if column == "consent" else PERSONALISATION): _consent_flags(
            f"{block.prefix}.{column}", frame[column], start, csv, errors
        )
        for column in CONSENT_COLUMNS
        if column in frame.columns and column not in declared
    }
    canons: list[Any] = []
    for fitted in block.fields:
        spec = fitted.spec
        label = f"{block.prefix}.{spec.name}"
        col = frame[spec.name].reset_index(drop=True)
        if csv:
            col = _typed_csv_column(spec, label, col, start, errors)
        canon, found = _column_errors(spec, label, col, start)
        if found:
            errors.extend(found)
            # bad cells as missing, so the rest of the column still validates and encodes
            keep = np.ones(n, dtype=bool)
            keep[[e.row - start - 1 for e in found]] = False
            col = col.where(pd.Series(keep), None)
            canon, _ = _column_errors(spec, label, col, start)
        # the encoders, as a decision runs them: only the standardized ones can still refuse
        # a value (a number too large to standardize), found row by row if the column fails
        if isinstance(fitted, FittedNumeric | FittedRecency):
            errors.extend(_encode_errors(fitted, canon, start, now))
        canons.append(canon)
    bad = np.zeros(n, dtype=bool)
    for e in errors:
        bad[e.row - start - 1] = True
    good = np.flatnonzero(~bad)
    order = sorted(range(len(block.fields)), key=lambda j: block.fields[j].spec.name)
    parts: list[Iterable[str]] = []
    for k, j in enumerate(order):
        fitted = block.fields[j]
        parts.append(repeat(f"{',' if k else '{'}{_quote(fitted.spec.name)}:", n))
        parts.append(_fragments(fitted, canons[j]))
    parts.append(repeat("}", n))
    # one join per row over the columns' pieces (measured 4x faster than adding object arrays)
    text = list(map("".join, zip(*parts, strict=True)))
    errors.sort(key=lambda e: (e.row, e.field))
    ok = good.tolist()
    consents: list[dict[str, bool]] = []
    if flags:
        consents = [
            {scope: v for scope, column in flags.items() if (v := column[i]) is not None}
            for i in ok
        ]
    return [ids[i] for i in ok], [text[i] for i in ok], consents, errors


def _user_ids(
    prefix: str, key: str, col: pd.Series, start: int, errors: list[RowError]
) -> list[Any]:
    """The key column as str ids (integers in decimal); a missing or empty one is an error."""
    out: list[Any] = col.tolist()
    for i, k in enumerate(out):
        if type(k) is str and k:
            continue
        if (isinstance(k, int | np.integer) and not isinstance(k, bool | np.bool_)) or (
            isinstance(k, float | np.floating) and math.isfinite(k) and float(k).is_integer()
        ):
            out[i] = str(int(k))
        elif isinstance(k, str) and k.strip():
            out[i] = str(k)
        else:
            shown = None if isinstance(k, float) and k != k else k
            errors.append(
                RowError(
                    start + i + 1,
                    f"{prefix}.{key}",
                    shown,
                    f"{prefix}.{key} (the user id) must be a non-empty str or an integer, "
                    f"got {shown!r}",
                )
            )
    return out


# ---------------------------------------------------------------------------- the import


def _block_of(features: FeatureMap, platform: str) -> FittedBlock:
    if platform not in features.blocks:
        import difflib

        near = difflib.get_close_matches(str(platform), features.platform_names, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ConfigError.for_field(
            "platform",
            platform,
            f"must be a platform the engine declares ({', '.join(features.platform_names)}){hint}",
        )
    return features.blocks[platform]


def import_profiles(
    log: EventStore,
    features: FeatureMap,
    path: str | Path,
    *,
    platform: str,
    mode: ImportMode = "upsert",
    fmt: FileFormat | None = None,
    encoding: str = "utf-8",
    delimiter: str = ",",
    chunk_rows: int = 100_000,
    commit_rows: int = 500_000,
    skip_bad_rows: bool = False,
    dry_run: bool = False,
    max_errors: int = 1000,
    ignore_extra: bool = False,
    now: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> ImportReport:
    """Import one platform's profile table into ``log``'s profile store (module docstring).

    Parameters
    ----------
    log
        The event log the server reads profiles from (opened with the HMAC key).
    features
        The engine's fitted feature map (``engine.features``): the schema rows are checked
        against.
    path, fmt, encoding, delimiter
        The file; its format from the suffix (``.csv``, ``.parquet``) unless ``fmt``.
    platform
        The platform the table belongs to.
    mode
        ``"upsert"`` or ``"replace"``.
    chunk_rows
        Rows read and checked at a time.
    commit_rows
        Checked rows written per transaction (at least; a transaction ends at the first chunk
        that reaches it). Memory grows with both. Larger transactions are faster on a large
        table (each one rewrites the primary-key index pages it touches, which is about every
        page once the table is much larger than a transaction) but hold the database's write
        lock longer: a server sharing the SQLite file waits up to one transaction.
    skip_bad_rows
        Write the good rows of every chunk and report the bad ones.
    dry_run
        Check the whole file and write nothing.
    max_errors
        Stop reading after this many bad rows (a file that bad is probably the wrong file).
    ignore_extra
        Skip columns the platform does not declare instead of refusing the file.
    now
        Time stamp of the written records (default: the wall clock).
    progress
        Called with ``(rows read, rows written)`` after each chunk.
    workers
        ``1``: read and check the file in a worker process while this one writes; ``0``: all
        in this process (a thread writes). Default: 1 for a file of 200,000 rows or more on a
        machine with two CPUs or more. The result is the same either way.

    Raises
    ------
    ProfileImportError
        Bad rows (and not ``skip_bad_rows``), or the database failed: ``report`` lists every bad
        row and how many rows were committed before it stopped.
    ValidationError, ConfigError, NotFoundError
        Unknown platform or mode, wrong columns, an unreadable file.
    """
    if mode not in ("upsert", "replace"):
        raise ConfigError.for_field("mode", mode, "must be 'upsert' or 'replace'")
    if isinstance(commit_rows, bool) or not isinstance(commit_rows, int) or commit_rows < 1:
        raise ConfigError.for_field("commit_rows", commit_rows, "must be an integer >= 1")
    if isinstance(max_errors, bool) or not isinstance(max_errors, int) or max_errors < 1:
        raise ConfigError.for_field("max_errors", max_errors, "must be an integer >= 1")
    if workers is not None and (isinstance(workers, bool) or workers not in (0, 1)):
        raise ConfigError.for_field("workers", workers, "must be 0, 1 or None (automatic)")
    block = _block_of(features, platform)
    key = features.key
    source = open_profile_file(
        path,
        declared=[s.name for s in block.specs],
        key=key,
        platform=platform,
        fmt=fmt,
        encoding=encoding,
        delimiter=delimiter,
        chunk_rows=chunk_rows,
        ignore_extra=ignore_extra,
        optional=CONSENT_COLUMNS,
    )
    if block.key != key:  # the key column names rows; the block may not carry it
        block = FittedBlock(platform, block.fields, key=key, reference_time=block.reference_time)
    t0 = time.perf_counter()
    stamp = time.time() if now is None else float(now)
    csv = source.format == "csv"
    name = str(path)
    errors: list[RowError] = []
    read = written = commits = deleted = 0
    writing = not dry_run

    def report(truncated: bool = False) -> ImportReport:
        return ImportReport(
            name,
            platform,
            mode,
            read,
            written,
            deleted,
            commits,
            errors[:max_errors],
            truncated,
            time.perf_counter() - t0,
        )

    # a worker process checks while this one writes; else one writer thread writes a batch
    # while this thread checks the next chunk (module docstring)
    n_workers = worker_count(workers, source)
    plan: dict[str, Any] = dict(
        csv=csv,
        now=stamp,
        platform=platform,
        writing=not dry_run,
        skip_bad_rows=skip_bad_rows,
        commit_rows=commit_rows,
        max_errors=max_errors,
    )
    worker: WorkerEvents | None = None
    pool: ThreadPoolExecutor | None = None
    inflight: Future[int] | None = None

    def write(batch: Batch | PackedBatch) -> int:
        if isinstance(batch, PackedBatch):
            digests, texts = batch.unpack()
            if texts:
                log.write_profile_digests(platform, digests, texts, now=stamp)
        else:
            texts = batch.texts
            if texts:
                log.write_profiles(platform, batch.ids, texts, now=stamp)
        if batch.cids:
            log.write_consents(batch.cids, batch.consents, source="import", now=stamp)
        return len(texts)

    def settle() -> None:
        """Wait for the batch in flight; count it (or raise what stopped it)."""
        nonlocal inflight, written, commits
        if inflight is not None:
            done, inflight = inflight, None
            written += done.result()
            commits += 1

    def put(batch: Batch | PackedBatch) -> None:
        nonlocal inflight, written, commits
        if pool is None:  # the worker builds the next batch meanwhile
            written += write(batch)
            commits += 1
            return
        settle()
        inflight = pool.submit(write, batch)

    truncated = False
    try:
        events: Iterable[Event]
        if n_workers:
            worker = WorkerEvents(
                _events, (block, source), plan, log.profile_digester() if writing else _NO_KEY
            )
            events = worker
        else:
            pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bandit-profile-writer")
            events = _events(block, source, **plan)
        for event in events:
            if isinstance(event, Rows):
                read = event.read
                errors.extend(event.found)
            elif isinstance(event, Batch | PackedBatch):
                put(event)
            elif isinstance(event, Progress):
                if progress is not None:
                    progress(read, written)
            else:
                truncated = event.truncated
                break
        settle()
        if truncated or (errors and not skip_bad_rows):
            rep = report(truncated=truncated)
            raise ProfileImportError(
                _summary(rep), rep, field=errors[0].field, value=errors[0].value
            )
        if mode == "replace" and not dry_run:
            deleted = log.delete_profiles_before(platform, stamp)
    except ProfileImportError:
        raise
    except Exception as exc:
        # a failure of this thread: the batch in flight still counts once committed (a failure
        # of that batch too is not reported: the first one is)
        with contextlib.suppress(Exception):
            settle()
        if isinstance(exc, BanditError) and written == 0:
            raise
        rep = report()
        raise ProfileImportError(
            f"importing {name!r} stopped at row {read} after {written} rows were committed "
            f"({commits} transactions) because {exc}; the committed rows stay and nothing was "
            "deleted: "
            "running the same import again completes it",
            rep,
            field=getattr(exc, "field", None) or "db",
        ) from exc
    finally:
        if worker is not None:
            worker.close()
        if pool is not None:
            pool.shutdown(wait=True)
    return report()


#: A dry run needs no pseudonyms; the worker still gets a digester (never called).
_NO_KEY = ProfileDigester(b"")


def _events(
    block: FittedBlock,
    source: ProfileFile,
    *,
    csv: bool,
    now: float,
    platform: str,
    writing: bool,
    skip_bad_rows: bool,
    commit_rows: int,
    max_errors: int,
) -> Iterator[Event]:
    """The import's loop over the file, as events (:mod:`._import_worker`): each chunk's bad rows
    (:class:`Rows`), the batches to write, a :class:`Progress` per chunk, then :class:`End`.
    Run in this process or in the worker; the caller writes the batches in order."""
    batch = Batch([], [])
    n_errors = 0

    def take() -> Batch:
        nonlocal batch
        done, batch = batch, Batch([], [])
        return done

    def add(ids: list[str], texts: list[str], consents: list[dict[str, bool]]) -> None:
        if not consents:
            batch.ids.extend(ids)
            batch.texts.extend(texts)
            return
        for uid, text, given in zip(ids, texts, consents, strict=True):
            if given.get(platform) is not False:  # a withheld platform's record is not stored
                batch.ids.append(uid)
                batch.texts.append(text)
            if given:
                batch.cids.append(uid)
                batch.consents.append(given)

    def pending() -> bool:
        return bool(batch.texts or batch.cids)

    for chunk in source.chunks():
        ids, texts, consents, found = _validate(block, chunk, csv=csv, now=now)
        yield Rows(chunk.start + len(chunk.frame), found)
        n_errors += len(found)
        if found and writing and not skip_bad_rows:
            if pending():  # the rows before this chunk are committed; the rest is only checked
                yield take()
            writing = False
        if writing and texts:
            add(ids, texts, consents)
            if len(batch.texts) + len(batch.cids) >= commit_rows:
                yield take()
        if n_errors >= max_errors:
            if writing and pending():
                yield take()
            yield End(truncated=True)
            return
        yield Progress()
    if writing and pending():
        yield take()
    yield End(truncated=False)


def _summary(rep: ImportReport) -> str:
    shown = "; ".join(str(e) for e in rep.errors[:5])
    more = f" (and {len(rep.errors) - 5} more)" if len(rep.errors) > 5 else ""
    stop = f" (reading stopped at row {rep.rows_read}: --max-errors)" if rep.truncated else ""
    if rep.rows_written == 0:
        done = "nothing was written"
    else:
        done = (
            f"the {rep.rows_written} good rows before the chunk holding the first bad row were "
            "committed (fix the file and run the same import again)"
        )
    return f"{rep.file}: {len(rep.errors)} bad row(s){stop}; {done}: {shown}{more}"
