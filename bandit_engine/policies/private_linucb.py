"""Jointly differentially private disjoint LinUCB with tree-based aggregation (Shariff & Sheffet,
"Differentially Private Contextual Linear Bandits", NeurIPS 2018)."""

from __future__ import annotations

import math
import secrets
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError, ValidationError
from ..records import Choice
from ._arms import ArmTable
from ._arrays import BoolArray, FloatArray, IntArray
from ._checks import SeedLike, check_in_range, check_int, check_positive
from ._mask import mask_scores
from ._ties import argmax_choice, argmax_distribution
from .base import BasePolicy

__all__ = [
    "PrivateLinUCB",
    "gaussian_noise_sd",
    "node_sensitivity",
    "noise_shift",
    "tree_levels",
    "zcdp_rho",
]


def tree_levels(horizon: int, batch: int) -> int:
    """``m``: the number of tree nodes every record enters (levels of a binary tree over
    ``ceil(horizon / batch)`` leaves)."""
    return math.ceil(horizon / batch).bit_length()


def zcdp_rho(epsilon: float, delta: float) -> float:
    """The largest zCDP parameter ``rho`` whose conversion ``rho + 2 sqrt(rho ln(1/delta))``
    (Bun & Steinke 2016, Prop. 1.3) is at most ``epsilon``:
    ``sqrt(rho) = sqrt(ln(1/delta) + epsilon) - sqrt(ln(1/delta))``."""
    lg = math.log(1.0 / delta)
    return (math.sqrt(lg + epsilon) - math.sqrt(lg)) ** 2


def node_sensitivity(x_bound: float, reward_bound: float) -> float:
    """L2 sensitivity of one node's release (the upper triangle of ``sum x x'`` and ``sum r x``)
    when one record ``(arm, x, r)`` with ``|x| <= L``, ``|r| <= B`` is replaced by another:
    ``|x x' - y y'|_F^2 <= 2 L^4`` and ``|r x - s y|^2 <= 4 B^2 L^2``, so
    ``L sqrt(2 L^2 + 4 B^2)`` (records of different arms touch different blocks and give less)."""
    return x_bound * math.sqrt(2.0 * x_bound**2 + 4.0 * reward_bound**2)


def gaussian_noise_sd(
    epsilon: float, delta: float, levels: int, x_bound: float, reward_bound: float
) -> float:
    """Standard deviation of the Gaussian noise added to every entry of every tree node.

    A record enters ``m = levels`` nodes, so the whole release (all nodes) has L2 sensitivity
    ``sqrt(m) * node_sensitivity``; the Gaussian mechanism with that sensitivity ``D`` and
    standard deviation ``sigma`` is ``D^2 / (2 sigma^2)``-zCDP (Bun & Steinke 2016, Prop. 1.6),
    valid under adaptive composition, and converted to ``(epsilon, delta)`` by
    :func:`zcdp_rho`. Hence ``sigma = sqrt(m) * node_sensitivity / sqrt(2 rho)``.
    """
    rho = zcdp_rho(epsilon, delta)
    return math.sqrt(levels) * node_sensitivity(x_bound, reward_bound) / math.sqrt(2.0 * rho)


def noise_shift(sigma: float, levels: int, d: int, leaves: int, failure: float) -> float:
    """``Upsilon``: a bound on the spectral norm of the summed noise of at most ``m`` nodes
    (entry sd ``sigma sqrt(m)``) holding at all ``leaves`` releases with probability
    ``1 - failure``, in the form of Shariff & Sheffet's Gaussian-noise bound:
    ``sigma sqrt(m) (4 sqrt(d) + 2 ln(2 T / failure))``. A symmetric Gaussian ``d x d`` matrix
    of entry sd ``s`` exceeds ``s (2 sqrt(d) + t)`` with probability about ``exp(-t^2/4)``, so
    this is loose on purpose, as in the paper."""
    return sigma * math.sqrt(levels) * (4.0 * math.sqrt(d) + 2.0 * math.log(2.0 * leaves / failure))


