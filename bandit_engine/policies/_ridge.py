"""Stacked ridge regressions with rank-one updates and optional forgetting.

One :class:`RidgeRows` object holds many independent ridge regressions of the same dimension
(one per arm for disjoint LinUCB / Thompson sampling, a single one for shared Thompson sampling)
as stacked arrays. Scoring ``k`` arms is one matrix-vector product over the packed upper
triangles of their ``A^{-1}``, kept per candidate list in a derived block
(:meth:`RidgeRows.mean_var`), instead of ``k`` small products.

For each row the model is ``A = s*l2*I + sum_i w_i x_i x_i'``, ``b = sum_i w_i r_i x_i``,
``theta = A^{-1} b``; ``A^{-1}`` is kept up to date by Sherman–Morrison rank-one updates, never
by a fresh inverse per observation.

Forgetting (at most one of the two):

* ``window=W``: only the last ``W`` observations of the row count (``w_i = 1``, ``s = 1``). The
  oldest one is removed by a Sherman–Morrison *downdate*. Downdates lose accuracy faster than
  updates, so every ``W`` updates of a row (and whenever a downdate looks ill-conditioned) the
  row is recomputed exactly from the stored window: amortised ``O(d^3 / W)`` per update.
* ``discount=g``: each update first multiplies ``A`` and ``b`` by ``g`` (``w_i = g^(n-i)``). The
  prior ``l2*I`` decays with them; its remaining scale ``s`` is tracked and, once ``s < 0.5``,
  restored exactly (``A += (1 - s)*l2*I``, ``s = 1``) and ``A^{-1}`` recomputed from ``A``, which
  is kept for that purpose. That happens about every ``log(2)/(1-g)`` updates of the row, so
  the amortised cost stays ``O(d^2)`` for ``g`` not very close to 0. Forgetting is counted in
  updates of that row, not in wall-clock time: an arm that is not shown does not forget.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, cast

import numpy as np
import scipy.linalg
from numpy.typing import NDArray
from scipy.linalg import blas

from ..errors import BanditError, ConfigError, ValidationError
from ._optional import compiled_module
from .base import (
    TIE_RTOL,
    ArmTable,
    BasePolicy,
    FloatArray,
    IntArray,
    SeedLike,
    aligned_empty,
    check_choice,
    check_in_range,
    check_int,
    check_positive,
    state_array,
)

__all__ = [
    "PRECISIONS",
    "RidgeArmsPolicy",
    "RidgeRows",
    "check_forgetting",
    "rank1_update",
    "spd_inverse",
]

#: Scoring precisions of :class:`RidgeRows` (the learned state is float64 in both).
PRECISIONS = ("float64", "float32")

_dger = blas.dger
_daxpy = blas.daxpy


def check_forgetting(discount: float | None, window: int | None) -> tuple[float | None, int | None]:
    """Validate the forgetting options: ``discount`` in (0, 1), ``window`` >= 1, not both."""
    if discount is not None and window is not None:
        raise ConfigError(
            f"only one of discount and window may be set, got discount={discount!r} "
            f"and window={window!r}",
            field="discount",
            value=discount,
        )
    if discount is not None:
        discount = check_in_range("discount", discount, 0.0, 1.0, low_open=True, high_open=True)
    if window is not None:
        window = check_int("window", window, minimum=1)
    return discount, window


def rank1_update(M: FloatArray, alpha: float, u: FloatArray, v: FloatArray) -> None:
    """``M += alpha * outer(u, v)`` in place for a C-contiguous 2-d ``M`` (BLAS ``dger``).

    ``M.T`` is Fortran-contiguous, so ``dger`` writes into ``M``'s memory without copying; the
    fallback only runs if that assumption ever fails.
    """
    Mt = M.T
    res = _dger(alpha, v, u, a=Mt, overwrite_a=1)
    if res is not Mt:  # pragma: no cover - defensive
        M[...] = res.T


def spd_inverse(A: FloatArray) -> FloatArray:
    """Inverse of a symmetric positive definite matrix via Cholesky, exactly symmetrised.

    Exact symmetry keeps the packed (upper-triangle) scoring equal to the full quadratic form;
    the compiled rank-one update preserves it bit for bit, BLAS ``dger`` to rounding.
    """
    try:
        factor = scipy.linalg.cho_factor(A, lower=True, check_finite=False)
        inv = cast(FloatArray, scipy.linalg.cho_solve(factor, np.eye(A.shape[0])))
    except np.linalg.LinAlgError:  # pragma: no cover - A >= l2*I by construction
        inv = cast(FloatArray, np.linalg.inv(A))
    return 0.5 * (inv + inv.T)


def _bad_x(x: FloatArray) -> BanditError:
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        i = int(bad[0])
        return ValidationError.for_field(f"x[{i}]", float(x[i]), "must be finite")
    return ValidationError.for_field(
        "x", f"norm {float(np.abs(x).max()):.3g}", "is too large (its square overflows)"
    )


class RidgeRows:
    """Stacked ridge regressions of dimension ``dim`` (see the module docstring).

    Row ``n_rows`` always exists and is never written: it holds the prior and serves arms that
    are scored before they are created (``probabilities``, ``score_batch``).
    """

    def __init__(
        self,
        dim: int,
        l2: float,
        *,
        discount: float | None = None,
        window: int | None = None,
        precision: str = "float64",
    ) -> None:
        if discount is not None and window is not None:  # pragma: no cover - policies check
            raise ValueError("only one of discount and window")
        if precision not in PRECISIONS:  # pragma: no cover - policies check
            raise ValueError(f"precision must be one of {PRECISIONS}")
        self.dim = dim
        self.l2 = l2
        self.discount = discount
        self.window = window
        self.precision = precision
        self.n_rows = 0
        d = dim
        self._diag = np.diag_indices(d)
        self._prior_inv = np.eye(d) / l2
        self._prior = np.eye(d) * l2
        self.A_inv: FloatArray = aligned_empty((0, d, d))
        self.b: FloatArray = aligned_empty((0, d))
        self.theta: FloatArray = aligned_empty((0, d))
        self.n_obs: NDArray[np.int64] = aligned_empty((0,), np.int64)
        if discount is not None:
            self.A: FloatArray = aligned_empty((0, d, d))
            self.scale: FloatArray = aligned_empty((0,))
        if window is not None:
            self.win_x: FloatArray = aligned_empty((0, window, d))
            self.win_r: FloatArray = aligned_empty((0, window))
            self.win_len: NDArray[np.int64] = aligned_empty((0,), np.int64)
            self.win_pos: NDArray[np.int64] = aligned_empty((0,), np.int64)
        self._resize(8)
        self._init_scoring()

    # -- storage ----------------------------------------------------------------------------
    def _fields(self) -> list[tuple[str, NDArray[Any] | float]]:
        """Names of the per-row arrays and the value a fresh row holds."""
        out: list[tuple[str, NDArray[Any] | float]] = [
            ("A_inv", self._prior_inv),
            ("b", 0.0),
            ("theta", 0.0),
            ("n_obs", 0),
        ]
        if self.discount is not None:
            out += [("A", self._prior), ("scale", 1.0)]
        if self.window is not None:
            out += [("win_x", 0.0), ("win_r", 0.0), ("win_len", 0), ("win_pos", 0)]
        return out

    def _resize(self, cap: int) -> None:
        for name, fill in self._fields():
            setattr(self, name, _with_rows(getattr(self, name), cap, fill))

    def _init_scoring(self) -> None:
        """The derived scoring structures (see :meth:`mean_var`): none of it is state. The
        packing indices are made on first use: a model that is never scored this way (shared
        Thompson sampling, whose one row can be very wide) never pays for them."""
        self._pk: _Packing | None = None
        self._blocks: OrderedDict[bytes, _ScoreBlock] = OrderedDict()
        self._block_rows = 0
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._last: tuple[IntArray, _ScoreBlock] | None = None
        self._scratch: _ScoreBlock | None = None

    def _packing(self) -> _Packing:
        pk = self._pk
        if pk is None:
            pk = self._pk = _Packing(self.dim, self.precision)
        return pk

    def _empty_block(self, k: int) -> _ScoreBlock:
        # Aligned like every block, so a scratch block computes bit for bit like a cached one.
        d = self.dim
        pk = self._packing()
        tri = aligned_empty((k, pk.tri.shape[0]), pk.dtype)
        sdiag = aligned_empty((k, d)) if self.precision == "float32" else None
        return _ScoreBlock(tri, aligned_empty((k, d)), sdiag)

    # -- copying ----------------------------------------------------------------------------
    # Copies (``copy.copy``, ``copy.deepcopy``, pickle) carry only the authoritative arrays and
    # rebuild the derived scoring blocks, so no copy can score with a snapshot of another's
    # numbers (the blocks are refreshed by ``update``, which only knows its own). The arrays are
    # copied afresh, 64-byte aligned (deepcopy does not preserve alignment).
    _DERIVED: ClassVar[frozenset[str]] = frozenset(
        {"_pk", "_blocks", "_block_rows", "_seen", "_last", "_scratch"}
    )

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in self._DERIVED}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._resize(self.A_inv.shape[0])
        self._init_scoring()

    def _grow(self, n_rows: int) -> None:
        cap = self.A_inv.shape[0]
        if n_rows > cap:
            self._resize(max(n_rows, 2 * cap, 8))

    def ensure_rows(self, n_rows: int) -> None:
        """Make rows ``0..n_rows-1`` exist (new ones hold the prior), plus the spare row."""
        if n_rows + 1 > self.A_inv.shape[0]:
            self._grow(n_rows + 1)
        if n_rows > self.n_rows:
            self.n_rows = n_rows

    # -- scoring ----------------------------------------------------------------------------
    def mean_var(self, x: FloatArray, rows: IntArray) -> tuple[FloatArray, FloatArray]:
        """``(theta_r . x, x' A_r^{-1} x)`` for each row ``r`` in ``rows`` (fresh arrays).

        ``A_r^{-1}`` is symmetric (bit for bit with the compiled update, to rounding with
        BLAS ``dger``, whose ``(i, j)`` and ``(j, i)`` products can round apart), so only its
        upper triangle is read: the rows of a candidate list are scored from a *block*, their
        packed upper triangles ``d (d + 1) / 2`` wide in candidate order, as one matrix-vector
        product ``q = P w`` with ``w_ij = c_ij x_i x_j`` (``c = 1`` on the diagonal, 2 off it),
        plus ``m = Theta x``. That reads half the bytes of the full matrices and needs no
        gather: with 100 arms of 64 features the packed block (1.7 MB) can stay in a 2 MB L2
        cache where the full matrices (3.3 MB) stream from L3 every decision (measured about
        2x faster in a simulation, 3x in isolation). With ``precision="float64"`` the
        arithmetic is float64 throughout; sums run in another order than ``A @ x`` would, so
        results agree with the direct formula to rounding (~1e-16 relative). With
        ``"float32"`` the block holds float32 copies (half the bytes again) and ``q`` carries
        float32 rounding; :meth:`mean_var_bounded` bounds it. ``m`` is always float64.

        Blocks are derived data, not state: a candidate list seen a second time gets a cached
        block (least recently used first out, at most :data:`_MAX_BLOCKS` blocks and about
        twice as many rows as the model has); ``update`` refreshes the cached rows it changes.
        A list seen once is packed into a scratch block of the same layout, so the numbers do
        not depend on whether a block was cached (a restored model scores bit for bit like
        the original).
        """
        blk, w, m = self._prep(x, rows)
        k = rows.shape[0]
        if blk.sdiag is None:
            q = blk.tri[:k] @ w
        else:
            q = (blk.tri[:k] @ w.astype(np.float32)).astype(np.float64)
        # x' A^{-1} x >= 0 in exact arithmetic; clip rounding noise so sqrt stays real.
        np.maximum(q, 0.0, out=q)
        return m, q

    def _prep(self, x: FloatArray, rows: IntArray) -> tuple[_ScoreBlock, FloatArray, FloatArray]:
        """The block of ``rows``, the packed products ``w`` of ``x`` and the means ``m``."""
        blk = self._block(rows)
        return blk, self._products(x), blk.theta[: rows.shape[0]] @ x

    def _products(self, x: FloatArray, out: NDArray[Any] | None = None) -> NDArray[Any]:
        """``w_ij = c_ij x_i x_j`` over the packed upper triangle (into ``out`` if given)."""
        pk = self._packing()
        kernels = _KERNELS if _KERNELS is not None else _load_kernels()
        if kernels:
            w = np.empty(pk.tri.shape[0]) if out is None else out
            kernels.tri_products(x, w)
            return w
        w = x.take(pk.tri_i)
        w *= x.take(pk.tri_j)
        w *= pk.tri_c
        if out is None:
            return w
        out[...] = w  # rounds like astype when out is float32
        return out

    def _err_abs_term(self, x: FloatArray) -> float:
        # |S_ij| <= max diag S <= 2 / l2 (the prior's scale never drops below 1/2); |w| <= 2 x^2
        big = float(np.abs(x).max())
        return float(self._packing().err_abs * (2.0 / self.l2 + 2.0 * big * big + 1.0))

    def mean_var_bounded(
        self, x: FloatArray, rows: IntArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """:meth:`mean_var` plus ``err`` with ``|q - x' A^{-1} x| <= err`` for every row (zeros
        in float64 mode, where ``q`` is exact to float64 rounding).

        float32: ``sum_ij |S_ij w_ij| <= (sum_i sqrt(S_ii) |x_i|)^2`` for a positive
        semi-definite ``S`` (``|S_ij| <= sqrt(S_ii S_jj)``), so the rounding of the float32
        product is at most ``2 gamma_{n+4} (sqrt(diag S) . |x|)^2`` with ``n = d (d + 1) / 2``,
        ``gamma_m = m 2^-24 / (1 - m 2^-24)`` (any summation order; twice the textbook bound
        for margin), plus a term for float32 underflow far below any useful ``q``.
        """
        m, q = self.mean_var(x, rows)
        k = rows.shape[0]
        blk = self._block(rows)
        if blk.sdiag is None:
            return m, q, np.zeros(k)
        err = blk.sdiag[:k] @ np.abs(x)
        err *= err
        err *= self._packing().err_rel
        err += self._err_abs_term(x)
        return m, q, err

    def ucb_float32(self, x: FloatArray, rows: IntArray, alpha: float) -> FloatArray:
        """LinUCB scores ``theta . x + alpha sqrt(x' A^{-1} x)`` in float32 mode: the widths
        from the float32 block, then every arm whose exact score could reach the tie set of the
        best one (:data:`~bandit_engine.policies.base.TIE_RTOL`) rescored in float64
        (:meth:`exact_var`). The argmax and its ties are therefore those of the float64 scores.

        A width ``q`` within ``e`` of the exact one (:meth:`mean_var_bounded`) puts the score
        within ``h = alpha min(e / sqrt(q), sqrt(e))`` of its exact value (``sqrt`` is concave);
        the exact best is at least ``max(score - h)``, so the arms with
        ``score + h >= max(score - h) - TIE_RTOL max(1, |.|)`` are all that can tie with it.
        """
        kernels = _KERNELS if _KERNELS is not None else _load_kernels()
        blk = self._block(rows)
        sdiag = blk.sdiag
        assert sdiag is not None
        k = rows.shape[0]
        if kernels:
            pk = self._packing()
            w32 = pk.w32
            kernels.tri_products(x, w32)
            scores = np.empty(k)
            kernels.ucb_float32(
                blk.theta[:k],
                blk.tri[:k] @ w32,
                sdiag[:k],
                x,
                alpha,
                pk.err_rel,
                pk.err_abs,
                1.0 / self.l2,
                TIE_RTOL,
                self.A_inv,
                rows,
                self.n_obs,
                float(self._prior_inv[0, 0]),
                scores,
            )
            return scores
        err_abs = self._err_abs_term(x)
        w = self._products(x)
        m = blk.theta[:k] @ x
        q = (blk.tri[:k] @ w.astype(np.float32)).astype(np.float64)
        np.maximum(q, 0.0, out=q)
        e = sdiag[:k] @ np.abs(x)
        e *= e
        e *= self._packing().err_rel
        e += err_abs
        sq = np.sqrt(q)
        scores = sq * alpha
        scores += m
        with np.errstate(divide="ignore", invalid="ignore"):
            h = np.minimum(e / sq, np.sqrt(e))
        h *= alpha
        top = float((scores - h).max())
        if not math.isfinite(top):  # a non-finite score: the caller's argmax reports it
            return scores
        near = np.flatnonzero(scores + h >= top - TIE_RTOL * max(1.0, abs(top)))
        exact = self.exact_var(x, rows[near])
        np.sqrt(exact, out=exact)
        exact *= alpha
        exact += m[near]
        scores[near] = exact
        return scores

    def exact_var(self, x: FloatArray, rows: IntArray) -> FloatArray:
        """``x' A_r^{-1} x`` in float64 from the full matrices, for a few rows (the arms a
        float32 score cannot rule out). Rows never updated hold the prior ``I / l2``."""
        out = np.empty(rows.shape[0])
        n_obs, A_inv = self.n_obs, self.A_inv
        prior = -1.0
        for i, r in enumerate(rows.tolist()):
            if n_obs[r] == 0:
                if prior < 0.0:
                    prior = float(x @ x) * float(self._prior_inv[0, 0])
                out[i] = prior
            else:
                out[i] = max(float((A_inv[r] @ x) @ x), 0.0)
        return out

    def _block(self, rows: IntArray) -> _ScoreBlock:
        """The scoring block of ``rows`` (cached, or the scratch block filled now)."""
        last = self._last
        # Identity is enough for the read-only row arrays ArmTable hands out for a recurring
        # candidate tuple; a writeable array could have changed since, so it is looked up.
        if last is not None and last[0] is rows and not rows.flags.writeable:
            return last[1]
        key = rows.tobytes()
        blk = self._blocks.get(key)
        if blk is not None:
            self._blocks.move_to_end(key)
        elif key in self._seen:
            del self._seen[key]
            blk = self._empty_block(rows.shape[0])
            for i, r in enumerate(rows.tolist()):
                blk.where.setdefault(r, []).append(i)
            self._fill(blk, rows)
            self._admit(key, blk)
        else:
            self._seen[key] = None
            if len(self._seen) > _MAX_SEEN:
                self._seen.popitem(last=False)
            k = rows.shape[0]
            scratch = self._scratch
            if scratch is None or scratch.tri.shape[0] < k:
                size = k if scratch is None else max(k, 2 * scratch.tri.shape[0])
                scratch = self._scratch = self._empty_block(size)
            self._fill(scratch, rows)
            return scratch
        self._last = (rows, blk)
        return blk

    def _fill(self, blk: _ScoreBlock, rows: IntArray, start: int = 0) -> None:
        """Pack ``A_inv[rows]`` and ``theta[rows]`` into block rows ``start ..``."""
        flat = self.A_inv.reshape(self.A_inv.shape[0], -1)
        stop = start + rows.shape[0]
        pk = self._packing()
        kernels = _KERNELS if _KERNELS is not None else _load_kernels()
        if kernels:
            sdiag = blk.sdiag if blk.sdiag is not None else _NO_ROWS_2D
            kernels.pack_rows(
                flat, self.theta, rows, pk.tri, pk.diag_flat, blk.tri, blk.theta, sdiag, start
            )
            return
        tri, dst = pk.tri, blk.tri
        for i, r in enumerate(rows.tolist(), start):
            dst[i] = flat[r][tri]
        if blk.sdiag is not None:
            sd = blk.sdiag[start:stop]
            sd[...] = flat[rows[:, None], pk.diag_flat]
            np.sqrt(np.maximum(sd, 0.0, out=sd), out=sd)
        np.take(self.theta, rows, axis=0, out=blk.theta[start:stop])

    def _admit(self, key: bytes, blk: _ScoreBlock) -> None:
        self._blocks[key] = blk
        self._block_rows += blk.tri.shape[0]
        limit = 2 * self.n_rows + _SPARE_BLOCK_ROWS
        while len(self._blocks) > 1 and (
            len(self._blocks) > _MAX_BLOCKS or self._block_rows > limit
        ):
            _, old = self._blocks.popitem(last=False)
            self._block_rows -= old.tri.shape[0]
            if self._last is not None and self._last[1] is old:
                self._last = None

    def _refresh(self, row: int) -> None:
        """Copy ``row``'s new numbers into every cached block that holds it."""
        one = self._packing().one
        one[0] = row
        for blk in self._blocks.values():
            pos = blk.where.get(row)
            if pos is not None:
                for i in pos:
                    self._fill(blk, one, i)

    def means(self, X: FloatArray, rows: IntArray) -> FloatArray:
        """``X @ theta[rows].T``: ``(n, k)`` estimated means."""
        return X @ self.theta[rows].T

    # -- learning ---------------------------------------------------------------------------
    def update(self, row: int, x: FloatArray, reward: float) -> None:
        """Add observation ``(x, reward)`` to ``row`` (raises before any change on bad ``x``)."""
        Ai = self.A_inv[row]
        b = self.b[row]
        if self.discount is not None:
            self._update_discounted(row, Ai, b, x, reward)
        elif self.window is not None:
            self._update_windowed(row, Ai, b, x, reward)
        else:
            kernels = _KERNELS if _KERNELS is not None else _load_kernels()
            if kernels:
                # compiled: the same update in one pass with fewer calls (rounding aside)
                if not kernels.rank1_learn(Ai, b, self.theta[row], x, reward):
                    raise _bad_x(x)
                self.n_obs[row] += 1
                if self._blocks:
                    self._refresh(row)
                return
            u = Ai @ x
            den = 1.0 + float(x @ u)
            if not math.isfinite(den):
                raise _bad_x(x)
            rank1_update(Ai, -1.0 / den, u, u)
            _daxpy(x, b, a=reward)
        np.matmul(Ai, b, out=self.theta[row])
        self.n_obs[row] += 1
        if self._blocks:
            self._refresh(row)

    def _update_discounted(
        self, row: int, Ai: FloatArray, b: FloatArray, x: FloatArray, reward: float
    ) -> None:
        g = cast(float, self.discount)
        if not math.isfinite(float(x @ x)):
            raise _bad_x(x)
        Ai *= 1.0 / g  # (g A)^{-1}
        u = Ai @ x
        rank1_update(Ai, -1.0 / (1.0 + float(x @ u)), u, u)
        b *= g
        _daxpy(x, b, a=reward)
        A = self.A[row]
        A *= g
        rank1_update(A, 1.0, x, x)
        s = float(self.scale[row]) * g
        if s < 0.5:
            A[self._diag] += (1.0 - s) * self.l2
            s = 1.0
            Ai[...] = spd_inverse(A)
        self.scale[row] = s

    def _update_windowed(
        self, row: int, Ai: FloatArray, b: FloatArray, x: FloatArray, reward: float
    ) -> None:
        W = cast(int, self.window)
        if not math.isfinite(float(x @ x)):
            raise _bad_x(x)
        pos = int(self.win_pos[row])
        refresh = False
        if self.win_len[row] == W:
            xo = self.win_x[row, pos]
            u = Ai @ xo
            den = 1.0 - float(xo @ u)
            # den >= l2 / (l2 + |xo|^2) in exact arithmetic; tiny means cancellation.
            if den > 1e-10:
                rank1_update(Ai, 1.0 / den, u, u)
                _daxpy(xo, b, a=-float(self.win_r[row, pos]))
            else:  # pragma: no cover - needs extreme scaling
                refresh = True
        else:
            self.win_len[row] += 1
        u = Ai @ x
        rank1_update(Ai, -1.0 / (1.0 + float(x @ u)), u, u)
        _daxpy(x, b, a=reward)
        self.win_x[row, pos] = x
        self.win_r[row, pos] = reward
        pos = (pos + 1) % W
        self.win_pos[row] = pos
        if pos == 0 or refresh:
            self._refit_window(row)

    def _refit_window(self, row: int) -> None:
        n = int(self.win_len[row])
        X = self.win_x[row, :n]
        A = X.T @ X
        A[self._diag] += self.l2
        self.A_inv[row] = spd_inverse(A)
        self.b[row] = X.T @ self.win_r[row, :n]

    # -- state ------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """Copies of the learned arrays of rows ``0..n_rows-1``."""
        n = self.n_rows
        out: dict[str, Any] = {
            "A_inv": self.A_inv[:n].copy(),
            "b": self.b[:n].copy(),
            "theta": self.theta[:n].copy(),
            "n_obs": self.n_obs[:n].copy(),
        }
        if self.discount is not None:
            out["A"] = self.A[:n].copy()
            out["prior_scale"] = self.scale[:n].copy()
        if self.window is not None:
            out["window_x"] = self.win_x[:n].copy()
            out["window_r"] = self.win_r[:n].copy()
            out["window_len"] = self.win_len[:n].copy()
            out["window_pos"] = self.win_pos[:n].copy()
        return out

    def set_state(self, state: Any, n_rows: int) -> None:
        """Restore :meth:`get_state` output for ``n_rows`` rows; validates before changing."""
        d, n = self.dim, n_rows
        new: dict[str, NDArray[Any]] = {
            "A_inv": state_array(state, "A_inv", (n, d, d)),
            "b": state_array(state, "b", (n, d)),
            "theta": state_array(state, "theta", (n, d)),
            "n_obs": state_array(state, "n_obs", (n,), np.int64),
        }
        if self.discount is not None:
            new["A"] = state_array(state, "A", (n, d, d))
            new["scale"] = state_array(state, "prior_scale", (n,))
            if np.any((new["scale"] < 0.5) | (new["scale"] > 1.0)):
                raise ValidationError.for_field(
                    "state.prior_scale", new["scale"].tolist(), "must lie in [0.5, 1]"
                )
        if self.window is not None:
            W = self.window
            new["win_x"] = state_array(state, "window_x", (n, W, d))
            new["win_r"] = state_array(state, "window_r", (n, W))
            new["win_len"] = state_array(state, "window_len", (n,), np.int64)
            new["win_pos"] = state_array(state, "window_pos", (n,), np.int64)
            for key, name, top in (("win_len", "window_len", W), ("win_pos", "window_pos", W - 1)):
                if np.any((new[key] < 0) | (new[key] > top)):
                    raise ValidationError.for_field(
                        f"state.{name}", new[key].tolist(), f"must lie in [0, {top}]"
                    )
        for key, arr in new.items():
            setattr(self, key, arr)
        self.n_rows = n
        self._resize(n + 1)  # the spare prior row
        self._init_scoring()  # no block may outlive the numbers it copied


