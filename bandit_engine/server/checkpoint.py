"""Checkpoints, journal replay and admin operations: how a restarted server ends where it stopped.

A checkpoint is the whole engine saved atomically (:meth:`Engine.save <bandit_engine.engine.Engine.save>`
writes a temporary file and renames it) under the name ``checkpoint-<seq>.bandit``, where ``seq`` is the
last journal entry of the event log it includes. A restart

1. builds the *base* engine (the ``--model`` file or the demo engine),
2. if the event log's lineage (``meta['engine_model_id']``) is this base engine's ``model_id``, loads
   the newest readable checkpoint of that lineage (a corrupt one falls back to the previous),
3. replays the journal after the checkpoint's seq through the engine: catalog changes in order,
   decisions with :meth:`Engine.replay_decision` (logged context, logged candidates, same random draws,
   verified to choose the logged bundle), events with :meth:`Engine.report` at their logged times.

A base engine with another ``model_id`` starts a new lineage at the current end of the journal: its
decisions are not mixed with an older model's. Limitations: the engine's duplicate-event counter is not
restored exactly (a duplicate is not journaled), and a user forgotten after a checkpoint is not
replayed (forgetting wins over bit-identical state).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..engine import Engine
from ..errors import ConflictError, ModelFileError, ValidationError
from ..store import EventLog

__all__ = [
    "ADMIN_OPS",
    "Checkpointer",
    "RestoreReport",
    "apply_admin",
    "replay_journal",
    "restore_engine",
]

logger = logging.getLogger("bandit_engine.server")
_NAME = re.compile(r"^checkpoint-(\d{12})\.bandit$")

ADMIN_OPS = (
    "add_deals",
    "add_courses",
    "add_bundles",
    "retire_deals",
    "retire_courses",
    "retire_bundles",
)


def apply_admin(engine: Engine, op: str, payload: Mapping[str, Any]) -> list[str]:
    """Apply one catalog change to ``engine`` (live and in replay: one code path).

    Returns the ids of the bundles it created. Invalid records raise
    :class:`~bandit_engine.errors.ValidationError` (or ``NotFoundError`` for unknown ids) before the
    catalog changes.
    """
    catalog = engine.catalog
    try:
        if op == "add_deals":
            return list(catalog.add_deals(pd.DataFrame(list(payload["deals"]))))
        if op == "add_courses":
            return list(catalog.add_courses(pd.DataFrame(list(payload["courses"]))))
        if op == "add_bundles":
            rows = [dict(b) for b in payload["bundles"]]
            frame = pd.DataFrame(rows)
            if "bundle_id" in frame.columns and frame["bundle_id"].isna().all():
                frame = frame.drop(columns=["bundle_id"])
            return list(catalog.add_bundles(frame))
        if op == "retire_deals":
            catalog.retire_deals(list(payload["ids"]))
            return []
        if op == "retire_courses":
            catalog.retire_courses(list(payload["ids"]))
            return []
        if op == "retire_bundles":
            catalog.retire_bundles(list(payload["ids"]))
            return []
    except (TypeError, ValueError, KeyError) as exc:
        if isinstance(exc, ValidationError | LookupError) and hasattr(exc, "field"):
            raise
        # pandas/numpy complaints about record values: a client error, not a server bug
        raise ValidationError(
            f"{op} records are invalid ({type(exc).__name__}: {exc})", field=op.split("_", 1)[1]
        ) from None
    raise ValidationError.for_field("op", op, f"must be one of {list(ADMIN_OPS)}")


@dataclass(frozen=True)
class RestoreReport:
    """What a restart did."""

    checkpoint: str | None
    checkpoint_seq: int
    replayed_decisions: int
    replayed_events: int
    replayed_admin: int
    skipped: int
    new_lineage: bool


class Checkpointer:
    """Writes and finds checkpoints in one folder.

    Parameters
    ----------
    directory
        Folder of the checkpoints (created if missing).
    keep
        How many of the newest checkpoints to keep.
    """

    def __init__(self, directory: str | os.PathLike[str], *, keep: int = 3) -> None:
        self.directory = Path(directory)
        self.keep = int(keep)

    def list(self) -> list[tuple[int, Path]]:
        """``(seq, path)`` of every checkpoint, newest first."""
        if not self.directory.is_dir():
            return []
        out = []
        for p in self.directory.iterdir():
            m = _NAME.match(p.name)
            if m:
                out.append((int(m.group(1)), p))
        return sorted(out, reverse=True)

    def path_for(self, seq: int) -> Path:
        """The file name of the checkpoint covering the journal up to ``seq``."""
        return self.directory / f"checkpoint-{seq:012d}.bandit"

    def save(self, engine: Engine, log: EventLog, seq: int) -> Path:
        """Save ``engine`` (which includes every journal entry up to ``seq``), then record ``seq`` in
        the log's meta and delete old checkpoints."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path_for(seq)
        engine.save(path)
        self.saved(log, seq)
        return path

    def saved(self, log: EventLog, seq: int) -> None:
        """After a checkpoint file for ``seq`` is on disk: record it and delete old ones."""
        log.set_meta("checkpoint_seq", str(seq))
        for _, old in self.list()[self.keep :]:
            with contextlib.suppress(OSError):  # another process may have removed it
                old.unlink()


