"""Differential privacy: releases of counts, sums, rates and uplifts with bounded per-user
contribution (:mod:`~bandit_engine.privacy.dp`, through OpenDP), accounted in the event log's
privacy-budget ledger (:mod:`bandit_engine.store.ledger`)."""

from .dp import Release, dp_count, dp_rate, dp_sum, dp_uplift

__all__ = ["Release", "dp_count", "dp_rate", "dp_sum", "dp_uplift"]
