"""The optional compiled kernels, loaded by name, each with a numpy twin of the same meaning.

``kernels.<name>(...)`` is the compiled kernel (extra ``fast``: numba, modules
:mod:`._ridge_numba` and :mod:`._ts_numba`) when numba is installed and the environment variable
``BANDIT_ENGINE_NO_NUMBA`` is empty or unset, else its numpy twin below. Each pair takes the same
arguments and writes the same outputs; where they do not round alike, the kernel's docstring
says by how much they differ (tested). The choice is made on first use and kept until
:meth:`Kernels.load` or :meth:`Kernels.reset` (tests and benchmarks switch with them).

Ridge statistics and packed scoring: ``tri_products``, ``pack_rows``, ``rank1_learn``;
LinUCB's float32 scoring: ``ucb_float32``; disjoint Thompson sampling: ``ts_sample``,
``ts_choose`` and ``prob_max_normal``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._arrays import FloatArray, IntArray
from ._linalg import axpy, rank1_update
from ._linucb_float32 import ucb_float32_numpy
from ._optional import compiled_module
from ._ts_propensity import KERNEL_GRIDS, KERNEL_PARAMS, prob_max_normal_numpy

__all__ = ["Kernels", "kernels", "tri_index"]


@functools.cache
def tri_index(d: int) -> tuple[IntArray, IntArray, FloatArray]:
    """``(i, j, c)`` of the packed upper triangle of a ``d x d`` matrix in row order, with
    ``c = 1`` on the diagonal and 2 off it (``x' S x = sum_{i<=j} c_ij S_ij x_i x_j``)."""
    iu, ju = np.triu_indices(d)
    out = (iu.astype(np.intp), ju.astype(np.intp), np.where(iu == ju, 1.0, 2.0))
    for arr in out:
        arr.setflags(write=False)  # shared by every caller with this d
    return out


# -- numpy twins -------------------------------------------------------------------------------
def tri_products_numpy(x: FloatArray, out: NDArray[Any]) -> None:
    """``out`` = the packed outer product of ``x``: ``(x_i * x_j) * c_ij`` over the upper
    triangle (:func:`tri_index`), rounded to ``out``'s dtype as ``astype`` would."""
    i, j, c = tri_index(x.shape[0])
    w = x.take(i)
    w *= x.take(j)
    w *= c
    out[...] = w


def pack_rows_numpy(
    flat: FloatArray,
    theta: FloatArray,
    rows: IntArray,
    tri: IntArray,
    diag: IntArray,
    dst: NDArray[Any],
    dst_theta: FloatArray,
    sdiag: FloatArray,
    start: int,
) -> None:
    """For each ``i``: ``dst[start + i] = flat[rows[i]][tri]`` (cast to ``dst``'s dtype),
    ``dst_theta[start + i] = theta[rows[i]]`` and, when ``sdiag`` has rows,
    ``sdiag[start + i] = sqrt(max(flat[rows[i]][diag], 0))``."""
    stop = start + rows.shape[0]
    for i, r in enumerate(rows.tolist(), start):
        dst[i] = flat[r][tri]
    if sdiag.shape[0]:
        sd = sdiag[start:stop]
        sd[...] = flat[rows[:, None], diag]
        np.sqrt(np.maximum(sd, 0.0, out=sd), out=sd)
    np.take(theta, rows, axis=0, out=dst_theta[start:stop])


def rank1_learn_numpy(
    a_inv: FloatArray, b: FloatArray, theta: FloatArray, x: FloatArray, reward: float
) -> bool:
    """One ridge observation without forgetting, in place: Sherman–Morrison
    ``A^{-1} -= u u' / (1 + x' u)`` with ``u = A^{-1} x`` (BLAS ``dger``), ``b += reward x``,
    ``theta = A^{-1} b``. Returns False, changing nothing, when ``1 + x' u`` is not finite."""
    u = a_inv @ x
    den = 1.0 + float(x @ u)
    if not math.isfinite(den):
        return False
    rank1_update(a_inv, -1.0 / den, u, u)
    axpy(x, b, a=reward)
    np.matmul(a_inv, b, out=theta)
    return True


def ts_sample_numpy(m: FloatArray, q: FloatArray, z: FloatArray, v: float) -> int:
    """Disjoint Thompson sampling's draw, in place: ``q`` becomes
    ``sd = max(v sqrt(q), 1e-12 max(1, max |m|))``, ``z`` (standard normals) becomes the scores
    ``z sd + m``; returns their argmax (the first one; the first NaN if any)."""
    sd = np.sqrt(q, out=q)
    sd *= v
    floor = 1e-12 * max(1.0, float(np.abs(m).max()))
    np.maximum(sd, floor, out=sd)
    z *= sd
    z += m
    return int(z.argmax())


def ts_choose_numpy(m: FloatArray, q: FloatArray, z: FloatArray, v: float) -> tuple[int, float]:
    """An epsilon-free disjoint TS decision: :func:`ts_sample_numpy`, then the probability that
    the argmax wins (:func:`._ts_propensity.prob_max_normal_numpy`; NaN when its score is not
    finite)."""
    index = ts_sample_numpy(m, q, z, v)
    if not math.isfinite(float(z[index])):
        return index, math.nan
    return index, prob_max_normal_numpy(m, q, index)


# -- the switch --------------------------------------------------------------------------------
class Kernels:
    """The kernels in use, as attributes (see the module docstring).

    The attributes are bound on first access (a plain attribute lookup after that: these sit on
    the per-decision path), from the compiled modules when they load, else from the twins.
    """

    tri_products: Callable[[FloatArray, NDArray[Any]], None]
    pack_rows: Callable[..., None]
    rank1_learn: Callable[[FloatArray, FloatArray, FloatArray, FloatArray, float], bool]
    ucb_float32: Callable[..., bool]
    ts_sample: Callable[[FloatArray, FloatArray, FloatArray, float], int]
    ts_choose: Callable[[FloatArray, FloatArray, FloatArray, float], tuple[int, float]]
    prob_max_normal: Callable[[FloatArray, FloatArray, int], float]
    #: True when the compiled kernels are bound.
    compiled: bool

    _NAMES = frozenset(
        {
            "compiled",
            "pack_rows",
            "prob_max_normal",
            "rank1_learn",
            "tri_products",
            "ts_choose",
            "ts_sample",
            "ucb_float32",
        }
    )

    def __getattr__(self, name: str) -> Any:
        if name not in self._NAMES:
            raise AttributeError(name)
        self.load()
        return self.__dict__[name]

    def load(self, numba: bool = True) -> None:
        """Bind the compiled kernels if ``numba`` is True, numba importable and
        ``BANDIT_ENGINE_NO_NUMBA`` not set; otherwise the numpy twins."""
        ridge = compiled_module("_ridge_numba") if numba else None
        ts = compiled_module("_ts_numba") if ridge is not None else None
        if ridge is None or ts is None:
            self.__dict__.update(
                compiled=False,
                tri_products=tri_products_numpy,
                pack_rows=pack_rows_numpy,
                rank1_learn=rank1_learn_numpy,
                ucb_float32=ucb_float32_numpy,
                ts_sample=ts_sample_numpy,
                ts_choose=ts_choose_numpy,
                prob_max_normal=prob_max_normal_numpy,
            )
            return
        args = (KERNEL_PARAMS, *KERNEL_GRIDS, ts.PHI_TABLE)
        propensity, fused = ts.prob_max_normal_kernel, ts.choose_disjoint

        def prob_max_normal(mu: FloatArray, sd: FloatArray, a: int) -> float:
            if mu.shape[0] < 3:  # the closed forms
                return prob_max_normal_numpy(mu, sd, a)
            return float(
                propensity(
                    np.ascontiguousarray(mu, dtype=np.float64),
                    np.ascontiguousarray(sd, dtype=np.float64),
                    int(a),
                    *args,
                )
            )

        def ts_choose(m: FloatArray, q: FloatArray, z: FloatArray, v: float) -> tuple[int, float]:
            index, p = fused(m, q, z, v, *args)
            return int(index), float(p)

        self.__dict__.update(
            compiled=True,
            tri_products=ridge.tri_products,
            pack_rows=ridge.pack_rows,
            rank1_learn=ridge.rank1_learn,
            ucb_float32=ridge.ucb_float32,
            ts_sample=ts.sample_scores,
            ts_choose=ts_choose,
            prob_max_normal=prob_max_normal,
        )

    def reset(self) -> None:
        """Forget the choice: the next use decides again (reading the environment again)."""
        for name in self._NAMES:
            self.__dict__.pop(name, None)


#: The kernels every policy module calls.
kernels = Kernels()
