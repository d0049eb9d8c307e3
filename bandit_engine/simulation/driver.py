"""``simulate(scenario)``: every seed of a scenario, then its uniform-log replay part if it has one.

It sits above the runner (:mod:`~bandit_engine.simulation.runner`, one seed's live run) and the
replay check (:mod:`~bandit_engine.simulation.uniform_log`), which both use the runner's pieces.
"""

from __future__ import annotations

from ..store import EventLog
from .arms import arm_specs, check_columns
from .runner import Progress, run_seed
from .scenario import Scenario
from .traces import SimulationResult
from .uniform_log import run_replay

__all__ = ["simulate"]


def simulate(
    scenario: Scenario,
    *,
    log: EventLog | None = None,
    progress: Progress | None = None,
) -> SimulationResult:
    """Run ``scenario``: every seed, then the replay part if the scenario has one.

    Parameters
    ----------
    scenario
        What to run (:func:`~bandit_engine.simulation.scenario.load_scenario`).
    log
        Optional :class:`~bandit_engine.store.EventLog` receiving every decision, event, learned
        reward and catalog change of every engine (model ids ``sim-<scenario>-s<seed>-<arm>``).
    progress
        Called with the number of rounds completed since the last call (see :func:`total_steps`).
    """
    check_columns(scenario)
    arms = arm_specs(scenario.policies, scenario.controls)
    run = scenario.run
    seeds = [
        run_seed(scenario, run.seed + k, arms=arms, log=log, progress=progress)
        for k in range(run.seeds)
    ]
    result = SimulationResult(scenario, arms, seeds)
    if scenario.replay is not None:
        result.replay = run_replay(scenario, log=log, progress=progress)
    return result
