"""Stacked ridge regressions with rank-one updates and optional forgetting: the statistics.

One :class:`RidgeRows` object holds many independent ridge regressions of the same dimension
(one per arm for disjoint LinUCB / Thompson sampling, a single one for shared Thompson sampling)
as stacked arrays. Fast scoring of candidate lists from packed copies of these numbers is
:class:`~bandit_engine.policies._packed.PackedRows`, a subclass; this module holds only the
statistics, their learning and their state.

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

Every change to a row ends in one call of the hook :meth:`RidgeRows._changed` (``None`` for
"every row", after :meth:`RidgeRows.set_state` or a copy): a subclass that keeps derived copies
of the rows refreshes or drops them there, and nowhere else.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, cast

import numpy as np
from numpy.typing import NDArray

from ..errors import BanditError, ConfigError, ValidationError
from ._arrays import FloatArray, IntArray, aligned_empty, state_array
from ._checks import check_in_range, check_int
from ._kernels import kernels
from ._linalg import axpy, rank1_update, spd_inverse

__all__ = ["RidgeRows", "check_forgetting"]


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

    #: Attributes that are derived data, not state: left out of copies (see ``__getstate__``).
    _DERIVED: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        dim: int,
        l2: float,
        *,
        discount: float | None = None,
        window: int | None = None,
    ) -> None:
        if discount is not None and window is not None:  # pragma: no cover - policies check
            raise ValueError("only one of discount and window")
        self.dim = dim
        self.l2 = l2
        self.discount = discount
        self.window = window
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

    # -- copying ----------------------------------------------------------------------------
    # Copies (``copy.copy``, ``copy.deepcopy``, pickle) carry only the authoritative arrays; a
    # subclass's derived data (``_DERIVED``) is rebuilt through ``_changed(None)``, so no copy
    # can score with a snapshot of another's numbers (derived data is refreshed by ``update``,
    # which only knows its own). The arrays are copied afresh, 64-byte aligned (deepcopy does
    # not preserve alignment).
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in self._DERIVED}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._resize(self.A_inv.shape[0])
        self._changed(None)

    def _changed(self, row: int | None) -> None:
        """Hook called after the numbers of ``row`` changed (``None``: possibly every row, after
        ``set_state`` or a copy). The statistics keep no derived data, so this does nothing;
        subclasses that do refresh or drop it here."""

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
            np.matmul(Ai, b, out=self.theta[row])
        elif self.window is not None:
            self._update_windowed(row, Ai, b, x, reward)
            np.matmul(Ai, b, out=self.theta[row])
        # Sherman–Morrison, b and theta in one kernel (compiled: one pass, fewer calls)
        elif not kernels.rank1_learn(Ai, b, self.theta[row], x, reward):
            raise _bad_x(x)
        self.n_obs[row] += 1
        self._changed(row)

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
        axpy(x, b, a=reward)
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
                axpy(xo, b, a=-float(self.win_r[row, pos]))
            else:  # pragma: no cover - needs extreme scaling
                refresh = True
        else:
            self.win_len[row] += 1
        u = Ai @ x
        rank1_update(Ai, -1.0 / (1.0 + float(x @ u)), u, u)
        axpy(x, b, a=reward)
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
        self._changed(None)  # no derived copy may outlive the numbers it copied


def _with_rows(arr: NDArray[Any], n_rows: int, fill: NDArray[Any] | float) -> NDArray[Any]:
    """A fresh aligned array of exactly ``n_rows`` rows: ``arr``'s rows, then ``fill``."""
    out = aligned_empty((n_rows, *arr.shape[1:]), arr.dtype.type)
    m = min(arr.shape[0], n_rows)
    out[:m] = arr[:m]
    out[m:] = fill
    return out
