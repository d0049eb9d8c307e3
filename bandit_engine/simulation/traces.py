"""What a run recorded: per round and per engine, the choices, outcomes and the oracle.

These records are what the summary (:mod:`~bandit_engine.simulation.summary`), the curves and the
plots are computed from; the runner (:mod:`~bandit_engine.simulation.runner`) fills them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .arms import ArmSpec
from .scenario import Scenario

__all__ = ["ArmTrace", "SeedTrace", "SimulationResult"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]


@dataclass
class ArmTrace:
    """What one engine did in one seed, one entry per round."""

    expected: FloatArray  # expected reward of the chosen bundle
    reward: FloatArray  # realized reward (all events, the RewardSpec's weights and cap)
    click: BoolArray
    order: BoolArray
    value: FloatArray  # order value (0 without an order)
    chose_new: BoolArray  # chose a bundle added mid-run
    n_late: int = 0  # events the engine counted as late (outside the window)
    n_learned: int = 0  # decisions whose window closed with events
    seconds: float = 0.0  # time spent inside this engine's decide/report calls
    bundle: list[str] = field(default_factory=list)  # the chosen bundle per round (reports)

    @classmethod
    def empty(cls, n: int) -> ArmTrace:
        return cls(
            np.zeros(n),
            np.zeros(n),
            np.zeros(n, dtype=bool),
            np.zeros(n, dtype=bool),
            np.zeros(n),
            np.zeros(n, dtype=bool),
            bundle=[""] * n,
        )


@dataclass
class SeedTrace:
    """One seed of a run: the stream, the oracle and every engine's trace."""

    seed: int
    times: FloatArray
    users: IntArray
    oracle: FloatArray  # best expected reward among the offered candidates
    best_old: FloatArray  # best among bundles present at the start (-inf if none offered)
    best_new: FloatArray  # best among bundles added mid-run (-inf if none offered)
    n_candidates: IntArray
    wave_rank: IntArray  # j-th decision (0-based) of a new-user wave member, -1 otherwise
    arms: dict[str, ArmTrace]
    added_at: int | None = None  # round at which bundles were added
    drift_at: int | None = None  # first round at or after the drift start
    world_seconds: float = 0.0
    wall_seconds: float = 0.0
    new_bundles: tuple[str, ...] = ()
    # per world user index: platform presence and city (what the segment report reads)
    user_presence: tuple[str, ...] = ()
    user_city: tuple[str, ...] = ()


@dataclass
class SimulationResult:
    """A whole run: the scenario, the engines compared, one :class:`SeedTrace` per seed and the
    optional replay part."""

    scenario: Scenario
    arms: list[ArmSpec]
    seeds: list[SeedTrace]
    replay: Any = None  # bandit_engine.simulation.uniform_log.ReplayResult
    extra: dict[str, Any] = field(default_factory=dict)
