"""In-place linear algebra of the ridge statistics: BLAS rank-one updates, SPD inverses."""

from __future__ import annotations

from typing import cast

import numpy as np
import scipy.linalg
from scipy.linalg import blas

from ._arrays import FloatArray

__all__ = ["axpy", "rank1_update", "spd_inverse"]

_dger = blas.dger
#: ``y += a * x`` in place (BLAS ``daxpy``): ``axpy(x, y, a=a)``.
axpy = blas.daxpy


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
