"""Checkpoint files: the whole engine saved atomically, named after the journal entry it includes.

A checkpoint is :meth:`Engine.save <bandit_engine.engine.Engine.save>` (a temporary file renamed into
place) under the name ``checkpoint-<seq>.bandit``, where ``seq`` is the last journal entry of the
event log the engine had applied. :meth:`LoggedEngine.restore
<bandit_engine.service.LoggedEngine.restore>` loads the newest readable one and rolls the journal
forward from its ``seq``.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..engine import Engine
from ..errors import ConfigError
from ..store import EventStore

__all__ = ["Checkpointer", "RestoreReport"]

_NAME = re.compile(r"^checkpoint-(\d{12})\.bandit$")


@dataclass(frozen=True)
class RestoreReport:
    """What a restart did."""

    checkpoint: str | None
    checkpoint_seq: int
    redone_decisions: int
    redone_events: int
    redone_admin: int
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

    def check_writable(self, field: str = "directory") -> None:
        """Create the folder if needed and check that a file can be written there, so that a
        server refuses to start instead of failing at every checkpoint."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.directory, prefix=".write-check-"):
                pass
        except OSError as exc:
            raise ConfigError.for_field(
                field, str(self.directory), f"must be a writable folder ({exc.strerror or exc})"
            ) from None

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

    def save(self, engine: Engine, log: EventStore, seq: int) -> Path:
        """Save ``engine`` (which includes every journal entry up to ``seq``), then record ``seq`` in
        the log's meta and delete old checkpoints."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path_for(seq)
        engine.save(path)
        self.saved(log, seq)
        return path

    def keep_only(self, path: Path) -> None:
        """Delete every checkpoint but ``path`` (after forgetting a user, the older ones still
        hold that user's pending decisions)."""
        for _, old in self.list():
            if old != path:
                with contextlib.suppress(OSError):
                    old.unlink()

    def saved(self, log: EventStore, seq: int) -> None:
        """After a checkpoint file for ``seq`` is on disk: record it and delete old ones."""
        log.set_meta("checkpoint_seq", str(seq))
        for _, old in self.list()[self.keep :]:
            with contextlib.suppress(OSError):  # another process may have removed it
                old.unlink()
