"""Speed machinery for the pair policies' confidence widths: per-arm caches of the static part.

The width of candidate ``a`` is ``w' M w`` with ``M = A0^-1`` (``p x p``) and ``w = s_a - B_a /
A_a``. Computing it for ``k`` candidates costs ``k p^2``. When the first ``ps`` columns of every
row are a function of the bundle alone (bundle features, topic x cuisine, part one-hots: the
engine puts them first), split ``w = [ws, wd]`` and ``M`` into blocks::

    w' M w = ws' M_ss ws + 2 (M_ds ws) . wd + wd' M_dd wd

The first term ``q_a`` and the vector ``r_a = M_ds ws`` depend only on the arm and ``M``; they are
kept per arm and carried through each rank-3 Woodbury step ``M <- M - AU C^-1 AU'`` in
``O(n ps)``, so a decision costs ``k pd^2`` instead of ``k p^2`` (``pd = p - ps``). The numbers
are the same up to rounding. Safety: each arm keeps the static row it was cached for; a candidate
whose static columns differ (a catalog change, a caller that does not follow the layout) is
recomputed, so a wrong ``n_static`` costs speed, never correctness. An arm's cache is dropped
when its own ``B_a`` changes and every cache is dropped when ``M`` is recomputed exactly.
"""

from __future__ import annotations

import numpy as np

from ._arrays import FloatArray, IntArray

__all__ = ["StaticWidthCache"]


class StaticWidthCache:
    """Per-arm ``(static row, ws, q, r)`` for the leading ``n_static`` columns (see module)."""

    def __init__(self, n_static: int, p: int) -> None:
        self.ps = int(n_static)
        self.p = int(p)
        pd = self.p - self.ps
        self.rows: FloatArray = np.zeros((0, self.ps))  # the static row each cache was made for
        self.ws: FloatArray = np.zeros((0, self.ps))
        self.q: FloatArray = np.zeros(0)
        self.r: FloatArray = np.zeros((0, pd))
        self.valid = np.zeros(0, dtype=bool)

    def grow(self, n: int) -> None:
        m = self.valid.shape[0]
        if n <= m:
            return
        cap = max(n, 2 * m, 16)
        pd = self.p - self.ps

        def more(a: FloatArray, width: int | None) -> FloatArray:
            out = np.zeros((cap, width) if width is not None else cap)
            out[:m] = a
            return out

        self.rows, self.ws = more(self.rows, self.ps), more(self.ws, self.ps)
        self.q, self.r = more(self.q, None), more(self.r, pd)
        valid = np.zeros(cap, dtype=bool)
        valid[:m] = self.valid
        self.valid = valid

    def clear(self) -> None:
        self.valid[:] = False

    def drop(self, arm_row: int) -> None:
        if arm_row < self.valid.shape[0]:
            self.valid[arm_row] = False

    def widths(self, M: FloatArray, S: FloatArray, W: FloatArray, rows: IntArray) -> FloatArray:
        """``w' M w`` for every candidate (rows of ``W``), arms at ``rows``, rows ``S``."""
        ps = self.ps
        self.grow(int(rows.max()) + 1 if rows.size else 0)
        Ss, Ws, Wd = S[:, :ps], W[:, :ps], W[:, ps:]
        stale = ~self.valid[rows]
        stale |= (self.rows[rows] != Ss).any(axis=1)
        if stale.any():
            i = rows[stale]
            ws = Ws[stale]
            self.rows[i] = Ss[stale]
            self.ws[i] = ws
            self.q[i] = np.einsum("ij,ij->i", ws @ M[:ps, :ps], ws)
            self.r[i] = ws @ M[ps:, :ps].T
            self.valid[i] = True
        var: FloatArray = self.q[rows] + 2.0 * np.einsum("ij,ij->i", self.r[rows], Wd)
        var += np.einsum("ij,ij->i", Wd @ M[ps:, ps:], Wd)
        return var

    def woodbury(self, AU: FloatArray, core_inv: FloatArray) -> None:
        """Carry every valid cache through ``M <- M - AU core^-1 AU'``."""
        if not self.valid.any():
            return
        # on every row, valid or not (stale rows are recomputed before use): no gather/scatter
        T = self.ws @ AU[: self.ps]  # (n, m): ws' AU_s
        TC = T @ core_inv
        self.q -= np.einsum("ij,ij->i", TC, T)
        self.r -= TC @ AU[self.ps :].T
