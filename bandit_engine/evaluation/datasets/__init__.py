"""Loaders for logged bandit data: the Open Bandit Dataset layout and CSV / Parquet logs.

Both loaders validate what off-policy evaluation relies on (propensities in (0, 1], actions inside
the candidate set, rewards present) and report every problem at once, each with a count and the
first few row numbers. Row numbers are 1-based data row numbers: row 1 is the first row after the
header (the first row of a DataFrame).

The engine's own SQLite event log (:class:`~bandit_engine.store.EventLog`) is read by
:func:`load_engine_log`, which turns its decisions into the same :class:`LoggedData` and runs the
same validation.
"""

from __future__ import annotations

from .engine_log import EngineLogData, load_engine_log
from .obd import OBD_BEHAVIORS, OBD_CAMPAIGNS, ObdData, load_obd
from .tables import LoggedData, load_log, load_logs

__all__ = [
    "OBD_BEHAVIORS",
    "OBD_CAMPAIGNS",
    "EngineLogData",
    "LoggedData",
    "ObdData",
    "load_engine_log",
    "load_log",
    "load_logs",
    "load_obd",
]
