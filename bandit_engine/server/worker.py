"""The engine worker: one thread owns the engine and the event log's writes (group commit).

The engine is not thread-safe and SQLite allows one writer at a time, so every request that touches
either becomes a *job* run by a single worker thread; the asyncio event loop only parses, awaits and
answers. The worker takes every job waiting in its queue (up to ``max_batch``), runs them inside one
SQLite transaction, commits, and only then hands each result back to its request: a response is never
sent before the commit that holds its writes returned. Under ``synchronous=FULL`` one commit (one
fsync) thus serves a whole batch; batches grow by themselves when commits are slow.

Between batches the worker closes due attribution windows (``Engine.advance``) every
``advance_interval`` seconds and writes checkpoints. If a commit fails, or a job fails with an error
that is not a :class:`~bandit_engine.errors.BanditError` (a bug), the engine may hold changes the log
does not: the worker answers 503 to the batch and rebuilds the engine from the latest checkpoint and
the journal before serving again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ..engine import Engine
from ..errors import BanditError
from ..records import LearnedReward
from ..store import EventLog
from .checkpoint import Checkpointer
from .errors import ServiceUnavailableError
from .metrics import Metrics

__all__ = ["EngineWorker", "Job"]

T = TypeVar("T")
Job = Callable[[Engine, EventLog], Any]
logger = logging.getLogger("bandit_engine.server")
_STOP = object()


def _deliver(items: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for fut, ok, value in items:
        if fut.done():  # the client went away; its writes are committed all the same
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


class EngineWorker:
    """Runs jobs against the engine and the log on one thread, committing them in groups.

    Parameters
    ----------
    engine, log
        What the jobs run against.
    rebuild
        Builds a consistent engine from the checkpoints and the journal (used after a failure).
    checkpointer
        Where checkpoints go.
    metrics
        Counters to update.
    max_batch, advance_interval, checkpoint_every, checkpoint_seconds
        See :class:`~bandit_engine.server.settings.ServerSettings`.
    """

    def __init__(
        self,
        engine: Engine,
        log: EventLog,
        *,
        rebuild: Callable[[], Engine],
        checkpointer: Checkpointer,
        metrics: Metrics,
        max_batch: int = 256,
        advance_interval: float = 1.0,
        checkpoint_every: int = 10_000,
        checkpoint_seconds: float = 300.0,
    ) -> None:
        self.log = log
        self.metrics = metrics
        self.rebuild = rebuild
        self.checkpointer = checkpointer
        self.max_batch = max_batch
        self.advance_interval = advance_interval
        self.checkpoint_every = checkpoint_every
        self.checkpoint_seconds = checkpoint_seconds
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._healthy = True
        self._since_checkpoint = 0
        self._dirty = False
        self._last_checkpoint = time.monotonic()
        self._last_advance = time.monotonic()
        self.engine = engine
        self._attach(engine)

    # -- engine hooks ------------------------------------------------------------------------
    def _attach(self, engine: Engine) -> None:
        engine.on_learned = self._on_learned
        self.engine = engine

    def _on_learned(self, rec: LearnedReward) -> None:
        # runs on the worker thread, inside the current batch's transaction
        if self.log.log_learned(rec):
            self.metrics.inc("bandit_rewards_learned_total", status=rec.status)

    @property
    def healthy(self) -> bool:
        """False while the engine is being rebuilt after a failure."""
        return self._healthy

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="bandit-engine", daemon=True)
            self._thread.start()

    def stop(self, *, checkpoint: bool = True, timeout: float = 60.0) -> None:
        """Finish every queued job, write a final checkpoint and stop the thread."""
        if self._thread is None:
            return
        self._queue.put((_STOP, checkpoint))
        self._thread.join(timeout)
        self._thread = None

    async def run(self, job: Job) -> Any:
        """Run ``job(engine, log)`` on the worker; returns its result once it is committed."""
        if self._thread is None:
            raise ServiceUnavailableError("the engine worker is not running")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.put((job, fut, loop))
        return await fut

    # -- the loop ----------------------------------------------------------------------------
    def _run(self) -> None:
        stop: tuple[Any, bool] | None = None
        while stop is None:
            try:
                item = self._queue.get(timeout=self._wait())
            except queue.Empty:
                item = None
            batch: list[tuple[Job, asyncio.Future[Any], asyncio.AbstractEventLoop]] = []
            while item is not None:
                if item[0] is _STOP:
                    stop = item
                    break
                batch.append(item)
                if len(batch) >= self.max_batch:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    item = None
            if batch:
                self._process(batch)
            try:
                self._periodic(final=stop is not None and bool(stop[1]))
            except Exception:  # keep serving; the next period retries
                logger.exception("periodic engine maintenance failed")
        # drain whatever raced with the stop request
        rest = []
        while True:
            try:
                rest.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if rest:
            self._process([r for r in rest if r[0] is not _STOP])

    def _wait(self) -> float:
        return max(0.001, self.advance_interval - (time.monotonic() - self._last_advance))

    def _process(
        self, batch: list[tuple[Job, asyncio.Future[Any], asyncio.AbstractEventLoop]]
    ) -> None:
        results: list[tuple[bool, Any]] = []
        broken = False
        try:
            with self.log.transaction():
                for job, _, _ in batch:
                    try:
                        results.append((True, job(self.engine, self.log)))
                    except BanditError as exc:
                        results.append((False, exc))
                    except Exception as exc:  # a bug: the engine may now disagree with the log
                        logger.error("job failed: %s", type(exc).__name__, exc_info=exc)
                        results.append((False, exc))
                        broken = True
            self.metrics.inc("bandit_commits_total")
            self._dirty = True
        except Exception as exc:
            logger.error("commit failed (%s); rebuilding the engine", type(exc).__name__)
            err = ServiceUnavailableError("the event log could not commit; retry")
            results = [(False, err)] * len(batch)
            broken = True
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for (_, fut, loop), (ok, value) in zip(batch, results, strict=True):
            by_loop.setdefault(loop, []).append((fut, ok, value))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting
                loop.call_soon_threadsafe(_deliver, items)
        if broken:
            self._recover()

    def _recover(self) -> None:
        self._healthy = False
        while True:
            try:
                self._attach(self.rebuild())
                self._healthy = True
                logger.warning("engine rebuilt from checkpoint and journal")
                return
            except Exception as exc:
                logger.error("engine rebuild failed (%s); retrying in 1 s", type(exc).__name__)
                time.sleep(1.0)

    def note_decisions(self, n: int = 1) -> None:
        """Count decisions toward the next checkpoint (called by decision jobs)."""
        self._since_checkpoint += n

    def _periodic(self, *, final: bool = False) -> None:
        now = time.monotonic()
        if now - self._last_advance >= self.advance_interval:
            self._last_advance = now
            with self.log.transaction():
                self.engine.advance()
        due = self._since_checkpoint >= self.checkpoint_every or (
            self._dirty and now - self._last_checkpoint >= self.checkpoint_seconds
        )
        if due or (final and self._dirty):
            self.checkpoint()

    def checkpoint(self) -> None:
        """Write a checkpoint now (worker thread only, between batches)."""
        seq = self.log.last_seq()
        self.checkpointer.save(self.engine, self.log, seq)
        self._since_checkpoint = 0
        self._dirty = False
        self._last_checkpoint = time.monotonic()
        self.metrics.inc("bandit_checkpoints_total")
