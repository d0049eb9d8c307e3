"""Engine access and group commit on the event loop.

The engine is not thread-safe and SQLite allows one writer at a time. Every request that touches
either becomes a *job* ``job(service)`` (a :class:`~bandit_engine.service.LoggedEngine`: the engine
and its log kept in step) run on the event loop thread itself, one at a time (the
loop is single-threaded, so no lock is needed and no thread hand-off is paid per request; a job is
pure CPU work of well under a millisecond plus SQLite statements that do not wait on the disk).

Jobs write inside an open SQLite transaction; the transaction is committed once no new job joined it
during a loop iteration, or after ``max_delay`` seconds, or ``max_batch`` jobs, whichever comes first.
Each request is answered only after the commit holding its writes returned (**group commit**): under
``synchronous=FULL`` one fsync serves a whole batch. That commit runs in a helper thread under
``FULL`` (SQLite releases the GIL while it syncs), so the loop keeps reading and parsing requests
during the fsync; jobs that arrive meanwhile wait for it and form the next batch. Under ``NORMAL`` /
``OFF`` a commit does not sync and runs inline. On PostgreSQL every commit is a round trip to the
server and runs in the helper thread (``EventStore.commit_waits``); the statements of a job are
round trips too and do run on the loop (0.1-0.3 ms each on loopback), which bounds the rate of a
PostgreSQL-backed server below that of a SQLite one.

Every ``advance_interval`` seconds a timer closes due attribution windows (``LoggedEngine.advance``), so
decisions learn even when no request comes. Checkpoints are taken between batches: the engine state is
copied on the loop (a few milliseconds) and written to disk by a helper thread.

If a commit fails, or a job fails with an error that is not a
:class:`~bandit_engine.errors.BanditError` (a bug), the engine may hold changes the log does not: the
batch is rolled back, its requests get 503, and the engine is rebuilt from the latest checkpoint and
the journal before the next job runs.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .._version import __version__
from ..engine import Engine
from ..errors import BanditError, StoreBusyError
from ..fileformat import write_state
from ..service import LoggedEngine
from .errors import ServiceUnavailableError
from .metrics import Metrics

__all__ = ["EngineWorker", "Job"]


def _fork_save(engine: Engine, path: Any) -> int:
    """Fork a child that saves ``engine`` to ``path`` and exits; returns its pid."""
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:  # the child: touch nothing the parent owns (sockets, the SQLite connection, the loop)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        os.closerange(3, 65536)  # the listening socket and client connections stay the parent's
        engine.save(path)
        code = 0
    except BaseException:  # reported through the exit code
        code = 1
    finally:
        os._exit(code)


def _copy_state(engine: Engine) -> dict[str, Any]:
    """A state dict that no later engine change can alter (for a writer thread)."""
    return copy.deepcopy(engine.to_state())


Job = Callable[[LoggedEngine], Any]
logger = logging.getLogger("bandit_engine.server")
_CHILD_TIMEOUT = 600.0


async def _reap(pid: int) -> None:
    """Wait for the checkpoint child ``pid`` without blocking the loop; raise if it failed."""
    deadline = time.monotonic() + _CHILD_TIMEOUT
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:  # stuck (a lock inherited across fork?)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise RuntimeError(f"checkpoint process {pid} timed out")
        await asyncio.sleep(0.05)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"checkpoint process exited with {code}")


class EngineWorker:
    """Runs jobs against the engine and the log, committing them in groups.

    Parameters
    ----------
    service
        What the jobs run against (it carries the checkpoint folder).
    rebuild
        Builds a consistent service from the checkpoints and the journal (used after a failure).
    metrics
        Counters to update.
    max_batch, max_delay
        Commit after this many jobs or this many seconds at the latest.
    fork_checkpoints
        Write periodic checkpoints from a forked child (POSIX): the child holds a copy-on-write
        snapshot of the engine, so serving pauses only for the ``fork`` itself. Otherwise (or where
        ``fork`` does not exist) the state is copied on the loop and written from a thread, which
        holds the GIL while it serializes (hundreds of milliseconds for 10k pending decisions).
    advance_interval, checkpoint_every, checkpoint_seconds
        See :class:`~bandit_engine.server.settings.ServerSettings`.
    """

    def __init__(
        self,
        service: LoggedEngine,
        *,
        rebuild: Callable[[], LoggedEngine],
        metrics: Metrics,
        max_batch: int = 256,
        max_delay: float = 0.002,
        advance_interval: float = 1.0,
        checkpoint_every: int = 10_000,
        checkpoint_seconds: float = 300.0,
        fork_checkpoints: bool = True,
    ) -> None:
        if service.checkpoints is None:
            raise ValueError("the worker's service needs a checkpoint folder")
        self.service = service
        self.log = service.log
        self.checkpointer = service.checkpoints
        self.metrics = metrics
        self.rebuild = rebuild
        self.max_batch = max_batch
        self.max_delay = max_delay
        self.advance_interval = advance_interval
        self.checkpoint_every = checkpoint_every
        self.checkpoint_seconds = checkpoint_seconds
        # a commit that waits on an fsync or on the network runs off the event loop
        self.sync_in_thread = self.log.commit_waits
        self.fork_checkpoints = fork_checkpoints
        self._healthy = True
        self._write_error: str | None = None  # why the latest write failed; None once one works
        self._started = False
        self._open = False  # a batch transaction is open
        self._batch_fut: asyncio.Future[None] | None = None
        self._batch_jobs = 0
        self._batch_start = 0.0
        self._seen_jobs = -1
        self._commit_scheduled = False
        self._committing: asyncio.Future[None] | None = None
        self._since_checkpoint = 0
        self._dirty = False
        self._last_checkpoint = time.monotonic()
        self._checkpoint_task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._advancing: asyncio.Task[None] | None = None
        self._commit_task: asyncio.Task[None] | None = None

    @property
    def engine(self) -> Engine:
        """The engine being served (replaced when the worker rebuilds after a failure)."""
        return self.service.engine

    @property
    def healthy(self) -> bool:
        """False while the engine is being rebuilt after a failure or after :meth:`stop`."""
        return self._healthy

    @property
    def ready(self) -> bool:
        """Healthy and able to write: False from a failed write (lock held past busy_timeout, disk
        full) until a commit succeeds again, so a readiness probe takes the server out of rotation
        while every write would fail."""
        return self._healthy and self._write_error is None

    @property
    def write_error(self) -> str | None:
        """Why the latest write failed, or ``None``."""
        return self._write_error

    @property
    def running(self) -> bool:
        return self._started

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the advance timer on the running loop (idempotent; jobs work without it)."""
        if self._started:
            return
        self._started = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop yet: requests still advance the engine themselves
            return
        self._timer = loop.call_later(self.advance_interval, self._tick)

    async def stop(self, *, checkpoint: bool = True) -> None:
        """Commit what is open, wait for a checkpoint in progress, write a final checkpoint."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._committing is not None:
            await asyncio.shield(self._committing)
        if self._open:
            await self._commit()
        if self._checkpoint_task is not None:
            await self._checkpoint_task
        if checkpoint and self._dirty and self._healthy:
            self.checkpoint()
        self._started = False

    def kill(self) -> None:
        """Stop without committing or checkpointing (tests: what a crash leaves behind)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._open:
            self.log.rollback()
            self._open = False
        self._healthy = False
        self._started = False

    # -- running jobs ------------------------------------------------------------------------
    async def run(self, job: Job) -> Any:
        """Run ``job(service)``; return its result once its writes are committed."""
        while self._committing is not None:  # the connection is busy syncing the last batch
            await asyncio.shield(self._committing)
        if not self._healthy:
            raise ServiceUnavailableError("the engine is not serving; retry")
        try:
            fut = self._join()
        except StoreBusyError as exc:
            self._write_error = exc.message
            raise
        try:
            result = job(self.service)
        except StoreBusyError as exc:
            # the log failed mid-batch: the engine may hold what the log does not
            self._write_error = exc.message
            logger.error("the event log failed; rolling back the batch and rebuilding the engine")
            self._fail_batch(ServiceUnavailableError("the event log failed; retry"))
            raise
        except BanditError:
            self._after_job()
            raise  # a client error: nothing half-done (writes it made, if any, are complete)
        except Exception:
            logger.exception("job failed; rolling back the batch and rebuilding the engine")
            self._fail_batch(ServiceUnavailableError("internal error; the batch was rolled back"))
            raise
        self._after_job()
        await asyncio.shield(fut)
        return result

    def _join(self) -> asyncio.Future[None]:
        if not self._open:
            self.log.begin()  # takes the journal (waits up to busy_timeout for another process)
            self._open = True
            self._batch_fut = asyncio.get_running_loop().create_future()
            self._batch_jobs = 0
            self._batch_start = time.monotonic()
        assert self._batch_fut is not None
        return self._batch_fut

    def _after_job(self) -> None:
        self._batch_jobs += 1
        if self._batch_jobs >= self.max_batch:
            self._commit_soon(now=True)
        else:
            self._commit_soon()

    def _commit_soon(self, *, now: bool = False) -> None:
        if self._commit_scheduled:
            return
        self._commit_scheduled = True
        self._seen_jobs = -1 if now else self._batch_jobs
        asyncio.get_running_loop().call_soon(self._maybe_commit)

    def _maybe_commit(self) -> None:
        self._commit_scheduled = False
        if not self._open:
            return
        young = time.monotonic() - self._batch_start < self.max_delay
        if young and self._seen_jobs != -1 and self._batch_jobs != self._seen_jobs:
            # jobs joined during the last loop iteration: more are probably on the way
            self._commit_scheduled = True
            self._seen_jobs = self._batch_jobs
            asyncio.get_running_loop().call_soon(self._maybe_commit)
            return
        self._commit_task = asyncio.get_running_loop().create_task(self._commit())

    async def _commit(self) -> None:
        fut = self._batch_fut
        if not self._open or fut is None:
            return
        self._open = False
        self._batch_fut = None
        jobs = self._batch_jobs
        loop = asyncio.get_running_loop()
        self._committing = loop.create_future()
        try:
            if self.sync_in_thread:
                await asyncio.to_thread(self.log.commit)
            else:
                self.log.commit()
        except Exception as exc:
            self._write_error = str(exc)
            logger.error("commit failed (%s); rebuilding the engine", type(exc).__name__)
            self._resolve(fut, ServiceUnavailableError("the event log could not commit; retry"))
            self._recover()
            return
        finally:
            done, self._committing = self._committing, None
            done.set_result(None)
        self.metrics.inc("bandit_commits_total")
        self._write_error = None
        self._dirty = True
        self._resolve(fut, None)
        if jobs:
            self._maybe_checkpoint()

    @staticmethod
    def _resolve(fut: asyncio.Future[None], error: BaseException | None) -> None:
        if fut.done():
            return
        if error is None:
            fut.set_result(None)
        else:
            fut.set_exception(error)
            fut.exception()  # mark retrieved: a batch whose requests all failed early

    def _fail_batch(self, error: BaseException) -> None:
        fut = self._batch_fut
        self._batch_fut = None
        if self._open:
            self._open = False
            self.log.rollback()
        if fut is not None:
            self._resolve(fut, error)
        self._recover()

    def _recover(self) -> None:
        self._healthy = False
        try:
            service = self.rebuild()
        except Exception:
            logger.exception("engine rebuild failed; the server stays unavailable")
            return
        self.service = service
        self._healthy = True
        logger.warning("engine rebuilt from checkpoint and journal")

    def note_decisions(self, n: int = 1) -> None:
        """Count decisions toward the next checkpoint (called by decision jobs)."""
        self._since_checkpoint += n

    # -- timer and checkpoints ---------------------------------------------------------------
    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.advance_interval, self._tick)
        if self._healthy and self.engine.attribution.next_deadline() < self.engine.now():
            self._advancing = loop.create_task(self._advance())
        elif self._since_checkpoint >= self.checkpoint_every or (
            self._dirty and time.monotonic() - self._last_checkpoint >= self.checkpoint_seconds
        ):
            # also a checkpoint that fell due while the previous one was still being written:
            # without this it waited for the next request, however long that took
            self._maybe_checkpoint()

    @staticmethod
    def _advance_job(service: LoggedEngine) -> None:
        service.advance()

    async def _advance(self) -> None:
        try:
            await self.run(self._advance_job)
        except Exception:  # keep the timer alive; the next tick retries
            logger.exception("timer advance failed")

    def _maybe_checkpoint(self) -> None:
        due = self._since_checkpoint >= self.checkpoint_every or (
            self._dirty and time.monotonic() - self._last_checkpoint >= self.checkpoint_seconds
        )
        if not due or self._checkpoint_task is not None or not self._healthy or self._open:
            return
        # between batches: the engine holds exactly the journal up to last_seq
        seq = self.log.last_seq()
        path = self.checkpointer.path_for(seq)
        self.checkpointer.directory.mkdir(parents=True, exist_ok=True)
        self._since_checkpoint = 0
        self._dirty = False
        self._last_checkpoint = time.monotonic()
        loop = asyncio.get_running_loop()
        write: Awaitable[None]
        if self.fork_checkpoints and hasattr(os, "fork"):
            write = _reap(_fork_save(self.engine, path))
        else:
            state = _copy_state(self.engine)
            write = asyncio.to_thread(write_state, path, state, library_version=__version__)
        self._checkpoint_task = loop.create_task(self._finish_checkpoint(seq, write))

    async def _finish_checkpoint(self, seq: int, write: Awaitable[None]) -> None:
        """Await a background checkpoint write; record it, or log the failure and retry later."""
        try:
            await write
            self.checkpointer.saved(self.log, seq)
            self.metrics.inc("bandit_checkpoints_total")
        except Exception:
            logger.exception("checkpoint at seq %d failed; the next one retries", seq)
            self._dirty = True
        finally:
            self._checkpoint_task = None

    async def between_batches(self, fn: Job) -> Any:
        """Run ``fn(service)`` when no batch is open, no commit runs and no background checkpoint
        is being written (after a forget: truncating the WAL and rewriting checkpoints must not
        race a snapshot taken before it). Nothing else runs on the loop meanwhile."""
        while True:
            if self._committing is not None:
                await asyncio.shield(self._committing)
            elif self._open:
                await self._commit()
            elif self._checkpoint_task is not None:
                await self._checkpoint_task
            else:
                break
        return fn(self.service)

    def checkpoint(self) -> None:
        """Write a checkpoint now, synchronously (between batches: shutdown, tests)."""
        seq = self.log.last_seq()
        self.checkpointer.save(self.engine, self.log, seq)
        self._since_checkpoint = 0
        self._dirty = False
        self._last_checkpoint = time.monotonic()
        self.metrics.inc("bandit_checkpoints_total")
