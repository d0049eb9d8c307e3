"""Live measurement: what the traffic did, the policy against its holdout groups, per segment.

The same functions read a live event log (:func:`report_from_log`, SQLite or PostgreSQL) and a
simulated launch (:func:`report_from_table` on :func:`table_from_records`), so both read alike.

Layout: :mod:`~bandit_engine.reporting.table` (decisions as columns), :mod:`~bandit_engine.reporting.aggregate`
(the sufficient statistics per segment and group: the clean intermediate a differentially private
release would noise), :mod:`~bandit_engine.reporting.stats` (delta-method intervals clustered by
user, sample-ratio mismatch), :mod:`~bandit_engine.reporting.report` (the report),
:mod:`~bandit_engine.reporting.render` (text, CSV, PNG), :mod:`~bandit_engine.reporting.export`
(decisions, events and learned rewards as Parquet or CSV for BI tools),
:mod:`~bandit_engine.reporting.live` (the same report kept up to date incrementally: the
dashboard's), :mod:`~bandit_engine.reporting.dp_report` (a differentially private release of
counts, rates and uplifts, spent from the privacy ledger).
"""

from .aggregate import BREAKDOWNS, Aggregates, aggregate
from .report import (
    Report,
    build_report,
    experiment_of,
    report_from_log,
    report_from_table,
    sample_ratio,
)
from .stats import RatioStat, srm_test, uplift
from .table import DecisionTable, table_from_log, table_from_records

__all__ = [
    "BREAKDOWNS",
    "Aggregates",
    "DecisionTable",
    "RatioStat",
    "Report",
    "aggregate",
    "build_report",
    "experiment_of",
    "report_from_log",
    "report_from_table",
    "sample_ratio",
    "srm_test",
    "table_from_log",
    "table_from_records",
    "uplift",
]
