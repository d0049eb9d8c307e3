r"""Factored bandits for (deal, course) catalogs too large to list: a shared linear model plus
deal, course and bundle effects, explored by UCB (:class:`FactoredUCB`) or Thompson sampling
(:class:`FactoredTS`), with an exact argmax over every eligible pair.

Model
-----
For user context and the pair of deal ``d`` and course ``c``::

    reward = h . beta + a_d + b_c + e_dc + noise,        h = [1, s_D(d), s_C(c), cell(d, c)]

``s_D`` / ``s_C`` are the deal's and the course's sides of the pair row (their attributes and
user x part terms such as profile-match flags; :class:`~bandit_engine.records.PairGrid`),
``cell(d, c)`` the one-hot of the pairing cell (for example cuisine x topic), ``beta`` shared by
every pair, ``a_d`` / ``b_c`` the deal's and course's own quality learned from every bundle that
contains them, ``e_dc`` the bundle's own residual. A pair never shown is scored from its parts
(``e_dc`` at its prior mean 0), so what one bundle teaches moves all bundles of its deal, its
course and its cell. Priors: ``beta ~ N(0, sigma^2 / l2 I)``, ``a_d ~ N(0, sigma^2 / l2_deal)``,
``b_c ~ N(0, sigma^2 / l2_course)``, ``e_dc ~ N(0, sigma^2 / l2_bundle)``.

Posterior: assumed density filtering
------------------------------------
The exact posterior couples every deal, course and bundle that were ever shown together: a dense
matrix over millions of parameters. The policy keeps instead a *factorised* Gaussian, one block
for ``beta`` (dense ``k x k``, ``k = 1 + k_D + k_C + cells``) and one independent scalar per deal,
course and bundle seen, and after each observation projects the exact one-step update back onto
that family: assumed density filtering (Minka, 2001), as AdPredictor (Graepel et al., ICML 2010)
and the diagonal-posterior Thompson sampling of Chapelle and Li (NeurIPS 2011) do for sparse
one-hot features. For the Gaussian likelihood the projection is the joint Kalman step with the
cross-covariances dropped: with ``P`` the ``beta`` block, ``p_d``, ``p_c``, ``p_dc`` the scalar
variances (all in units of ``sigma^2``) and ``delta = r - h . beta - a_d - b_c - e_dc``::

    S      = h' P h + p_d + p_c + p_dc + 1
    beta  += P h delta / S          P   -= P h h' P / S
    a_d   += p_d delta / S          p_d -= p_d^2 / S      (same for b_c, e_dc)

Each block sees the others' uncertainty as extra noise, so early feedback moves the parts that are
most uncertain. The ``beta`` block is exactly a weighted ridge regression (``A += h h' / c``,
``b += h (r - a_d - b_c - e_dc) / c`` with ``c = S - h' P h``), kept as ``A`` and ``b`` with ``P =
A^{-1}`` updated by Sherman-Morrison and re-inverted exactly every ``refresh`` updates. Dropping
the cross-covariances is the approximation: a deal and a course that were always shown together
share their credit by their variances rather than by the exact joint solution
(``benchmarks/bench_large_catalog.py`` measures the difference against the exact joint posterior).

Scores and the exact argmax
---------------------------
``FactoredUCB`` plays the pair maximising ``mean + w sqrt(var)`` with ``var = h' P h + p_d + p_c +
p_dc`` and ``w`` the exploration scale (``alpha="auto"``: ``kappa * sigma_hat``, the running
standard deviation of learned rewards, as :mod:`~bandit_engine.policies.pair`). ``FactoredTS``
draws ``beta``, ``a`` and ``b`` from the posterior (scaled by ``w``) and plays the best sampled
pair; bundle effects enter at their posterior means (sampling one per pair would cost a normal
draw for each of ``n_D x n_C`` pairs), so a never-shown pair explores through its parts only.
Neither scores every pair: each deal gets an upper bound on its best pair, computed in
O(deals + cells x courses) (:meth:`FactoredUCB._ucb_bound`: the smaller of a triangle-inequality
bound in the ``P`` norm and a tighter one around the grid's mean deal, which is nearly exact when
deals resemble each other), and :func:`~bandit_engine.policies._pair_search.grid_argmax` scores
deals in decreasing order of bound until no unscored pair can win. For TS the sampled score
separates exactly (deal part + course-and-cell part), so its bound is the maximum of the course
part per cell row. The result, ties included, is the argmax over all pairs; a mask
(``PairGrid.allowed``, an explicit bundle list) leaves out the pairs that are not bundles.

Propensities
------------
``FactoredUCB``: ``(1 - eps) [pair in ties] / |ties| + eps / n`` over the ``n`` pairs of the grid
(exact). ``FactoredTS``: ``M + 1`` posterior draws (``M = propensity_samples``) and the argmax of
one of them picked uniformly, so the logged propensity is exactly the share of draws the played
pair wins (mixed with ``eps``).

Limits
------
Memory is O(k^2 + deals + courses + bundles seen). The bound is loose while the model is fresh
(every pair ties at the start and all are scored once); it tightens as the means separate.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from ..errors import ValidationError
from ..records import PairChoice, PairGrid
from ._arrays import FloatArray, IntArray
from ._checks import SeedLike, check_in_range, check_int, check_positive
from ._grid_cache import GridCache, PreparedGrid
from ._linalg import rank1_update, spd_inverse
from ._pair_search import GridArgmax, grid_argmax
from .base import BasePolicy
from .scale import RewardMoments, check_scale

__all__ = ["FactoredTS", "FactoredUCB"]

# The bounds are computed by different arithmetic than the exact scores; pad them so rounding
# can never exclude a pair that ties with the best.
_BOUND_PAD = 1e-9
# Points at which the centroid bound tabulates its course part (see FactoredUCB._ucb_bound).
_BOUND_EDGES = 16


@functools.lru_cache(maxsize=64)
def _edge_index(n: int) -> IntArray:
    """Positions of ``_BOUND_EDGES`` quantiles in a sorted array of ``n`` (the last included)."""
    out: IntArray = np.linspace(0, n - 1, _BOUND_EDGES).round().astype(np.intp)
    return out


class _Effects:
    """Independent Gaussian scalars keyed by id; slot 0 holds the prior (unknown ids read it)."""

    __slots__ = ("mean", "prior_var", "slot", "var")

    def __init__(self, prior_var: float) -> None:
        self.prior_var = prior_var
        self.slot: dict[str, int] = {}
        self.mean = np.zeros(8)
        self.var = np.full(8, prior_var)

    def __len__(self) -> int:
        return len(self.slot)

    def slots(self, ids: Sequence[str]) -> IntArray:
        get = self.slot.get
        return np.fromiter((get(i, 0) for i in ids), dtype=np.intp, count=len(ids))

    def add(self, key: str) -> int:
        s = self.slot.get(key)
        if s is None:
            s = len(self.slot) + 1
            if s >= self.mean.shape[0]:
                cap = 2 * self.mean.shape[0]
                self.mean = np.concatenate([self.mean, np.zeros(cap - self.mean.shape[0])])
                self.var = np.concatenate(
                    [self.var, np.full(cap - self.var.shape[0], self.prior_var)]
                )
            self.slot[key] = s
        return s

    def to_state(self) -> dict[str, Any]:
        n = len(self.slot) + 1
        return {
            "ids": list(self.slot),
            "mean": self.mean[1:n].tolist(),
            "var": self.var[1:n].tolist(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], prior_var: float, name: str) -> _Effects:
        ids = [str(i) for i in state.get("ids", [])]
        mean = np.asarray(state.get("mean", []), dtype=np.float64)
        var = np.asarray(state.get("var", []), dtype=np.float64)
        if not (len(ids) == mean.shape[0] == var.shape[0]) or len(set(ids)) != len(ids):
            raise ValidationError.for_field(
                f"state.{name}", len(ids), "must hold one mean and one variance per distinct id"
            )
        if not (np.isfinite(mean).all() and np.isfinite(var).all() and (var > 0).all()):
            raise ValidationError.for_field(
                f"state.{name}", "non-finite", "must hold finite means and positive variances"
            )
        out = cls(prior_var)
        for key in ids:
            out.add(key)
        out.mean[1 : len(ids) + 1] = mean
        out.var[1 : len(ids) + 1] = var
        return out


class _Factored(BasePolicy):
    """State, learning and the shared pieces of scoring of the factored policies."""

    _param_names: ClassVar[tuple[str, ...]] = (
        "alpha",
        "kappa",
        "sigma0",
        "n0",
        "l2",
        "l2_deal",
        "l2_course",
        "l2_bundle",
        "epsilon",
        "refresh",
    )

    def __init__(
        self,
        *,
        alpha: float | str = "auto",
        kappa: float = 0.25,
        sigma0: float = 1.0,
        n0: float = 20.0,
        l2: float = 1.0,
        l2_deal: float = 4.0,
        l2_course: float = 4.0,
        l2_bundle: float = 4.0,
        epsilon: float = 0.0,
        refresh: int = 500,
        seed: SeedLike = None,
    ) -> None:
        super().__init__(seed=seed)
        self.alpha = check_scale("alpha", alpha)
        self.kappa = check_positive("kappa", kappa, allow_zero=True)
        self.sigma0 = check_positive("sigma0", sigma0)
        self.n0 = check_positive("n0", n0)
        self.l2 = check_positive("l2", l2)
        self.l2_deal = check_positive("l2_deal", l2_deal)
        self.l2_course = check_positive("l2_course", l2_course)
        self.l2_bundle = check_positive("l2_bundle", l2_bundle)
        self.epsilon = check_in_range("epsilon", epsilon, 0.0, 1.0)
        self.refresh = check_int("refresh", refresh, minimum=1)
        self.moments_ = RewardMoments()
        self.shape_: tuple[int, int, int, int] | None = None  # k_D, k_C, deal cells, course cells
        self._alloc(1)
        self.deals_ = _Effects(1.0 / self.l2_deal)
        self.courses_ = _Effects(1.0 / self.l2_course)
        self._reset_bundles()
        self._grids = GridCache()

    # -- state -------------------------------------------------------------------------------
    def _alloc(self, k: int) -> None:
        self.A_ = self.l2 * np.eye(k)
        self.P_ = np.eye(k) / self.l2
        self.b_ = np.zeros(k)
        self._beta: FloatArray | None = None
        self._since_refresh = 0
        self._cols: IntArray = np.zeros(0, dtype=np.intp)  # reused index of h's non-zero columns

    def _reset_bundles(self) -> None:
        self.bundles_ = _Effects(1.0 / self.l2_bundle)
        self._bundle_course: IntArray = np.zeros(8, dtype=np.intp)  # course slot per bundle slot
        self._by_deal: dict[int, list[int]] = {}  # deal slot -> its bundle slots
        self._emax: FloatArray = np.zeros(8)  # deal slot -> max(0, largest bundle mean)

    @property
    def scale(self) -> float:
        """The exploration scale in use: ``alpha``, or ``kappa * sigma_hat`` when ``"auto"``."""
        if self.alpha != "auto":
            return float(self.alpha)
        return self.kappa * self.moments_.sigma(self.sigma0, self.n0)

    @property
    def n_shared(self) -> int:
        """Width ``k`` of the shared vector ``h`` (0 before the first grid or update)."""
        return 0 if self.shape_ is None else int(self.b_.shape[0])

    def _layout(self, k_d: int, k_c: int, g: int, h: int, field: str) -> None:
        shape = (k_d, k_c, g, h)
        if self.shape_ is None:
            if min(g, h) < 1:
                raise ValidationError.for_field(field, (g, h), "must have at least one cell")
            self.shape_ = shape
            self._alloc(1 + k_d + k_c + g * h)
        elif self.shape_ != shape:
            raise ValidationError.for_field(
                field,
                f"(k_deal, k_course, deal cells, course cells) = {shape}",
                f"must match the policy's {self.shape_}",
            )

    def _beta_hat(self) -> FloatArray:
        if self._beta is None:
            self._beta = self.P_ @ self.b_
        return self._beta

    # -- learning ----------------------------------------------------------------------------
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
        """Learn ``reward`` for the pair shown: its ids, its deal and course rows (as in the grid
        it was chosen from) and its pairing cell. ``propensity`` is checked, not used (the model
        is fitted on the rewards of the pairs it chose, as every on-policy bandit here)."""
        reward = self._check_reward(reward, propensity)
        hd = self._as_float_array(deal_row, "deal_row")
        hc = self._as_float_array(course_row, "course_row")
        if hd.ndim != 1 or hc.ndim != 1:
            raise ValidationError.for_field("deal_row", hd.shape, "must be 1-d (with course_row)")
        if not (np.isfinite(hd).all() and np.isfinite(hc).all()):
            raise ValidationError.for_field(
                "deal_row", "non-finite", "must be finite (with course_row)"
            )
        if self.shape_ is None:
            raise ValidationError.for_field(
                "update_pair", deal_id, "needs a grid first: call choose_grid before learning"
            )
        _k_d, _k_c, g, h_cells = self.shape_
        self._layout(hd.shape[0], hc.shape[0], g, h_cells, "deal_row")
        cell = self._cell_index(deal_cell, course_cell)
        deal_id, course_id = str(deal_id), str(course_id)
        new_deal = deal_id not in self.deals_.slot
        new_course = course_id not in self.courses_.slot
        d = self.deals_.add(deal_id)
        c = self.courses_.add(course_id)
        if new_deal:
            self._grids.new_deal(deal_id, d)
        if new_course:
            self._grids.new_course(course_id, c)
        e = self._bundle_slot(d, c)
        self._learn(hd, hc, cell, d, c, e, reward)
        self._grids.bundle(deal_id, course_id, self.bundles_.mean[e], self.bundles_.var[e])

    def _cell_index(self, deal_cell: int, course_cell: int) -> int:
        assert self.shape_ is not None
        k_d, k_c, g, h = self.shape_
        if not (isinstance(deal_cell, int | np.integer) and 0 <= deal_cell < g):
            raise ValidationError.for_field("deal_cell", deal_cell, f"must be an int in [0, {g})")
        if not (isinstance(course_cell, int | np.integer) and 0 <= course_cell < h):
            raise ValidationError.for_field(
                "course_cell", course_cell, f"must be an int in [0, {h})"
            )
        return 1 + k_d + k_c + int(deal_cell) * h + int(course_cell)

    def _bundle_slot(self, d: int, c: int) -> int:
        key = f"{d}:{c}"
        known = self.bundles_.slot.get(key)
        if known is not None:
            return known
        e = self.bundles_.add(key)
        if e >= self._bundle_course.shape[0]:
            grown = np.zeros(self.bundles_.mean.shape[0], dtype=np.intp)
            grown[: self._bundle_course.shape[0]] = self._bundle_course
            self._bundle_course = grown
        self._bundle_course[e] = c
        self._by_deal.setdefault(d, []).append(e)
        if d >= self._emax.shape[0]:
            grown_f = np.zeros(self.deals_.mean.shape[0])
            grown_f[: self._emax.shape[0]] = self._emax
            self._emax = grown_f
        return e

    def _learn(
        self, hd: FloatArray, hc: FloatArray, cell: int, d: int, c: int, e: int, r: float
    ) -> None:
        assert self.shape_ is not None
        k_d = self.shape_[0]
        lo, hi = 1 + k_d, 1 + k_d + hc.shape[0]
        h = np.zeros(self.b_.shape[0])
        h[0] = 1.0
        h[1:lo] = hd
        h[lo:hi] = hc
        h[cell] = 1.0
        # only the non-zero columns of h touch P (the cell block is one-hot)
        cols = self._cols
        if cols.shape[0] != hi + 1:
            cols = self._cols = np.arange(hi + 1, dtype=np.intp)
        cols[hi] = cell
        Ph = self.P_[:, cols] @ h[cols]
        hPh = float(h[cols] @ Ph[cols])
        dm, cm, em = self.deals_.mean, self.courses_.mean, self.bundles_.mean
        dv, cv, ev = self.deals_.var, self.courses_.var, self.bundles_.var
        p_other = 1.0 + dv[d] + cv[c] + ev[e]
        S = hPh + p_other
        effects = dm[d] + cm[c] + em[e]
        delta = r - float(h @ self._beta_hat()) - effects
        # beta: weighted ridge with the other blocks' variance as extra noise (see module doc)
        rank1_update(self.A_, 1.0 / p_other, h, h)
        self.b_ += h * ((r - effects) / p_other)
        rank1_update(self.P_, -1.0 / S, Ph, Ph)
        self._beta = None
        self._since_refresh += 1
        if self._since_refresh >= self.refresh:
            self.P_ = spd_inverse(self.A_)
            self._since_refresh = 0
        for mean, var, i in ((dm, dv, d), (cm, cv, c), (em, ev, e)):
            v = var[i]
            mean[i] += v * delta / S
            var[i] = v - v * v / S
        self._refresh_emax(d)
        self.moments_.add(r)
        self.n_updates_ += 1

    def _refresh_emax(self, d: int) -> None:
        slots = self._by_deal.get(d)
        self._emax[d] = 0.0 if not slots else max(0.0, float(self.bundles_.mean[slots].max()))

    # -- scoring pieces ----------------------------------------------------------------------
    def _prepare(self, grid: PairGrid) -> PreparedGrid:
        if not isinstance(grid, PairGrid):
            raise ValidationError.for_field("grid", type(grid).__name__, "must be a PairGrid")
        n_d, n_c = len(grid.deal_ids), len(grid.course_ids)
        if n_d == 0 or n_c == 0:
            raise ValidationError.for_field("grid", (n_d, n_c), "must have deals and courses")
        D, C = grid.deal_features, grid.course_features
        if D.ndim != 2 or C.ndim != 2 or D.shape[0] != n_d or C.shape[0] != n_c:
            raise ValidationError.for_field(
                "grid.deal_features",
                (D.shape, C.shape),
                f"must be ({n_d}, k_deal) and ({n_c}, k_course) arrays",
            )
        if not (np.isfinite(D).all() and np.isfinite(C).all()):
            raise ValidationError.for_field("grid.deal_features", "non-finite", "must be finite")
        dc, cc = grid.deal_cell, grid.course_cell
        al = grid.allowed
        if al is not None and (al.shape != (n_d, n_c) or al.dtype != np.bool_ or not al.any()):
            raise ValidationError.for_field(
                "grid.allowed",
                getattr(al, "shape", al),
                f"must be a ({n_d}, {n_c}) boolean mask with at least one pair",
            )
        if (
            dc.shape != (n_d,)
            or cc.shape != (n_c,)
            or (n_d and not 0 <= int(dc.min()) <= int(dc.max()) < grid.n_deal_cells)
            or (n_c and not 0 <= int(cc.min()) <= int(cc.max()) < grid.n_course_cells)
        ):
            raise ValidationError.for_field(
                "grid.deal_cell",
                (grid.n_deal_cells, grid.n_course_cells),
                "must give one cell per deal and course, inside the table",
            )
        self._layout(D.shape[1], C.shape[1], grid.n_deal_cells, grid.n_course_cells, "grid")
        prep = self._grids.get(grid.deal_ids, grid.course_ids)
        if prep is not None:
            return prep
        prep = PreparedGrid(
            grid.deal_ids,
            grid.course_ids,
            self.deals_.slots(grid.deal_ids),
            self.courses_.slots(grid.course_ids),
            self.bundles_.prior_var,
        )
        if self._by_deal:
            cpos = np.full(self.courses_.mean.shape[0], -1, dtype=np.intp)
            seen = prep.cslots > 0
            cpos[prep.cslots[seen]] = np.flatnonzero(seen)
            for i, slot in enumerate(prep.dslots.tolist()):
                for e in self._by_deal.get(slot, ()):
                    j = int(cpos[self._bundle_course[e]])
                    if j >= 0:
                        prep.set_bundle(i, j, self.bundles_.mean[e], self.bundles_.var[e])
        self._grids.put(prep)
        return prep

    def _split(self) -> tuple[int, int, int, int, int]:
        assert self.shape_ is not None
        k_d, k_c, g, h = self.shape_
        return k_d, k_c, g, h, 1 + k_d

    @staticmethod
    def _with_intercept(D: FloatArray) -> FloatArray:
        out = np.empty((D.shape[0], D.shape[1] + 1))
        out[:, 0] = 1.0
        out[:, 1:] = D
        return out

    def _choice(self, grid: PairGrid, found: list[GridArgmax], scored: int) -> PairChoice:
        """Play one of the draws' argmaxes (uniformly), with epsilon mixing; exact propensity.

        ``score`` is the played draw's maximum, NaN when the epsilon branch picked the pair."""
        n = grid.size
        eps = self.epsilon
        rng = self.rng_
        if eps > 0.0 and rng.random() < eps:
            flat = int(rng.integers(n))
            if grid.allowed is not None:
                flat = int(np.flatnonzero(grid.allowed.ravel())[flat])
            d, c = divmod(flat, len(grid.course_ids))
            score = math.nan
        else:
            pick = found[int(rng.integers(len(found)))] if len(found) > 1 else found[0]
            j = int(rng.integers(pick.deals.shape[0])) if pick.deals.shape[0] > 1 else 0
            d, c = int(pick.deals[j]), int(pick.courses[j])
            score = pick.best
        share = 0.0
        for res in found:
            hit = np.count_nonzero((res.deals == d) & (res.courses == c))
            share += hit / res.deals.shape[0]
        propensity = (1.0 - eps) * share / len(found) + eps / n
        return PairChoice(deal=d, course=c, propensity=propensity, score=score, scored=scored)

    # -- persistence ---------------------------------------------------------------------------
    def _learned_state(self) -> dict[str, Any]:
        bundles = self.bundles_.to_state()
        deal_of = {v: k for k, v in self.deals_.slot.items()}
        course_of = {v: k for k, v in self.courses_.slot.items()}
        pairs = []
        for key in bundles.pop("ids"):
            d, c = (int(t) for t in key.split(":"))
            pairs.append([deal_of[d], course_of[c]])
        return {
            "shape": None if self.shape_ is None else list(self.shape_),
            "A": self.A_.tolist(),
            "P": self.P_.tolist(),
            "b": self.b_.tolist(),
            "since_refresh": self._since_refresh,
            "deals": self.deals_.to_state(),
            "courses": self.courses_.to_state(),
            "bundles": {"pairs": pairs, **bundles},
            "reward_moments": self.moments_.to_list(),
        }

    def _set_learned_state(self, state: Mapping[str, Any]) -> None:
        shape = state.get("shape")
        deals = _Effects.from_state(state.get("deals", {}), 1.0 / self.l2_deal, "deals")
        courses = _Effects.from_state(state.get("courses", {}), 1.0 / self.l2_course, "courses")
        raw = dict(state.get("bundles", {}))
        pairs = [tuple(map(str, p)) for p in raw.get("pairs", [])]
        moments = RewardMoments.from_state(state)
        if shape is None:
            self.shape_ = None
            self._alloc(1)
        else:
            dims = tuple(int(v) for v in shape)
            if len(dims) != 4 or min(dims[2:]) < 1 or min(dims[:2]) < 0:
                raise ValidationError.for_field("state.shape", shape, "must be 4 sizes")
            k = 1 + dims[0] + dims[1] + dims[2] * dims[3]
            A = np.asarray(state.get("A"), dtype=np.float64)
            P = np.asarray(state.get("P"), dtype=np.float64)
            b = np.asarray(state.get("b"), dtype=np.float64)
            if A.shape != (k, k) or P.shape != (k, k) or b.shape != (k,):
                raise ValidationError.for_field("state.A", A.shape, f"must be ({k}, {k})")
            if not (np.isfinite(A).all() and np.isfinite(P).all() and np.isfinite(b).all()):
                raise ValidationError.for_field("state.A", "non-finite", "must be finite")
            self.shape_ = (dims[0], dims[1], dims[2], dims[3])
            self.A_, self.P_, self.b_ = A.copy(), P.copy(), b.copy()
            self._beta = None
            self._since_refresh = int(state.get("since_refresh", 0))
        self.deals_, self.courses_ = deals, courses
        self._reset_bundles()
        ids = [f"{deals.slot[d]}:{courses.slot[c]}" for d, c in pairs if d in deals.slot]
        if len(ids) != len(pairs):
            raise ValidationError.for_field(
                "state.bundles.pairs", len(pairs), "must name deals and courses of the state"
            )
        loaded = _Effects.from_state(
            {"ids": ids, "mean": raw.get("mean", []), "var": raw.get("var", [])},
            1.0 / self.l2_bundle,
            "bundles",
        )
        for key in ids:
            d, c = (int(t) for t in key.split(":"))
            e = self._bundle_slot(d, c)
            self.bundles_.mean[e] = loaded.mean[loaded.slot[key]]
            self.bundles_.var[e] = loaded.var[loaded.slot[key]]
        for d in self._by_deal:
            self._refresh_emax(d)
        self.moments_ = moments
        self._grids.clear()