class PrivateLinUCB(BasePolicy):
    """Disjoint LinUCB whose per-bundle sufficient statistics are released through the binary
    tree mechanism with Gaussian noise: jointly (epsilon, delta)-differentially private.

    The model is LinUCB's (one ridge regression per bundle on the context ``x``), which is the
    linear model of Shariff & Sheffet (2018, Alg. 1) with action features ``e_a (x) x``: its
    Gram matrix is block diagonal, one ``d x d`` block and one ``d``-vector ``b`` per bundle.
    Every learned record ``(bundle, x, r)`` is a leaf entry of one binary tree over the stream
    of records; each node keeps the exact sums ``sum x x'`` and ``sum r x`` per bundle of the
    records below it, and is released once complete with independent Gaussian noise on every
    entry (the upper triangle mirrored, so the noise is symmetric). At any time the released
    statistics of a bundle are the sums of at most ``m`` released nodes covering the records so
    far (the dyadic decomposition of the count), plus their noise ``N_a``. Decisions use

    ``V_a = l2 I + 2 Upsilon I + sum x x' + N_a``,  ``theta_a = V_a^{-1} (sum r x + n_a)``,
    ``score = theta_a . x + alpha sqrt(x' V_a^{-1} x)``,

    where the shift ``2 Upsilon I`` (the paper's regulariser shift, :func:`noise_shift`) keeps
    ``V_a`` above ``(l2 + Upsilon) I`` with probability ``1 - failure``; if noise ever makes
    ``V_a`` indefinite anyway, a further shift restores ``l2`` as its smallest eigenvalue
    (post-processing: it costs no privacy).

    Parameters
    ----------
    dp_epsilon, dp_delta
        The privacy guarantee: ``dp_epsilon > 0``, ``dp_delta`` in ``(0, 1)``.
    horizon
        Records (learned rewards) the guarantee covers; it fixes the tree depth
        ``m = tree_levels(horizon, batch)``. Records beyond it are not learned (the model freezes,
        with a warning, and ``n_over_horizon_`` counts them): learning on would spend more than
        the stated budget.
    x_bound, reward_bound
        ``L`` and ``B``: contexts are clipped to ``|x| <= L`` (scaled down along their direction,
        both when learning and when scoring, so the model is one function of the clipped
        context) and rewards to ``[-B, B]`` before they enter any sum. The noise scales with
        ``L sqrt(2 L^2 + 4 B^2)`` (:func:`node_sensitivity`): state bounds near the real ones.
    batch
        Records per tree leaf: the released statistics change every ``batch`` records (a
        bundle learns with that delay), which makes the tree ``log2(batch)`` levels shallower
        (less noise) and the policy faster (the noisy inverses are cached per release).
        ``batch=1`` is the paper's algorithm.
    alpha
        Width of the confidence bonus (``>= 0``). A fixed number: LinUCB's ``"auto"`` scale
        reads the running reward standard deviation, which is not privatised.
    l2
        Ridge prior of every bundle (``> 0``).
    failure
        ``alpha`` of the paper: the probability allowed for the noise to exceed ``Upsilon``.
    epsilon
        LinUCB's uniform exploration share in ``[0, 1]`` (not a privacy parameter): with
        ``epsilon = 0`` a clear winner is logged with propensity 1, so pass e.g. 0.05 when the
        logs are meant for off-policy evaluation. Propensities follow LinUCB's tie/epsilon rule.
    seed
        Seed or ``numpy.random.Generator`` for tie-breaking; the noise key is derived from it
        (kept in the state, so a loaded policy releases the same noise). The noise is only as
        secret as its key: an int seed (reproducible simulations) lets whoever knows it
        recompute the noise, so serve with ``seed=None`` (a key from fresh entropy).

    Notes
    -----
    **What is private.** Joint differential privacy (Kearns et al. 2014; Shariff & Sheffet
    2018, Def. 2): for any one round's record (its context and reward) changed, the decisions
    shown in all *other* rounds change in distribution by at most ``(epsilon, delta)``. The
    decision of round ``t`` depends only on released (noisy) statistics and on user ``t``'s
    own context, so by the billboard lemma the released statistics' DP carries over. The noise
    calibration is the Gaussian mechanism's zCDP analysis over the ``m`` nodes a record enters
    (:func:`gaussian_noise_sd`), tighter than the paper's Gaussian-noise constant, valid for any
    ``epsilon`` and under adaptively chosen records (each record depends on earlier releases).
    The unit is the record (one decision and its reward), as in the paper: a user with ``k``
    learned decisions is protected at about ``k`` times the budget (group privacy).

    **What is not.** The model file holds the exact sums and the noise key (the learner's
    internal state, as in any tree-based mechanism, and as sensitive as LinUCB's model file):
    the guarantee covers the decisions served, not a copy of the file. Scores and
    ``score_batch`` outputs are computed from released statistics and are covered too.

    **Cost.** The shift grows like ``sigma sqrt(m d)`` and does not shrink with data, so a
    bundle needs roughly ``Upsilon / L^2`` records before its data outweighs the noise;
    disjoint models split the records over the bundles. The measured cost on the simulator is
    in ``benchmarks/README.md`` (``benchmarks/bench_private_linucb.py``).

    With ``dp_epsilon -> infinity`` and ``batch=1`` the noise and the shift vanish and the
    choices are those of ``LinUCB(alpha=alpha, l2=l2)`` (tested).
    """

    name = "dp_linucb"
    _param_names = (
        "dp_epsilon",
        "dp_delta",
        "horizon",
        "x_bound",
        "reward_bound",
        "batch",
        "alpha",
        "l2",
        "failure",
        "epsilon",
    )

    def __init__(
        self,
        *,
        dp_epsilon: float = 1.0,
        dp_delta: float = 1e-6,
        horizon: int = 1_000_000,
        x_bound: float = 1.0,
        reward_bound: float = 1.0,
        batch: int = 100,
        alpha: float = 0.1,
        l2: float = 1.0,
        failure: float = 0.05,
        epsilon: float = 0.0,
        seed: SeedLike = None,
    ) -> None:
        super().__init__(seed=seed)
        self.dp_epsilon = check_positive("dp_epsilon", dp_epsilon)
        self.dp_delta = check_in_range(
            "dp_delta", dp_delta, 0.0, 1.0, low_open=True, high_open=True
        )
        self.horizon = check_int("horizon", horizon, minimum=1)
        self.x_bound = check_positive("x_bound", x_bound)
        self.reward_bound = check_positive("reward_bound", reward_bound)
        self.batch = check_int("batch", batch, minimum=1)
        if self.batch > self.horizon:
            raise ConfigError.for_field("batch", batch, f"must be <= horizon ({horizon})")
        if isinstance(alpha, str) or not isinstance(alpha, int | float | np.floating | np.integer):
            raise ConfigError.for_field(
                "alpha", alpha, "must be a number >= 0 ('auto' reads unprivatised rewards)"
            )
        self.alpha = check_positive("alpha", alpha, allow_zero=True)
        self.l2 = check_positive("l2", l2)
        self.failure = check_in_range("failure", failure, 0.0, 1.0, low_open=True, high_open=True)
        self.epsilon = check_in_range("epsilon", epsilon, 0.0, 1.0)
        self.levels = tree_levels(self.horizon, self.batch)
        self.noise_sd = gaussian_noise_sd(
            self.dp_epsilon, self.dp_delta, self.levels, self.x_bound, self.reward_bound
        )
        self.noise_key_ = _noise_key(seed)
        self.arms_ = ArmTable()
        self.n_over_horizon_ = 0
        self._empty_state(0)

    # -- state -------------------------------------------------------------------------------
    def _empty_state(self, d: int) -> None:
        self.gram_ = np.zeros((0, d, d))  # exact sums over released leaves
        self.xr_ = np.zeros((0, d))
        self.pending_x_ = np.zeros((0, d))  # the current leaf's records (not yet released)
        self.pending_r_ = np.zeros(0)
        self.pending_arm_ = np.zeros(0, dtype=np.intp)
        self._cache_epoch = np.full(0, -1, dtype=np.int64)
        self._theta = np.zeros((0, d))
        self._v_inv = np.zeros((0, d, d))
        self.shift_ = (
            2.0 * noise_shift(self.noise_sd, self.levels, d, self._leaves(), self.failure)
            if d
            else 0.0
        )

    def _leaves(self) -> int:
        return math.ceil(self.horizon / self.batch)

    def _init_dims(self, d: int, p: int) -> None:
        self._empty_state(d)

    def _ensure_rows(self, n: int) -> None:
        have = self.gram_.shape[0]
        if n <= have:
            return
        d = self.gram_.shape[1]
        grow = n - have
        self.gram_ = np.concatenate([self.gram_, np.zeros((grow, d, d))])
        self.xr_ = np.concatenate([self.xr_, np.zeros((grow, d))])
        self._cache_epoch = np.concatenate([self._cache_epoch, np.full(grow, -1, dtype=np.int64)])
        self._theta = np.concatenate([self._theta, np.zeros((grow, d))])
        self._v_inv = np.concatenate([self._v_inv, np.zeros((grow, d, d))])

    @property
    def epoch(self) -> int:
        """Leaves released so far (the released statistics change when it does)."""
        return min(self.n_updates_, self.horizon) // self.batch

    # -- the mechanism -----------------------------------------------------------------------
    def node_noise(self, level: int, index: int, row: int) -> tuple[FloatArray, FloatArray]:
        """The noise of tree node ``(level, index)`` for bundle row ``row``: a symmetric
        ``d x d`` matrix and a ``d``-vector, every independent entry ``N(0, noise_sd^2)``.
        Drawn from a generator keyed by (noise key, node, row), so it is the same whenever it
        is needed and nothing per node has to be stored."""
        d = self.gram_.shape[1]
        rng = np.random.default_rng([*self.noise_key_, level, index, row])
        iu = np.triu_indices(d)
        z = rng.standard_normal(iu[0].shape[0] + d) * self.noise_sd
        mat = np.zeros((d, d))
        mat[iu] = z[: iu[0].shape[0]]
        mat = mat + np.triu(mat, 1).T
        return mat, z[iu[0].shape[0] :]

    def released(self, row: int) -> tuple[FloatArray, FloatArray]:
        """Bundle ``row``'s released ``(sum x x' + N, sum r x + n)`` now: the sums of the
        released nodes of the dyadic decomposition of the ``epoch`` leaves released so far."""
        e = self.epoch
        gram = self.gram_[row].copy()
        xr = self.xr_[row].copy()
        for level in range(e.bit_length()):
            if e >> level & 1:
                n_mat, n_vec = self.node_noise(level, (e >> level) - 1, row)
                gram += n_mat
                xr += n_vec
        return gram, xr

    def _solve(self, row: int) -> tuple[FloatArray, FloatArray]:
        """``(theta, V^{-1})`` of bundle ``row`` from the released statistics."""
        gram, xr = self.released(row)
        d = gram.shape[0]
        v = gram + (self.l2 + self.shift_) * np.eye(d)
        try:
            chol = np.linalg.cholesky(v)
        except np.linalg.LinAlgError:
            # Noise beyond the high-probability bound: shift further (post-processing).
            low = float(np.linalg.eigvalsh(v)[0])
            v += (self.l2 - low) * np.eye(d)
            chol = np.linalg.cholesky(v)
        inv_chol = np.linalg.inv(chol)
        v_inv = inv_chol.T @ inv_chol
        return v_inv @ xr, v_inv

    def _model(self, rows: IntArray) -> tuple[FloatArray, FloatArray]:
        """Cached ``theta`` and ``V^{-1}`` of ``rows`` for the current epoch."""
        e = self.epoch
        stale = rows[self._cache_epoch[rows] != e]
        for row in np.unique(stale):
            self._theta[row], self._v_inv[row] = self._solve(int(row))
            self._cache_epoch[row] = e
        return self._theta[rows], self._v_inv[rows]

    def _clip(self, x: FloatArray) -> FloatArray:
        norm = math.sqrt(float(x @ x))
        return x * (self.x_bound / norm) if norm > self.x_bound else x

    def _scores(self, x: FloatArray, rows: IntArray) -> FloatArray:
        x = self._clip(x)
        theta, v_inv = self._model(rows)
        width = np.einsum("i,kij,j->k", x, v_inv, x)
        scores: FloatArray = theta @ x + self.alpha * np.sqrt(np.maximum(width, 0.0))
        return scores

    # -- the policy protocol -----------------------------------------------------------------
    def _rows(self, arms: Sequence[str], create: bool) -> IntArray:
        if create:
            rows, _, n_new = self.arms_.rows(arms)
            if n_new:
                self._ensure_rows(len(self.arms_))
            return rows
        # read-only: unseen bundles get the rows choose() would give them (same noise)
        n = len(self.arms_)
        rows = self.arms_.lookup(arms, missing=-1).copy()
        new = np.flatnonzero(rows < 0)
        rows[new] = n + np.arange(new.shape[0])
        self._ensure_rows(n + new.shape[0])  # zero rows: unseen bundles have no data
        return rows

    def choose(
        self,
        x: FloatArray,
        arms: Sequence[str],
        arm_features: FloatArray,
        mask: BoolArray | None = None,
    ) -> Choice:
        keep = self._keep(mask, arms)
        x, _ = self._check_inputs(x, arms, arm_features)
        scores = self._scores(x, self._rows(arms, create=True))
        try:
            index, propensity, probs = argmax_choice(scores, self.rng_, self.epsilon, keep)
        except ValidationError:
            self._raise_nonfinite(x)
            raise
        return Choice(
            index, propensity, scores if keep is None else mask_scores(scores, keep), probs
        )

    def probabilities(
        self,
        x: FloatArray,
        arms: Sequence[str],
        arm_features: FloatArray,
        mask: BoolArray | None = None,
    ) -> FloatArray:
        """The exact choice distribution (LinUCB's tie/epsilon rule); consumes no randomness."""
        keep = self._keep(mask, arms)
        x, _ = self._check_inputs(x, arms, arm_features)
        scores = self._scores(x, self._rows(arms, create=False))
        return argmax_distribution(scores, self.epsilon, keep)

    def score_batch(
        self, X: FloatArray, arms: Sequence[str], arm_features: FloatArray
    ) -> FloatArray:
        """Estimated mean rewards ``theta_a . clip(x)`` from the released statistics."""
        X, _ = self._check_batch(X, arms, arm_features)
        theta, _ = self._model(self._rows(arms, create=False))
        norms = np.sqrt(np.einsum("ij,ij->i", X, X))
        scale = np.minimum(1.0, self.x_bound / np.maximum(norms, 1e-300))
        means: FloatArray = (X * scale[:, None]) @ theta.T
        return means

    def update(
        self,
        x: FloatArray,
        arm: str,
        arm_features: FloatArray,
        reward: float,
        propensity: float = 1.0,
    ) -> None:
        """Add the clipped ``(x, reward)`` to the current leaf; a full leaf is released (folded
        into the exact sums, its noise comes with the nodes it completes). Past ``horizon``
        nothing is learned (see the class notes)."""
        x, _, r = self._check_update(x, arm, arm_features, reward, propensity)
        if self.n_updates_ >= self.horizon:
            if self.n_over_horizon_ == 0:
                warnings.warn(
                    f"dp_linucb reached its horizon of {self.horizon} records: it stops "
                    "learning so as not to spend more than its (epsilon, delta)",
                    RuntimeWarning,
                    stacklevel=2,
                )
            self.n_over_horizon_ += 1
            return
        row, created = self.arms_.row(arm)
        if created:
            self._ensure_rows(len(self.arms_))
        x = self._clip(x)
        r = min(max(r, -self.reward_bound), self.reward_bound)
        self.pending_x_ = np.vstack([self.pending_x_, x])
        self.pending_r_ = np.append(self.pending_r_, r)
        self.pending_arm_ = np.append(self.pending_arm_, row)
        self.n_updates_ += 1
        if self.pending_r_.shape[0] >= self.batch:
            self._release_leaf()

    def _release_leaf(self) -> None:
        for x, r, row in zip(self.pending_x_, self.pending_r_, self.pending_arm_, strict=True):
            self.gram_[row] += np.outer(x, x)
            self.xr_[row] += r * x
        d = self.gram_.shape[1]
        self.pending_x_ = np.zeros((0, d))
        self.pending_r_ = np.zeros(0)
        self.pending_arm_ = np.zeros(0, dtype=np.intp)

    def _learned_state(self) -> dict[str, Any]:
        n = len(self.arms_)
        return {
            "arms": list(self.arms_.ids),
            "noise_key": list(self.noise_key_),
            "n_over_horizon": self.n_over_horizon_,
            "gram": self.gram_[:n].copy(),
            "xr": self.xr_[:n].copy(),
            "pending_x": self.pending_x_.copy(),
            "pending_r": self.pending_r_.copy(),
            "pending_arm": self.pending_arm_.astype(np.int64),
        }

    def _set_learned_state(self, state: Mapping[str, Any]) -> None:
        table = ArmTable.from_state(state)
        n, d = len(table), self.n_features_ or 0
        key = state.get("noise_key")
        if (
            not isinstance(key, list | tuple)
            or len(key) != 2
            or not all(isinstance(k, int | np.integer) and 0 <= k < 2**63 for k in key)
        ):
            raise ValidationError.for_field("state.noise_key", key, "must be two ints in [0, 2^63)")
        over = state.get("n_over_horizon")
        if not isinstance(over, int | np.integer) or over < 0:
            raise ValidationError.for_field("state.n_over_horizon", over, "must be an int >= 0")
        arrays = {}
        for name, shape in (
            ("gram", (n, d, d)),
            ("xr", (n, d)),
            ("pending_x", (-1, d)),
            ("pending_r", (-1,)),
            ("pending_arm", (-1,)),
        ):
            arr = np.asarray(state.get(name))
            ok = arr.ndim == len(shape) and all(
                s == -1 or s == a for s, a in zip(shape, arr.shape, strict=True)
            )
            if not ok or (name != "pending_arm" and not np.all(np.isfinite(arr))):
                raise ValidationError.for_field(
                    f"state.{name}", getattr(arr, "shape", arr), f"must be a finite array {shape}"
                )
            arrays[name] = arr
        k = arrays["pending_r"].shape[0]
        pend_arm = arrays["pending_arm"].astype(np.intp)
        if arrays["pending_x"].shape[0] != k or pend_arm.shape[0] != k or k >= self.batch:
            raise ValidationError.for_field(
                "state.pending_r", k, f"must hold fewer than batch ({self.batch}) records"
            )
        if k and (pend_arm.min() < 0 or pend_arm.max() >= n):
            raise ValidationError.for_field("state.pending_arm", pend_arm.tolist(), "bad rows")
        self.arms_ = table
        self.noise_key_ = (int(key[0]), int(key[1]))
        self.n_over_horizon_ = int(over)
        self._empty_state(d)
        self._ensure_rows(n)
        self.gram_[:n] = arrays["gram"]
        self.xr_[:n] = arrays["xr"]
        self.pending_x_ = arrays["pending_x"].astype(np.float64).reshape(k, d)
        self.pending_r_ = arrays["pending_r"].astype(np.float64)
        self.pending_arm_ = pend_arm


def _noise_key(seed: SeedLike) -> tuple[int, int]:
    """Two 63-bit words keying the noise: for an int seed derived apart from the tie-breaking
    stream (so the choices' random draws are LinUCB's); two draws from a generator passed as
    the seed; fresh entropy without a seed."""
    if seed is None:
        return (secrets.randbits(63), secrets.randbits(63))
    if isinstance(seed, np.random.Generator):
        drawn = seed.integers(0, 2**63, size=2)
        return (int(drawn[0]), int(drawn[1]))
    words = np.random.SeedSequence([int(seed), 0x6470]).generate_state(2, dtype=np.uint64)
    return (int(words[0]) >> 1, int(words[1]) >> 1)
