"""Catalog changes by name: one function applies them, live and when the journal is rolled forward.

The HTTP admin endpoints, the simulator's mid-run catalog changes and the roll-forward after a restart
all go through :func:`apply_admin`, so a logged change does exactly what it did the first time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from ..engine import Engine
from ..errors import ConfigError, ValidationError
from ..policies.apprentice import ApprenticePolicy

__all__ = ["ADMIN_OPS", "apply_admin"]

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
    if op == "apprentice_switch":  # not a catalog change, but journaled and replayed the same way
        if not isinstance(engine.policy, ApprenticePolicy):
            raise ConfigError.for_field(
                "policy", engine.policy.name, "is not in apprentice mode (see --apprentice)"
            )
        engine.policy.switch()
        return []
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