class FactoredUCB(_Factored):
    """Upper confidence bounds on the factored model (module docstring), exact argmax over the
    grid.

    Parameters
    ----------
    alpha
        Width multiplier ``w``; ``"auto"`` (default) is ``kappa * sigma_hat``.
    kappa, sigma0, n0
        The automatic scale: ``kappa`` times the running reward standard deviation, shrunk
        towards ``sigma0`` with ``n0`` pseudo-observations.
    l2, l2_deal, l2_course, l2_bundle
        Prior precisions of the shared coefficients and of each deal, course and bundle effect.
    epsilon
        Probability of a uniformly random pair instead of the argmax.
    refresh
        Updates between exact re-inversions of the shared block.
    seed
        Tie-breaking and epsilon draws.
    """

    name: ClassVar[str] = "factored_ucb"

    def choose_grid(self, grid: PairGrid) -> PairChoice:
        """The pair with the largest upper confidence bound, ties broken uniformly."""
        ub, evaluate = self._ucb(grid)
        res = grid_argmax(ub, evaluate)
        return self._choice(grid, [res], res.scored)

    def _ucb_bound(
        self,
        D: FloatArray,
        md: FloatArray,
        qd: FloatArray,
        pd: FloatArray,
        course_mean: FloatArray,
        n_c2: FloatArray,
        pc: FloatArray,
        cross_d: Callable[[FloatArray], FloatArray],
        prep: PreparedGrid,
        grid: PairGrid,
    ) -> FloatArray:
        """``ub[d] >= max_c UCB(d, c)``, the smaller of two valid bounds.

        With ``h_D(d)`` the deal side and ``h_C(g, c)`` the course side plus the cell of row ``g``,
        the variance of a pair is ``||h_D||_P^2 + ||h_C||_P^2 + 2 <h_D, h_C>_P + p_d + p_c + p_dc``
        (``n_c2[g, c] = ||h_C||_P^2``; ``cross_d(v) = v' P [s_C; cell]`` for any deal-side ``v``).

        1. Triangle: ``sqrt(var) <= ||h_D|| + sqrt(p_d + p_dc) + sqrt(||h_C||^2 + p_c)``, the course
           part maximised exactly per cell row ``g``, jointly with the course's mean.
        2. Centroid: with ``h_D(d) = hbar + delta_d`` (``hbar`` the grid's mean deal side),
           ``<h_D, h_C> <= <hbar, h_C> + ||delta_d|| max_c ||h_C||``, so ``var <= Z_d + Y_gc``
           with ``Z_d`` a number per deal; ``max_c [mean_gc + w sqrt(Z + Y_gc)]`` increases
           with ``Z`` and is tabulated at 16 quantiles of ``Z`` (the largest included). Deals
           that differ little (the usual catalog: many similar deals) get a bound close to their
           exact maximum, where the triangle inequality is loose by up to 40% of the width.
        """
        w = self.scale
        dcell = grid.deal_cell
        emax = self._emax[prep.dslots] if self._by_deal else 0.0
        pb = self.bundles_.prior_var
        # 1. triangle
        row_best = (course_mean + w * np.sqrt(n_c2 + pc[None, :])).max(axis=1)
        ub1 = md + emax + w * (np.sqrt(qd) + np.sqrt(pd + pb)) + row_best[dcell]
        # 2. centroid
        lo = D.shape[1]
        hbar = D.sum(axis=0) / D.shape[0]
        # ||D_d - hbar||_P^2 = q_d - 2 D_d P hbar + hbar' P hbar: no second n x lo x lo product
        Ph = self.P_[:lo, :lo] @ hbar
        eps = np.sqrt(np.maximum(qd - 2.0 * (D @ Ph) + float(hbar @ Ph), 0.0))
        Y = n_c2 + 2.0 * cross_d(hbar) + pc[None, :]
        n_max = np.sqrt(n_c2.max(axis=1))
        Z = qd + pd + pb + 2.0 * eps * n_max[dcell]
        zs = np.sort(Z)
        edges = zs[_edge_index(zs.shape[0])]
        F = (
            course_mean[:, None, :]
            + w * np.sqrt(np.maximum(edges[None, :, None] + Y[:, None, :], 0.0))
        ).max(axis=2)  # (g, edges)
        at = np.minimum(np.searchsorted(edges, Z, side="left"), edges.shape[0] - 1)
        ub: FloatArray = np.minimum(ub1, md + emax + F[dcell, at])
        ub += _BOUND_PAD * (1.0 + np.abs(ub))
        return ub

    def ucb_grid(self, grid: PairGrid) -> FloatArray:
        """Every pair's upper confidence bound, shape ``(n_deals, n_courses)``: the full scan that
        :meth:`choose_grid` avoids (for tests, reports and benchmarks)."""
        _, evaluate = self._ucb(grid)
        return evaluate(np.arange(len(grid.deal_ids)))

    def _ucb(self, grid: PairGrid) -> tuple[FloatArray, Callable[[IntArray], FloatArray]]:
        """Per-deal upper bounds and the exact scorer of a batch of deals."""
        prep = self._prepare(grid)
        _k_d, k_c, g, h, lo = self._split()
        D = self._with_intercept(grid.deal_features)
        C = grid.course_features
        dcell, ccell = grid.deal_cell, grid.course_cell
        P, beta = self.P_, self._beta_hat()
        w = self.scale
        hi = lo + k_c
        # means of the parts
        md = D @ beta[:lo] + self.deals_.mean[prep.dslots]
        mc = C @ beta[lo:hi] + self.courses_.mean[prep.cslots]
        table = beta[hi:].reshape(g, h)
        # quadratic forms of each side and of each cell
        PDD = P[:lo, :lo]
        qd = np.einsum("ij,ij->i", D @ PDD, D)
        qc = np.einsum("ij,ij->i", C @ P[lo:hi, lo:hi], C)
        cell_var = np.diag(P)[hi:].reshape(g, h)
        pd = self.deals_.var[prep.dslots]
        pc = self.courses_.var[prep.cslots]
        # pieces of the exact variance shared by every batch
        n_c = C.shape[0]
        # one product gives a deal-side row's cross terms with every course side and every cell
        GX = np.empty((lo, n_c + g * h))
        GX[:, :n_c] = P[:lo, lo:hi] @ C.T
        GX[:, n_c:] = P[:lo, hi:]
        cell_of = np.arange(g)[:, None] * h + ccell[None, :]  # (g, n_C): column of cell (g, c)
        # xc[c, g] = s_C(c)' P[course side, cell (g, ccell[c])]: one product, then a gather
        xc = (C @ P[lo:hi, hi:]).reshape(n_c, g, h)[np.arange(n_c), :, ccell]
        n_c2 = np.maximum(qc[None, :] + cell_var[:, ccell] + 2.0 * xc.T, 0.0)  # (g, n_C)
        course_mean = mc[None, :] + table[:, ccell]  # (g, n_C)
        course_var = n_c2 + pc[None, :]
        allowed = grid.allowed
        qd = np.maximum(qd, 0.0)

        def cross_d(v: FloatArray) -> FloatArray:
            r = v @ GX
            out: FloatArray = r[:n_c][None, :] + r[n_c:][cell_of]
            return out

        ub = self._ucb_bound(D, md, qd, pd, course_mean, n_c2, pc, cross_d, prep, grid)

        def evaluate(deals: IntArray) -> FloatArray:
            cells = dcell[deals]
            E, V = prep.bundle_terms(deals, True)
            R = D[deals] @ GX
            cross = R[:, :n_c]
            cross += np.take_along_axis(R[:, n_c:], cell_of[cells], axis=1)
            var = V
            var += course_var[cells]
            var += (qd[deals] + pd[deals])[:, None]
            var += 2.0 * cross
            np.maximum(var, 0.0, out=var)
            np.sqrt(var, out=var)
            var *= w
            var += course_mean[cells]
            var += md[deals][:, None]
            var += E
            if allowed is not None:
                var[~allowed[deals]] = -math.inf
            return var

        return ub, evaluate

    def score_pairs(self, grid: PairGrid) -> tuple[FloatArray, FloatArray]:
        """``(mean, variance)`` of every pair, shape ``(n_deals, n_courses)`` each, in units of the
        reward and of ``sigma^2``: a full scan for reports, tests and small grids."""
        prep = self._prepare(grid)
        _k_d, k_c, _g, h, lo = self._split()
        D = self._with_intercept(grid.deal_features)
        C = grid.course_features
        hi = lo + k_c
        n_d, n_c = D.shape[0], C.shape[0]
        H = np.zeros((n_d, n_c, self.b_.shape[0]))
        H[:, :, :lo] = D[:, None, :]
        H[:, :, lo:hi] = C[None, :, :]
        cells = hi + grid.deal_cell[:, None] * h + grid.course_cell[None, :]
        np.put_along_axis(H, cells[:, :, None], 1.0, axis=2)
        E, V = prep.bundle_terms(np.arange(n_d), True)
        mean = H @ self._beta_hat() + self.deals_.mean[prep.dslots][:, None]
        mean += self.courses_.mean[prep.cslots][None, :] + E
        var = np.einsum("ijk,kl,ijl->ij", H, self.P_, H)
        var += self.deals_.var[prep.dslots][:, None] + self.courses_.var[prep.cslots][None, :] + V
        return mean, var


