"""Warm an engine up before it serves: pay the first decision's one-time costs at start.

Measured (``python benchmarks/probe_server_tail.py``, benchmarks/README.md): the first decision
of a fresh process took 261-378 ms (339 ms wall, 268 ms of it CPU, 8,559 page faults), the
worst single decision of a 60,000-decision run, and not a garbage collection: importing numba
and loading the compiled kernels from numba's cache on first use (one load per kernel
signature), plus the engine's own lazy caches (behaviour slots, the bundle-only pair columns).
A server answers its first request only after :func:`warm_up` has run the same code on the
engine's inputs with a throwaway copy of the policy.

What it touches: the engine's caches (built for every decision anyway) and module-level
compiled kernels; never the served policy's state, its random generator or the log, so the
served decisions are the ones an unwarmed engine would make. Limits: best effort (a failure is
logged and the first request pays as before); grid policies (``factored_*``) are not warmed.
"""

from __future__ import annotations

import logging
import time

from ..engine import Engine

__all__ = ["warm_up"]

logger = logging.getLogger("bandit_engine.service")


def warm_up(engine: Engine, *, kernels: bool = True) -> float:
    """Run a throwaway copy of the engine's policy on a cold-start user's inputs (choose, update,
    choose, probabilities). Returns the seconds it took.

    With ``kernels=False`` only the engine's own lazy caches are built: what the throwaway
    policy warms (imports, compiled kernels) is per process, so a decision server that loads a
    new model version every few seconds pays it once, at start, not with every version."""
    started = time.perf_counter()
    try:
        if engine.grid is not None:
            return 0.0
        x, ids, Z = engine.policy_inputs(None)  # builds the engine's own lazy caches too
        if not ids or not kernels:
            return time.perf_counter() - started
        policy = engine.policy
        clone = type(policy)(**policy.get_params())
        bind = getattr(clone, "bind_feature_names", None)
        if callable(bind):
            bind(engine.catalog.feature_names)  # a rule may name a bundle column
        if hasattr(policy, "static_columns"):
            clone.static_columns = policy.static_columns  # type: ignore[attr-defined]
        choice = clone.choose(x, ids, Z)
        i = choice.index
        clone.update(x, ids[i], Z[i], 0.0, max(float(choice.propensity), 1e-6))
        clone.choose(x, ids, Z)
        clone.probabilities(x, ids, Z)
    except Exception:  # the first request pays instead; serving must not depend on this
        logger.warning("warm-up failed; the first decision pays its one-time costs", exc_info=True)
    return time.perf_counter() - started
