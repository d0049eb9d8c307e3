"""The output files of a simulation, written atomically.

:func:`write_outputs` writes ``summary.json``, ``curves.csv``, ``timings.json`` and the PNG plots
into a directory; :func:`check_output_paths` refuses, before a run, paths it could not write;
:func:`atomic_dir` and :func:`atomic_log` make sure a failed run leaves no half-written output
(an ``--out`` directory or a ``--log`` event log).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ConflictError, NotFoundError
from ..store import EventLog
from .runner import SIMULATION_HMAC_KEY
from .summary import curves, timings
from .traces import SimulationResult

__all__ = [
    "OUTPUT_FILES",
    "atomic_dir",
    "atomic_log",
    "check_output_paths",
    "dumps",
    "write_outputs",
]

FloatArray = NDArray[np.float64]

#: Files ``write_outputs`` may create (an existing ``--out`` directory holding only these is
#: replaced; any other content makes the run refuse to touch it).
OUTPUT_FILES = (
    "summary.json",
    "curves.csv",
    "timings.json",
    "segments.json",
    "reward_regret.png",
    "uplift.png",
    "cold_start.png",
    "drift.png",
)

# -- curves.csv -------------------------------------------------------------------------------
_CURVE_COLUMNS = (
    "policy",
    "role",
    "round",
    "cumulative_reward",
    "cumulative_expected_reward",
    "cumulative_oracle_reward",
    "cumulative_regret",
    "average_reward",
)


def _csv_field(value: str) -> str:
    if any(ch in value for ch in ',"\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def _curves_csv(result: SimulationResult, data: dict[str, dict[str, FloatArray]]) -> str:
    lines = [",".join(_CURVE_COLUMNS)]
    roles = {a.label: a.role for a in result.arms}
    for label, cols in data.items():
        for i in range(cols["round"].shape[0]):
            row = [_csv_field(label), roles[label], str(int(cols["round"][i]))]
            row += [f"{float(cols[c][i]):.6g}" for c in _CURVE_COLUMNS[3:]]
            lines.append(",".join(row))
    return "\n".join(lines) + "\n"


# -- writing ----------------------------------------------------------------------------------
def dumps(summary: dict[str, Any]) -> str:
    """``summary.json`` text: strict JSON, fixed key order, two-space indent, final newline."""
    return json.dumps(summary, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_outputs(result: SimulationResult, summary: dict[str, Any], directory: Path) -> list[str]:
    """Write every output file into ``directory`` (which must exist); returns the file names."""
    directory = Path(directory)
    (directory / "summary.json").write_text(dumps(summary), encoding="utf-8")
    data = curves(result)
    (directory / "curves.csv").write_text(_curves_csv(result, data), encoding="utf-8")
    (directory / "timings.json").write_text(
        json.dumps(timings(result), indent=2) + "\n", encoding="utf-8"
    )
    from .plots import plot_all
    from .segments import segment_reports

    # the live report's segments and conversion metrics, from the same code (bandit report)
    segments = {k: r.to_dict() for k, r in segment_reports(result).items()}
    (directory / "segments.json").write_text(
        json.dumps(segments, indent=2, allow_nan=False) + "\n", encoding="utf-8"
    )
    return [
        "summary.json",
        "curves.csv",
        "timings.json",
        "segments.json",
        *plot_all(summary, data, directory),
    ]


def check_output_paths(
    out: str | os.PathLike[str] | None, log: str | os.PathLike[str] | None
) -> None:
    """Fail before a run that could not write its outputs: a missing parent folder, an ``--out``
    directory holding files other than a previous report, an existing ``--log`` file."""
    if out is not None:
        p = Path(out)
        if not p.parent.resolve().is_dir():
            raise NotFoundError.for_field("--out", str(out), "is in a folder that does not exist")
        if p.exists():
            if not p.is_dir():
                raise ConflictError.for_field("--out", str(out), "exists and is not a directory")
            foreign = sorted(c.name for c in p.iterdir() if c.name not in OUTPUT_FILES)
            if foreign:
                raise ConflictError.for_field(
                    "--out",
                    str(out),
                    f"holds files that are not a simulation report ({foreign[:3]}); "
                    "choose an empty or new directory",
                )
    if log is not None:
        q = Path(log)
        if not q.parent.resolve().is_dir():
            raise NotFoundError.for_field("--log", str(log), "is in a folder that does not exist")
        if q.exists():
            raise ConflictError.for_field(
                "--log", str(log), "already exists; remove it or choose another file"
            )


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary directory next to ``target``; on success it replaces ``target``
    (a previous report there is removed), on failure it is deleted and ``target`` is untouched."""
    dest = Path(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent.resolve()))
    try:
        yield tmp
        old: Path | None = None
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent.resolve()))
            old.rmdir()
            dest.rename(old)
        tmp.rename(dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_log(target: str | os.PathLike[str]) -> Iterator[EventLog]:
    """Yield an :class:`EventLog` written to a temporary file next to ``target`` and renamed to
    ``target`` when the block succeeds; deleted (with its WAL files) when it fails."""
    dest = Path(target)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.partial-", dir=dest.parent.resolve())
    os.close(fd)
    os.unlink(name)
    tmp = Path(name)
    log = EventLog(tmp, hmac_key=SIMULATION_HMAC_KEY, synchronous="OFF")
    try:
        yield log
        log.close()
        if dest.exists():
            raise ConflictError.for_field("--log", str(target), "appeared during the run")
        tmp.rename(dest)
    except BaseException:
        log.close()
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(tmp) + suffix).unlink(missing_ok=True)
        raise