class FactoredTS(_Factored):
    """Thompson sampling on the factored model (module docstring), exact argmax of each draw.

    Parameters
    ----------
    propensity_samples
        ``M``: the policy draws ``M + 1`` posterior samples and plays the argmax of one picked
        uniformly, so the logged propensity is exact given the draws (default 3).
    cov_refresh
        The draws of the shared block use a Cholesky factor of its covariance recomputed every
        ``cov_refresh`` updates (default 8; 1: every decision): the factorisation is most of a
        draw's cost, and between refreshes the covariance used is at most that many updates
        old while the mean is always current. The factor is saved with the state, so a loaded
        policy draws exactly as the original would.
    alpha, kappa, sigma0, n0, l2, l2_deal, l2_course, l2_bundle, epsilon, refresh, seed
        As :class:`FactoredUCB`; ``alpha`` scales the posterior draws.
    """

    name: ClassVar[str] = "factored_ts"

    _param_names: ClassVar[tuple[str, ...]] = (
        *_Factored._param_names,
        "propensity_samples",
        "cov_refresh",
    )

    def __init__(
        self,
        *,
        alpha: float | str = "auto",
        kappa: float = 0.25,
        sigma0: float = 1.0,
        n0: float = 20.0,
        l2: float = 1.0,
        l2_deal: float = 4.0,
        l2_course: float = 4.0,
        l2_bundle: float = 4.0,
        epsilon: float = 0.0,
        refresh: int = 500,
        propensity_samples: int = 3,
        cov_refresh: int = 8,
        seed: SeedLike = None,
    ) -> None:
        super().__init__(
            alpha=alpha,
            kappa=kappa,
            sigma0=sigma0,
            n0=n0,
            l2=l2,
            l2_deal=l2_deal,
            l2_course=l2_course,
            l2_bundle=l2_bundle,
            epsilon=epsilon,
            refresh=refresh,
            seed=seed,
        )
        self.propensity_samples = check_int("propensity_samples", propensity_samples, minimum=0)
        self.cov_refresh = check_int("cov_refresh", cov_refresh, minimum=1)
        self._chol: FloatArray | None = None  # Cholesky factor of P_ as of update _chol_at
        self._chol_at = 0

    def _factor(self) -> FloatArray:
        """The Cholesky factor of the shared block's covariance, refreshed every
        ``cov_refresh`` updates (and whenever its size changed)."""
        k = self.P_.shape[0]
        stale = self.n_updates_ - self._chol_at >= self.cov_refresh
        chol = self._chol
        if chol is None or chol.shape[0] != k or stale:
            chol = self._chol = np.asarray(
                np.linalg.cholesky(0.5 * (self.P_ + self.P_.T)), dtype=np.float64
            )
            self._chol_at = self.n_updates_
        return chol

    def _learned_state(self) -> dict[str, Any]:
        out = super()._learned_state()
        out["chol"] = None if self._chol is None else self._chol.tolist()
        out["chol_at"] = self._chol_at
        return out

    def _set_learned_state(self, state: Mapping[str, Any]) -> None:
        raw = state.get("chol")
        chol = None if raw is None else np.asarray(raw, dtype=np.float64)
        if chol is not None and (chol.ndim != 2 or not np.isfinite(chol).all()):
            raise ValidationError.for_field("state.chol", "malformed", "must be a finite matrix")
        super()._set_learned_state(state)
        self._chol = chol
        self._chol_at = int(state.get("chol_at", 0))

    def choose_grid(self, grid: PairGrid) -> PairChoice:
        """The argmax of one of ``M + 1`` posterior draws, picked uniformly."""
        prep = self._prepare(grid)
        md_all, mc_all, tables = self._draws(grid, prep)
        dcell, ccell = grid.deal_cell, grid.course_cell
        emax = self._emax[prep.dslots] if self._by_deal else np.zeros(len(grid.deal_ids))
        found: list[GridArgmax] = []
        scored = 0
        for s in range(md_all.shape[1]):
            md, mc, table = md_all[:, s], mc_all[:, s], tables[s]
            # the course part maximised exactly per deal-cell row
            ub = md + emax + (mc[None, :] + table[:, ccell]).max(axis=1)[dcell]
            ub += _BOUND_PAD * (1.0 + np.abs(ub))

            def evaluate(
                deals: IntArray, md: FloatArray = md, mc: FloatArray = mc, table: FloatArray = table
            ) -> FloatArray:
                E, _ = prep.bundle_terms(deals, False)
                out: FloatArray = md[deals][:, None] + mc[None, :] + table[dcell[deals]][:, ccell]
                out += E
                if grid.allowed is not None:
                    out[~grid.allowed[deals]] = -math.inf
                return out

            res = grid_argmax(ub, evaluate)
            scored += res.scored
            found.append(res)
        return self._choice(grid, found, scored)

    def _draws(
        self, grid: PairGrid, prep: PreparedGrid
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """``M + 1`` posterior draws: each deal's and course's sampled part of the score, shape
        ``(n, M + 1)``, and the sampled pairing tables, shape ``(M + 1, g, h)``."""
        _k_d, k_c, g, h, lo = self._split()
        hi = lo + k_c
        D = self._with_intercept(grid.deal_features)
        C = grid.course_features
        rng = self.rng_
        m = self.propensity_samples + 1
        w = self.scale
        L = self._factor()
        betas = self._beta_hat()[:, None] + w * (L @ rng.standard_normal((L.shape[0], m)))
        dsd = np.sqrt(self.deals_.var[prep.dslots])
        csd = np.sqrt(self.courses_.var[prep.cslots])
        md = D @ betas[:lo] + self.deals_.mean[prep.dslots][:, None]
        md += w * dsd[:, None] * rng.standard_normal(md.shape)
        mc = C @ betas[lo:hi] + self.courses_.mean[prep.cslots][:, None]
        mc += w * csd[:, None] * rng.standard_normal(mc.shape)
        tables = betas[hi:].T.reshape(m, g, h)
        return md, mc, tables
