"""Per-seed randomness of a run: independent generators, the arrival stream, the shared draws.

Common random numbers (CRN)
---------------------------
For each seed the runner draws once: the world, the arrival stream (times and users), and per
round a click uniform, an order uniform, a value-noise normal and a delay. Every engine sees the
same user at the same time and the same draws: bundle ``b`` is clicked iff ``U_click < p_click(b)``
and ordered iff also ``U_order < p_order(b)``. Two policies choosing the same bundle therefore get
identical outcomes, and two that differ are compared on the same luck, so uplift is measured
paired (its variance is that of the difference, not of each arm). Policies also share one
seed per run seed (unless a spec sets ``seed``): two identical policies behave identically.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .scenario import OrderSettings

__all__ = ["Draws", "SeedStreams", "Stream", "draw_outcomes", "seed_streams"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]

_HOUR = 3600.0
# Order-value noise is log-normal with mean 1: exp(sigma z - sigma^2 / 2).


@dataclass(frozen=True)
class SeedStreams:
    """Independent generators of one run seed (``numpy.random.SeedSequence(seed).spawn``)."""

    world_seed: int
    stream: np.random.Generator
    outcomes: np.random.Generator
    policy_seed: int
    events: np.random.Generator
    replay: np.random.Generator


def seed_streams(seed: int, world_seed: int | None = None) -> SeedStreams:
    """The generators of run seed ``seed``: world, arrivals, outcomes, policies, cold-start
    events, replay. Spawned children are independent, so adding a cold-start part does not change
    the arrival stream or the outcome draws of the same seed. ``world_seed`` overrides the world's
    seed (one world for every run seed)."""
    ss = np.random.SeedSequence(seed)
    world, stream, outcomes, policy, events, replay = ss.spawn(6)
    return SeedStreams(
        world_seed=int(world.generate_state(1)[0]) if world_seed is None else world_seed,
        stream=np.random.default_rng(stream),
        outcomes=np.random.default_rng(outcomes),
        policy_seed=int(policy.generate_state(1)[0]),
        events=np.random.default_rng(events),
        replay=np.random.default_rng(replay),
    )


@dataclass(frozen=True)
class Stream:
    """Arrivals: ``times`` (sorted epoch seconds) and ``users`` (world user indices)."""

    times: FloatArray
    users: IntArray

    def __len__(self) -> int:
        return int(self.times.shape[0])

    def subset(self, keep: BoolArray | IntArray) -> Stream:
        return Stream(self.times[keep], self.users[keep])


@dataclass(frozen=True)
class Draws:
    """The common random numbers of a stream, one entry per round, shared by every engine."""

    click: FloatArray  # uniform: clicked iff click < p_click
    order: FloatArray  # uniform: ordered (after a click) iff order < p_order
    value: FloatArray  # log-normal mean-one factor on the order value
    delay: FloatArray  # order delay in seconds (0 without delays)

    def subset(self, keep: BoolArray | IntArray) -> Draws:
        return Draws(self.click[keep], self.order[keep], self.value[keep], self.delay[keep])


def draw_outcomes(n: int, rng: np.random.Generator, orders: OrderSettings) -> Draws:
    """Draw the per-round uniforms, value noise and order delays for ``n`` rounds."""
    u = rng.random((2, n))
    sigma = orders.value_noise
    value = np.exp(sigma * rng.standard_normal(n) - 0.5 * sigma * sigma)
    if orders.delay == "exponential":
        delay = rng.exponential(orders.mean_delay_hours * _HOUR, size=n)
    else:
        delay = np.zeros(n)
    return Draws(u[0].copy(), u[1].copy(), value, delay)