_NO_ROWS_2D: FloatArray = np.empty((0, 0))

# The compiled helpers (:mod:`._ridge_numba`): None until first needed, then the module or False.
_KERNELS: Any = None


def _load_kernels() -> Any:
    global _KERNELS
    _KERNELS = compiled_module("_ridge_numba") or False
    return _KERNELS


#: Cached scoring blocks per RidgeRows, and candidate lists remembered as seen once.
_MAX_BLOCKS = 32
_MAX_SEEN = 256
#: Cached blocks may hold ``2 * n_rows + _SPARE_BLOCK_ROWS`` rows in all.
_SPARE_BLOCK_ROWS = 256


class _Packing:
    """Index arrays and constants of the packed upper triangle of a ``d x d`` matrix."""

    __slots__ = (
        "diag_flat",
        "dtype",
        "err_abs",
        "err_rel",
        "one",
        "tri",
        "tri_c",
        "tri_i",
        "tri_j",
        "w32",
    )

    def __init__(self, d: int, precision: str) -> None:
        iu, ju = np.triu_indices(d)
        self.tri: IntArray = (iu * d + ju).astype(np.intp)  # packed entry -> A_inv[row].flat
        self.tri_i: IntArray = iu.astype(np.intp)
        self.tri_j: IntArray = ju.astype(np.intp)
        # x_i x_j counts twice off the diagonal: x' S x = sum_{i<=j} c_ij S_ij x_i x_j
        self.tri_c: FloatArray = np.where(iu == ju, 1.0, 2.0)
        self.diag_flat: IntArray = (np.arange(d) * (d + 1)).astype(np.intp)
        self.dtype: type = np.float32 if precision == "float32" else np.float64
        n = self.tri.shape[0]
        # float32 error bound (see RidgeRows.mean_var_bounded): any summation order of the n
        # products, with the rounding of S and w to float32, errs by at most
        # gamma_{n+4} * sum |S_t w_t| (gamma_m = m u / (1 - m u), u = 2^-24), taken twice for
        # margin; plus a term for float32 underflow.
        u32 = math.ldexp(1.0, -24)
        gamma = (n + 4) * u32 / (1.0 - (n + 4) * u32)
        self.err_rel = 2.0 * gamma
        self.err_abs = 2.0 * (n + 4) * math.ldexp(1.0, -149)
        self.one: IntArray = np.zeros(1, dtype=np.intp)  # the row RidgeRows._refresh packs
        size = n if precision == "float32" else 0
        self.w32: NDArray[np.float32] = aligned_empty((size,), np.float32)  # products, float32


