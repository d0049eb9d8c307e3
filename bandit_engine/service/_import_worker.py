"""Speed machinery of the bulk profile import (:mod:`~bandit_engine.service.profile_import`): the
file is read and checked, the records' JSON built and the users' pseudonyms computed in a worker
process, while the importing process writes the previous batch to the database.

Why a process: reading, checking and the HMAC are Python (or C holding the GIL), so a thread
overlaps them with the database only where the driver releases the GIL; a process uses the
second core fully. The import's loop is the same generator in both cases (its events are the
classes below); :class:`WorkerEvents` runs it in the worker and replays its events here.

What travels (a pipe in memory, never a file): per batch the users' 32-byte pseudonyms as one
bytes object and the records' JSON texts as one str joined by newlines (JSON text built by
the import is ASCII without control characters, so a newline never occurs inside a record),
which pickle copies in one piece instead of object by object. Raw user ids stay in the worker
(except those of consent rows, which the consent store pseudonymizes itself). The worker sends a
batch only when this process has received the previous one, so at most two batches are held:
the one being written and the one being built.

A worker that fails sends its exception (re-raised here, so the errors are those of the
in-process path); a worker that dies (killed, out of memory) closes the pipe, and the import
stops with :class:`WorkerDiedError` instead of waiting.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from ..store.profile_bulk import ProfileDigester
from .profile_files import ProfileFile, RowError

__all__ = [
    "PARALLEL_ROWS",
    "Batch",
    "End",
    "Event",
    "PackedBatch",
    "Progress",
    "Rows",
    "WorkerDiedError",
    "WorkerEvents",
    "child_main",
    "estimated_rows",
    "worker_count",
]

#: Files with fewer rows (estimated) are checked in the importing process: starting a worker
#: (a new interpreter importing pandas and pyarrow) costs about a second.
PARALLEL_ROWS = 200_000
_PSEUDONYM_BYTES = 32  # HMAC-SHA256


@dataclass
class Rows:
    """A chunk was checked: ``read`` rows of the file so far, ``found`` its bad rows."""

    read: int
    found: list[RowError]


@dataclass
class Batch:
    """Checked rows to write in one transaction (raw ids: the in-process path)."""

    ids: list[str]
    texts: list[str]
    cids: list[str] = field(default_factory=list)
    consents: list[dict[str, bool]] = field(default_factory=list)


@dataclass
class PackedBatch:
    """A :class:`Batch` as the worker sends it: ``n`` pseudonyms of 32 bytes in ``digests``,
    ``n`` records joined by ``"\\n"`` in ``texts``."""

    digests: bytes
    texts: str
    n: int
    cids: list[str]
    consents: list[dict[str, bool]]

    def unpack(self) -> tuple[list[bytes], list[str]]:
        """The pseudonyms and the records as lists."""
        d, size = self.digests, _PSEUDONYM_BYTES
        digests = [d[i : i + size] for i in range(0, self.n * size, size)]
        texts = self.texts.split("\n") if self.n else []
        return digests, texts


@dataclass
class Progress:
    """A chunk is done (the progress callback runs)."""


@dataclass
class End:
    """The file is done, or reading stopped at ``max_errors`` (``truncated``)."""

    truncated: bool


@dataclass
class _Failed:
    exc: BaseException


Event = Rows | Batch | PackedBatch | Progress | End


class WorkerDiedError(RuntimeError):
    """The checking process ended without a word (killed, out of memory)."""

    field = "worker"


def worker_count(workers: int | None, source: ProfileFile) -> int:
    """Worker processes to use: ``workers`` if given (0 or 1), else 1 for a file of at least
    :data:`PARALLEL_ROWS` rows on a machine with two CPUs or more, else 0."""
    if workers is not None:
        return workers
    if not sys.executable:  # an embedded interpreter: no Python to start
        return 0
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return 1 if cpus >= 2 and estimated_rows(source) >= PARALLEL_ROWS else 0


def estimated_rows(source: ProfileFile) -> int:
    """Rows of the file: exact for Parquet (its metadata), from the size for CSV (a profile
    row is rarely under 64 bytes)."""
    if source.format == "parquet":
        import pyarrow.parquet as pq  # type: ignore[import-untyped]

        with pq.ParquetFile(source.path) as f:
            return int(f.metadata.num_rows)
    return source.path.stat().st_size // 64


def _pack(event: Event, digester: ProfileDigester) -> Event:
    """A batch's pseudonyms and records in pseudonym order (stable: a repeated user's last row
    stays last), each as one object; the SQLite store then finds them sorted and skips its own
    sort, which runs in the writing process (the slower of the two)."""
    if not isinstance(event, Batch):
        return event
    n = len(event.texts)
    keys = np.frombuffer(b"".join(digester(event.ids)), dtype=np.uint8).reshape(n, _PSEUDONYM_BYTES)
    # byte order = the order of four big-endian words, the most significant last for lexsort
    words = keys.view(">u8")
    order = np.lexsort([words[:, j] for j in range(words.shape[1] - 1, -1, -1)])
    texts = event.texts
    return PackedBatch(
        keys[order].tobytes(),
        "\n".join(map(texts.__getitem__, order.tolist())),
        n,
        event.cids,
        event.consents,
    )


def _child(
    conn: Connection,
    events: Callable[..., Iterator[Event]],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    digester: ProfileDigester,
) -> None:
    """The worker's body: run the import's loop and send each event, packed."""
    try:
        for event in events(*args, **kwargs):
            conn.send(_pack(event, digester))
    except BaseException as exc:  # every failure goes back to the importer
        try:
            pickle.dumps(exc)
            failed = _Failed(exc)
        except Exception:  # an exception that does not pickle: its text
            failed = _Failed(RuntimeError(f"{type(exc).__name__}: {exc}"))
        with contextlib.suppress(Exception):  # the importer may be gone already
            conn.send(failed)
    finally:
        conn.close()


def child_main() -> None:
    """The worker process's entry: its task from the pipe named by ``argv[1]``, its events to
    the one named by ``argv[2]``."""
    with Connection(int(sys.argv[1]), writable=False) as inbox:
        path, events, args, kwargs, digester = inbox.recv()
    sys.path[:] = path
    _child(Connection(int(sys.argv[2]), readable=False), events, args, kwargs, digester)


class WorkerEvents:
    """``events(*args, **kwargs)`` run in a worker process; iterate to get its events here
    (batches as :class:`PackedBatch`). Use as a context manager: leaving it stops the worker.

    The worker is a new interpreter started with :mod:`subprocess` (not :mod:`multiprocessing`,
    whose spawn re-runs the caller's main script, and whose fork would copy this process's
    threads and database connection), talking over two pipes in memory; the task, with the
    HMAC key, goes through a pipe, never the command line or the environment.
    """

    def __init__(
        self,
        events: Callable[..., Iterator[Event]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        digester: ProfileDigester,
    ) -> None:
        task_r, task_w = os.pipe()
        out_r, out_w = os.pipe()
        # the worker imports this package from where this process did
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [root, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
        )
        code = "from bandit_engine.service._import_worker import child_main; child_main()"
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-c", code, str(task_r), str(out_w)],
                pass_fds=(task_r, out_w),
                env=env,
            )
        except BaseException:
            for fd in (task_r, task_w, out_r, out_w):
                os.close(fd)
            raise
        os.close(task_r)  # ours closed: the pipe ends when the worker's end does
        os.close(out_w)
        self._conn = Connection(out_r, writable=False)
        with Connection(task_w, readable=False) as task:
            task.send((list(sys.path), events, args, kwargs, digester))

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self._proc.pid

    def __iter__(self) -> Iterator[Event]:
        while True:
            try:
                event = self._conn.recv()
            except (EOFError, OSError):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._proc.wait(timeout=5)
                raise WorkerDiedError(
                    f"the import's checking process (pid {self._proc.pid}) died "
                    f"(exit code {self._proc.returncode})"
                ) from None
            if isinstance(event, _Failed):
                raise event.exc
            yield event
            if isinstance(event, End):
                return

    def __enter__(self) -> WorkerEvents:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker (at once if it is still checking) and wait for it."""
        self._conn.close()
        proc = self._proc
        for stop in (None, proc.terminate, proc.kill):
            if stop is not None:
                stop()
            try:  # done, or about to fail on the closed pipe
                proc.wait(timeout=1 if stop is None else 5)
                return
            except subprocess.TimeoutExpired:
                continue
