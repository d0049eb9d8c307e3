r"""Context-free controls for catalogs too large to list: uniform and most-popular over a grid.

A catalog of every deal x course pair (:class:`~bandit_engine.records.PairGrid`, an unlisted
catalog) cannot run the listed baselines of :mod:`~bandit_engine.policies.baselines`, which keep
one row per candidate. These two decide over the grid directly, with exact propensities, so a
simulation or a live holdout at a million bundles still has its controls.

``grid_uniform`` plays a uniformly random pair among the grid's candidates: ``pi = 1 / n``.

``grid_popularity`` is :class:`~bandit_engine.policies.baselines.Popularity` (``by="mean"``) on
pairs: each pair's mean reward shrunk towards ``prior_mean`` with ``prior_weight``
pseudo-observations, ``(sum + prior_mean * prior_weight) / (count + prior_weight)``; a pair never
shown has the value ``prior_mean``. It plays the best value among the candidates (ties
uniformly, the never-shown pairs counted without being listed) and, with probability
``epsilon``, a uniformly random candidate::

    pi(a) = (1 - epsilon) [a in T] / |T| + epsilon / n

Its cost per decision is linear in the number of pairs ever shown, not in the grid's size. It
learns nothing a pair does not teach about itself: at a million pairs and a hundred thousand
decisions most pairs are never shown, which is what a context-free "most popular" control is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from ..errors import ValidationError
from ..records import PairChoice, PairGrid
from ._arrays import FloatArray, IntArray
from ._checks import SeedLike, check_finite, check_in_range, check_positive
from .base import BasePolicy

__all__ = ["GridPopularity", "GridUniform"]


def _random_pair(grid: PairGrid, rng: np.random.Generator) -> tuple[int, int]:
    """A uniformly random candidate pair of ``grid`` (positions ``(deal, course)``)."""
    nc = len(grid.course_ids)
    if grid.allowed is None:
        flat = int(rng.integers(len(grid.deal_ids) * nc))
    else:
        flat = int(np.flatnonzero(grid.allowed.ravel())[int(rng.integers(grid.size))])
    d, c = divmod(flat, nc)
    return d, c


def _check_grid(grid: PairGrid) -> int:
    n = grid.size
    if n == 0:
        raise ValidationError.for_field("grid", 0, "must have at least one candidate pair")
    return n


class _GridControl(BasePolicy):
    """Learning bookkeeping shared by the grid controls (no features are used)."""

    def update_pair(
        self,
        deal_id: str,
        course_id: str,
        deal_row: FloatArray,
        course_row: FloatArray,
        deal_cell: int,
        course_cell: int,
        reward: float,
        propensity: float = 1.0,
    ) -> None:
        """Learn ``reward`` for the pair ``(deal_id, course_id)``; the rows and cells are not
        used (context-free). ``propensity`` is checked, not used."""
        r = self._check_reward(reward, propensity)
        self._learn_pair(str(deal_id), str(course_id), r)
        self.n_updates_ += 1

    def _learn_pair(self, deal_id: str, course_id: str, reward: float) -> None:
        """Subclass hook."""


class GridUniform(_GridControl):
    """Uniformly random pair of the grid, ``pi = 1 / n`` (the grid version of ``uniform``)."""

    name: ClassVar[str] = "grid_uniform"

    def __init__(self, *, seed: SeedLike = None) -> None:
        super().__init__(seed=seed)

    def choose_grid(self, grid: PairGrid) -> PairChoice:
        n = _check_grid(grid)
        d, c = _random_pair(grid, self.rng_)
        return PairChoice(deal=d, course=c, propensity=1.0 / n, score=0.0, scored=0)


class GridPopularity(_GridControl):
    """Most popular pair by smoothed mean reward, over a grid (module docstring).

    Parameters
    ----------
    epsilon
        Probability of a uniformly random candidate instead of the best one, in [0, 1].
    prior_mean
        Value of a pair never shown, and the mean its estimate is shrunk towards.
    prior_weight
        Pseudo-observations of ``prior_mean`` per pair (``>= 0``).
    seed
        Seed of the tie-breaking and exploration draws.
    """

    name: ClassVar[str] = "grid_popularity"
    _param_names: ClassVar[tuple[str, ...]] = ("epsilon", "prior_mean", "prior_weight")

    def __init__(
        self,
        *,
        epsilon: float = 0.0,
        prior_mean: float = 0.0,
        prior_weight: float = 1.0,
        seed: SeedLike = None,
    ) -> None:
        super().__init__(seed=seed)
        self.epsilon = check_in_range("epsilon", epsilon, 0.0, 1.0)
        self.prior_mean = check_finite("prior_mean", prior_mean)
        self.prior_weight = check_positive("prior_weight", prior_weight, allow_zero=True)
        self._reset()

    def _reset(self) -> None:
        self.deal_slots_: dict[str, int] = {}
        self.course_slots_: dict[str, int] = {}
        self.pairs_: dict[tuple[int, int], int] = {}  # (deal slot, course slot) -> pair row
        self._deal: IntArray = np.zeros(64, dtype=np.intp)
        self._course: IntArray = np.zeros(64, dtype=np.intp)
        self._sum: FloatArray = np.zeros(64)
        self._count: FloatArray = np.zeros(64)
        self._grid_key: tuple[Any, Any, int, int] | None = None
        self._grid_pos: tuple[IntArray, IntArray] = (np.zeros(0, np.intp), np.zeros(0, np.intp))

    # -- learning -----------------------------------------------------------------------------
    def _learn_pair(self, deal_id: str, course_id: str, reward: float) -> None:
        d = self.deal_slots_.setdefault(deal_id, len(self.deal_slots_))
        c = self.course_slots_.setdefault(course_id, len(self.course_slots_))
        row = self.pairs_.get((d, c))
        if row is None:
            row = len(self.pairs_)
            if row == self._sum.shape[0]:
                grow = 2 * row
                self._deal = np.resize(self._deal, grow)
                self._course = np.resize(self._course, grow)
                self._sum = np.concatenate([self._sum, np.zeros(grow - row)])
                self._count = np.concatenate([self._count, np.zeros(grow - row)])
            self.pairs_[(d, c)] = row
            self._deal[row], self._course[row] = d, c
        self._sum[row] += reward
        self._count[row] += 1.0

    # -- choosing -----------------------------------------------------------------------------
    def _positions(self, grid: PairGrid) -> tuple[IntArray, IntArray]:
        """Each deal / course slot's position in ``grid`` (-1 where it is not a candidate),
        cached while the grid's id tuples and the slot counts stay the same."""
        key = (grid.deal_ids, grid.course_ids, len(self.deal_slots_), len(self.course_slots_))
        cached = self._grid_key
        if (
            cached is not None
            and cached[0] is key[0]
            and cached[1] is key[1]
            and cached[2:] == key[2:]
        ):
            return self._grid_pos
        dpos = np.full(len(self.deal_slots_), -1, dtype=np.intp)
        for i, deal in enumerate(grid.deal_ids):
            s = self.deal_slots_.get(deal)
            if s is not None:
                dpos[s] = i
        cpos = np.full(len(self.course_slots_), -1, dtype=np.intp)
        for j, course in enumerate(grid.course_ids):
            s = self.course_slots_.get(course)
            if s is not None:
                cpos[s] = j
        self._grid_key, self._grid_pos = key, (dpos, cpos)
        return dpos, cpos

    def choose_grid(self, grid: PairGrid) -> PairChoice:
        n = _check_grid(grid)
        rng = self.rng_
        m = len(self.pairs_)
        dpos, cpos = self._positions(grid)
        ld = dpos[self._deal[:m]]
        lc = cpos[self._course[:m]]
        inside = (ld >= 0) & (lc >= 0)
        if grid.allowed is not None and m:
            inside &= grid.allowed[np.maximum(ld, 0), np.maximum(lc, 0)]
        rows = np.flatnonzero(inside)
        w, pm = self.prior_weight, self.prior_mean
        count = self._count[rows]
        with np.errstate(invalid="ignore", divide="ignore"):
            values = (self._sum[rows] + pm * w) / (count + w)
        # prior_weight 0: a pair's value is its plain mean (count >= 1 for every row)
        n_unseen = n - rows.shape[0]
        best = float(values.max()) if rows.shape[0] else -math.inf
        if n_unseen > 0:
            best = max(best, pm)
        tied = rows[values == best]
        n_tied = tied.shape[0] + (n_unseen if pm == best else 0)
        eps = self.epsilon
        if eps > 0.0 and rng.random() < eps:
            d, c = _random_pair(grid, rng)
        else:
            k = int(rng.integers(n_tied))
            if k < tied.shape[0]:
                d, c = int(ld[tied[k]]), int(lc[tied[k]])
            else:
                d, c = self._unseen_pair(grid, ld[rows], lc[rows], rng)
        row = self.pairs_.get(self._slots_of(grid, d, c), -1)
        if row >= 0 and inside[row]:
            value = float((self._sum[row] + pm * w) / (self._count[row] + w))
        else:
            value = pm
        propensity = (1.0 - eps) * (1.0 / n_tied if value == best else 0.0) + eps / n
        return PairChoice(deal=d, course=c, propensity=propensity, score=value, scored=m)

    def _slots_of(self, grid: PairGrid, d: int, c: int) -> tuple[int, int]:
        return (
            self.deal_slots_.get(grid.deal_ids[d], -1),
            self.course_slots_.get(grid.course_ids[c], -1),
        )

    @staticmethod
    def _unseen_pair(
        grid: PairGrid, seen_d: IntArray, seen_c: IntArray, rng: np.random.Generator
    ) -> tuple[int, int]:
        """A uniformly random candidate pair never shown (``seen_*``: positions of the shown)."""
        nc = len(grid.course_ids)
        seen = set((seen_d * nc + seen_c).tolist())
        if len(seen) * 2 <= grid.size:
            # rejection: at least half the candidates are unseen, two draws expected at most
            while True:
                d, c = _random_pair(grid, rng)
                if d * nc + c not in seen:
                    return d, c
        free = (
            np.ones(len(grid.deal_ids) * nc, dtype=bool)
            if grid.allowed is None
            else grid.allowed.ravel().copy()
        )
        free[np.fromiter(seen, dtype=np.intp, count=len(seen))] = False
        flat = int(np.flatnonzero(free)[int(rng.integers(int(free.sum())))])
        d, c = divmod(flat, nc)
        return d, c

    # -- persistence ---------------------------------------------------------------------------
    def _learned_state(self) -> dict[str, Any]:
        m = len(self.pairs_)
        deal_of = list(self.deal_slots_)
        course_of = list(self.course_slots_)
        return {
            "pairs": [
                [deal_of[int(self._deal[i])], course_of[int(self._course[i])]] for i in range(m)
            ],
            "sum": self._sum[:m].tolist(),
            "count": self._count[:m].tolist(),
        }

    def _set_learned_state(self, state: Mapping[str, Any]) -> None:
        pairs = state.get("pairs", [])
        sums = np.asarray(state.get("sum", []), dtype=np.float64)
        counts = np.asarray(state.get("count", []), dtype=np.float64)
        if not isinstance(pairs, list) or sums.shape != (len(pairs),) or counts.shape != sums.shape:
            raise ValidationError.for_field(
                "state.pairs",
                len(pairs) if isinstance(pairs, list) else pairs,
                "must be a list of [deal_id, course_id] with one sum and one count each",
            )
        if not (np.isfinite(sums).all() and (counts >= 1).all()):
            raise ValidationError.for_field(
                "state.count", "invalid", "must be finite sums and counts >= 1"
            )
        self._reset()
        for (deal_id, course_id), s, k in zip(pairs, sums.tolist(), counts.tolist(), strict=True):
            self._learn_pair(str(deal_id), str(course_id), 0.0)
            row = self.pairs_[(self.deal_slots_[str(deal_id)], self.course_slots_[str(course_id)])]
            self._sum[row], self._count[row] = s, k
