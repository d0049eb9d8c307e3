"""Speed machinery of :class:`~bandit_engine.policies._ridge.RidgeRows`: scoring a candidate list
from one packed block, with an LRU cache of blocks and float32 bounds.

Nothing here is state: a :class:`PackedScorer` is derived from the regression's arrays, rebuilt
on copy and load, and told of every changed row through :meth:`PackedScorer.refresh`. The numbers
are those of ``theta_r . x`` and ``x' A_r^{-1} x`` (see :meth:`PackedScorer.mean_var`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from ._optional import compiled_module
from .base import TIE_RTOL, FloatArray, IntArray, aligned_empty

__all__ = ["PackedScorer", "Rows", "ridge_kernels"]


class Rows(Protocol):
    """What the scorer reads of the regression."""

    dim: int
    l2: float
    precision: str
    n_rows: int
    A_inv: FloatArray
    theta: FloatArray
    n_obs: NDArray[np.int64]

    @property
    def prior_inv(self) -> FloatArray: ...


# The compiled helpers (:mod:`._ridge_numba`): None until first needed, then the module or False.
_KERNELS: Any = None


def ridge_kernels() -> Any:
    """The compiled ridge helpers when numba is installed and not switched off
    (``BANDIT_ENGINE_NO_NUMBA``), else ``None``: callers then use the numpy twins."""
    global _KERNELS
    if _KERNELS is None:
        _KERNELS = compiled_module("_ridge_numba") or False
    return _KERNELS or None


_NO_ROWS_2D: FloatArray = np.empty((0, 0))

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


class PackedScorer:
    """Scores rows of a regression from packed per-candidate-list blocks (see :meth:`mean_var`)."""

    def __init__(self, rows: Rows) -> None:
        self.rows = rows
        # The packing indices are made on first use: a model that is never scored this way
        # (shared Thompson sampling, whose one row can be very wide) never pays for them.
        self._pk: _Packing | None = None
        self._blocks: OrderedDict[bytes, _ScoreBlock] = OrderedDict()
        self._block_rows = 0
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._last: tuple[IntArray, _ScoreBlock] | None = None
        self._scratch: _ScoreBlock | None = None

    def packing(self) -> _Packing:
        pk = self._pk
        if pk is None:
            pk = self._pk = _Packing(self.rows.dim, self.rows.precision)
        return pk

    def _empty_block(self, k: int) -> _ScoreBlock:
        # Aligned like every block, so a scratch block computes bit for bit like a cached one.
        d = self.rows.dim
        pk = self.packing()
        tri = aligned_empty((k, pk.tri.shape[0]), pk.dtype)
        sdiag = aligned_empty((k, d)) if self.rows.precision == "float32" else None
        return _ScoreBlock(tri, aligned_empty((k, d)), sdiag)

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
        pk = self.packing()
        kernels = ridge_kernels()
        if kernels is not None:
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
        return float(self.packing().err_abs * (2.0 / self.rows.l2 + 2.0 * big * big + 1.0))

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
        err *= self.packing().err_rel
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
        kernels = ridge_kernels()
        blk = self._block(rows)
        sdiag = blk.sdiag
        assert sdiag is not None
        k = rows.shape[0]
        if kernels is not None:
            pk = self.packing()
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
                1.0 / self.rows.l2,
                TIE_RTOL,
                self.rows.A_inv,
                rows,
                self.rows.n_obs,
                float(self.rows.prior_inv[0, 0]),
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
        e *= self.packing().err_rel
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
        n_obs, A_inv = self.rows.n_obs, self.rows.A_inv
        prior = -1.0
        for i, r in enumerate(rows.tolist()):
            if n_obs[r] == 0:
                if prior < 0.0:
                    prior = float(x @ x) * float(self.rows.prior_inv[0, 0])
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
        flat = self.rows.A_inv.reshape(self.rows.A_inv.shape[0], -1)
        stop = start + rows.shape[0]
        pk = self.packing()
        kernels = ridge_kernels()
        if kernels is not None:
            sdiag = blk.sdiag if blk.sdiag is not None else _NO_ROWS_2D
            kernels.pack_rows(
                flat, self.rows.theta, rows, pk.tri, pk.diag_flat, blk.tri, blk.theta, sdiag, start
            )
            return
        tri, dst = pk.tri, blk.tri
        for i, r in enumerate(rows.tolist(), start):
            dst[i] = flat[r][tri]
        if blk.sdiag is not None:
            sd = blk.sdiag[start:stop]
            sd[...] = flat[rows[:, None], pk.diag_flat]
            np.sqrt(np.maximum(sd, 0.0, out=sd), out=sd)
        np.take(self.rows.theta, rows, axis=0, out=blk.theta[start:stop])

    def _admit(self, key: bytes, blk: _ScoreBlock) -> None:
        self._blocks[key] = blk
        self._block_rows += blk.tri.shape[0]
        limit = 2 * self.rows.n_rows + _SPARE_BLOCK_ROWS
        while len(self._blocks) > 1 and (
            len(self._blocks) > _MAX_BLOCKS or self._block_rows > limit
        ):
            _, old = self._blocks.popitem(last=False)
            self._block_rows -= old.tri.shape[0]
            if self._last is not None and self._last[1] is old:
                self._last = None

    def refresh(self, row: int) -> None:
        """Copy ``row``'s new numbers into every cached block that holds it (the one hook the
        regression calls after changing a row)."""
        if not self._blocks:
            return
        one = self.packing().one
        one[0] = row
        for blk in self._blocks.values():
            pos = blk.where.get(row)
            if pos is not None:
                for i in pos:
                    self._fill(blk, one, i)