def replay_journal(engine: Engine, log: EventLog, since: int) -> tuple[int, int, int, int]:
    """Replay journal entries after ``since`` through ``engine``.

    Returns ``(decisions, events, admin ops, skipped entries)``. Decisions of another model and
    events of decisions this engine does not know are skipped. A decision that does not choose its
    logged bundle raises :class:`~bandit_engine.errors.ConflictError` (the checkpoint and the log
    disagree).
    """
    n_dec = n_ev = n_ad = n_skip = 0
    for entry in log.entries_since(since):
        d = entry.data
        if entry.kind == "decision":
            if d["model_id"] != engine.model_id:
                n_skip += 1
                continue
            engine.replay_decision(
                d["decision_id"],
                d["x"],
                d["candidates"],
                now=float(d["timestamp"]),
                expected_bundle=d["bundle_id"],
            )
            n_dec += 1
        elif entry.kind == "event":
            if d["decision_id"] not in engine.attribution:
                n_skip += 1
                continue
            engine.report(
                d["decision_id"],
                d["type"],
                value=float(d["value"]),
                event_id=d["event_id"],
                at=float(d["timestamp"]),
            )
            n_ev += 1
        elif entry.kind == "admin":
            apply_admin(engine, d["op"], d["payload"])
            n_ad += 1
        # learned rows are re-derived by the engine itself (advance at each replayed call)
    return n_dec, n_ev, n_ad, n_skip


def restore_engine(
    base: Callable[[], Engine],
    log: EventLog,
    checkpoints: Checkpointer,
    *,
    engine_kwargs: Mapping[str, Any] | None = None,
) -> tuple[Engine, RestoreReport]:
    """Build the engine a (re)started server should serve with (see the module docstring).

    ``base`` builds the base engine; ``engine_kwargs`` (clock, on_learned ...) are passed to
    :meth:`Engine.load` for checkpoints and set on the base engine.
    """
    kwargs = dict(engine_kwargs or {})
    engine = base()
    for key, value in kwargs.items():
        setattr(engine, key, value)
    lineage = log.get_meta("engine_model_id")
    if lineage != engine.model_id:
        start = log.last_seq()
        if lineage is not None:
            logger.warning(
                "event log lineage %s differs from the served model %s: starting a new lineage "
                "at seq %d (older decisions are not replayed)",
                lineage,
                engine.model_id,
                start,
            )
        log.set_meta("engine_model_id", engine.model_id)
        log.set_meta("engine_base_seq", str(start))
        return engine, RestoreReport(None, start, 0, 0, 0, 0, True)
    base_seq = int(log.get_meta("engine_base_seq") or 0)
    since = base_seq
    used: str | None = None
    for seq, path in checkpoints.list():
        if seq < base_seq:
            break
        try:
            loaded = Engine.load(path, **kwargs)
        except ModelFileError as exc:
            logger.warning("checkpoint %s is unreadable (%s); trying an older one", path.name, exc)
            continue
        if loaded.model_id != engine.model_id:
            continue
        engine, since, used = loaded, seq, str(path)
        break
    try:
        with log.transaction():  # one commit for every learned row the replay re-derives
            n_dec, n_ev, n_ad, n_skip = replay_journal(engine, log, since)
    except ConflictError as exc:
        raise ConflictError(
            f"replaying the event log from seq {since} failed: {exc.message}", field="journal"
        ) from None
    return engine, RestoreReport(used, since, n_dec, n_ev, n_ad, n_skip, False)