class _ScoreBlock:
    """Packed upper triangles (``tri``, float64 or float32) and estimates (``theta``) of some
    rows of a :class:`RidgeRows`, in the order of one candidate list; in float32 mode also
    ``sdiag = sqrt(diag A^{-1})`` for the error bound. ``where`` maps a row to its positions
    (several only for the shared prior row)."""

    __slots__ = ("sdiag", "theta", "tri", "where")

    def __init__(self, tri: NDArray[Any], theta: FloatArray, sdiag: FloatArray | None) -> None:
        self.tri = tri
        self.theta = theta
        self.sdiag = sdiag
        self.where: dict[int, list[int]] = {}


def _with_rows(arr: NDArray[Any], n_rows: int, fill: NDArray[Any] | float) -> NDArray[Any]:
    """A fresh aligned array of exactly ``n_rows`` rows: ``arr``'s rows, then ``fill``."""
    out = aligned_empty((n_rows, *arr.shape[1:]), arr.dtype.type)
    m = min(arr.shape[0], n_rows)
    out[:m] = arr[:m]
    out[m:] = fill
    return out


class RidgeArmsPolicy(BasePolicy):
    """Base of the policies that keep one :class:`RidgeRows` row per arm on the context ``x``
    (disjoint LinUCB, disjoint linear Thompson sampling): arm bookkeeping, learning, batch
    scoring and state. ``arm_features`` are only checked for shape."""

    def __init__(
        self,
        *,
        l2: float,
        discount: float | None,
        window: int | None,
        seed: SeedLike,
        precision: str = "float64",
    ) -> None:
        super().__init__(seed=seed)
        self.l2 = check_positive("l2", l2)
        self.discount, self.window = check_forgetting(discount, window)
        self.precision = check_choice("precision", precision, PRECISIONS)
        self.arms_ = ArmTable()
        self.ridge_: RidgeRows | None = None

    def _new_ridge(self, d: int) -> RidgeRows:
        return RidgeRows(
            d, self.l2, discount=self.discount, window=self.window, precision=self.precision
        )

    def _init_dims(self, d: int, p: int) -> None:
        self.ridge_ = self._new_ridge(d)

    def _prepare(
        self, x: FloatArray, arms: Sequence[str], arm_features: FloatArray
    ) -> tuple[FloatArray, RidgeRows, IntArray]:
        """Validate a decision, create unseen arms; returns ``(x, ridge, rows)``."""
        x, _ = self._check_inputs(x, arms, arm_features)
        rows, _, n_new = self.arms_.rows(arms)
        ridge = self.ridge_
        assert ridge is not None
        if n_new:
            ridge.ensure_rows(len(self.arms_))
        return x, ridge, rows

    def _lookup(
        self, x: FloatArray, arms: Sequence[str], arm_features: FloatArray
    ) -> tuple[FloatArray, RidgeRows, IntArray]:
        """Like :meth:`_prepare` but read-only: unseen arms are scored from the prior row."""
        x, _ = self._check_inputs(x, arms, arm_features)
        ridge = self.ridge_
        assert ridge is not None
        return x, ridge, self.arms_.lookup(arms, missing=ridge.n_rows)

    def update(
        self,
        x: FloatArray,
        arm: str,
        arm_features: FloatArray,
        reward: float,
        propensity: float = 1.0,
    ) -> None:
        """Add ``(x, reward)`` to ``arm``'s regression. ``propensity`` is validated but unused:
        the policy learns the reward of what it was shown, which needs no reweighting."""
        x, _, r = self._check_update(x, arm, arm_features, reward, propensity)
        ridge = self.ridge_
        assert ridge is not None
        row, created = self.arms_.row(arm)
        if created:
            ridge.ensure_rows(len(self.arms_))
        ridge.update(row, x, r)
        self.n_updates_ += 1

    def score_batch(
        self, X: FloatArray, arms: Sequence[str], arm_features: FloatArray
    ) -> FloatArray:
        """Estimated mean rewards ``theta_a . x`` for every row of ``X`` and arm: ``(n, k)``."""
        X, _ = self._check_batch(X, arms, arm_features)
        ridge = self.ridge_
        assert ridge is not None
        return ridge.means(X, self.arms_.lookup(arms, missing=ridge.n_rows))

    def _learned_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"arms": list(self.arms_.ids)}
        if self.ridge_ is not None:
            state.update(self.ridge_.get_state())
        return state

    def _set_learned_state(self, state: Mapping[str, Any]) -> None:
        arms = state.get("arms")
        if not isinstance(arms, list | tuple):
            raise ValidationError.for_field("state.arms", arms, "must be a list of arm ids")
        table = ArmTable()
        table.set_ids(arms)
        ridge = None
        if self.n_features_ is not None:
            ridge = self._new_ridge(self.n_features_)
            ridge.set_state(state, len(table))
        elif arms:
            raise ValidationError.for_field("state.n_features", None, "must be set when arms exist")
        self.arms_, self.ridge_ = table, ridge
