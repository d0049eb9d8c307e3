"""Differentially private releases of counts, sums, rates (CTR) and uplifts, through OpenDP.

Every function takes **aggregated per-user values** (one entry per user: that user's number of
decisions, clicks, order value ...), so a report can compute them however it likes and release
them here (``bandit report --dp-epsilon`` is meant to call these). The unit of privacy is the
user: two logs are neighbours when one user's rows are added or removed (OpenDP's symmetric
distance 1 on the per-user vector).

Mechanism
---------
Each user's contribution is clamped to ``[0, cap]``, so adding or removing one user moves a sum
by at most ``cap``: the sensitivity. Integer sums (counts) are clamped and summed exactly in
int64 and released with OpenDP's discrete Laplace measurement for that sensitivity; float sums
go through OpenDP's whole ``clamp >> sum >> Laplace`` pipeline on the per-user vector (its float
sum widens the sensitivity for rounding). The noise scale is the smallest for which OpenDP's own
privacy map certifies ``epsilon`` (``binary_search_param``): ``cap / epsilon`` for counts. The noise comes from OpenDP's cryptographically secure sampler and is
deliberately not seedable: a seed would let whoever knows it subtract the noise.

* :func:`dp_count`: the number of decisions (or any per-user count), each user clipped to ``cap``.
* :func:`dp_sum`: a sum of per-user values clipped to ``[0, cap]`` (order value, rewards).
* :func:`dp_rate`: ``sum(numerator) / sum(denominator)`` (CTR = clicks / decisions). Each user's
  decisions are clipped to ``cap`` and their clicks to their clipped decisions (so each user's
  rate stays in ``[0, 1]``); ``epsilon`` is split evenly between the two sums.
* :func:`dp_uplift`: the difference of two groups' rates; ``epsilon`` split evenly between the
  groups (sequential composition, valid even if a user is in both groups).

Error bound
-----------
Every :class:`Release` carries ``error_bound`` at ``confidence = 1 - beta``: with probability at
least ``1 - beta`` the released value is within ``error_bound`` of the same statistic computed
exactly **on the clipped data**. For a sum it is OpenDP's accuracy of the noise
(``laplacian_scale_to_accuracy`` / ``discrete_laplacian_scale_to_accuracy`` at ``beta``). For a
rate ``R = C / D`` released as ``(C + e_c) / (D + e_d)`` with ``|e_c| <= a_c`` and
``|e_d| <= a_d`` (each at ``beta / 2``), ``|R_hat - R| = |e_c - R e_d| / (D + e_d)
<= (a_c + a_d) / (D_hat - 2 a_d)`` because ``R <= 1`` and ``D >= D_hat - a_d``; it is computed
from released values only, so it may be published, and is infinite when ``D_hat <= 2 a_d``
(too few decisions for the budget). An uplift's bound is the sum of its two rates' bounds, each
at ``beta / 2``. Clipping is a bias the bound does not cover: it is zero when no user exceeds
``cap``; :attr:`Release.clipped_users` says how many did (computed before the noise, and itself
not released noisily, so show it only to whoever may see the exact data).

Accounting
----------
With a :class:`~bandit_engine.store.ledger.PrivacyLedger`, each function records its spend
*before* drawing any noise; a spend past the budget raises
:class:`~bandit_engine.errors.ConflictError` and nothing is computed or released.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import ConfigError, ValidationError
from ..store.ledger import PrivacyLedger

__all__ = ["Release", "dp_count", "dp_rate", "dp_sum", "dp_uplift"]


@dataclass(frozen=True)
class Release:
    """One differentially private release.

    Attributes
    ----------
    value
        The released statistic.
    epsilon, delta
        What it spent (``delta`` is 0: the Laplace mechanisms are pure ``epsilon``-DP).
    mechanism
        How it was made, e.g. ``"discrete Laplace, sensitivity 10, scale 20"``.
    error_bound, confidence
        ``|value - exact clipped statistic| <= error_bound`` with probability ``>= confidence``.
    clipped_users
        Users whose contribution was clipped (not private: see the module notes).
    """

    label: str
    value: float
    epsilon: float
    delta: float
    mechanism: str
    error_bound: float
    confidence: float
    clipped_users: int


def _opendp() -> Any:
    try:
        import opendp.prelude as dp
    except ImportError:
        raise ConfigError(
            'differentially private releases need OpenDP: pip install "bandit-engine[dp]"',
            field="dp",
        ) from None
    dp.enable_features("contrib")
    return dp


def _check_epsilon(epsilon: float) -> float:
    if (
        isinstance(epsilon, bool)
        or not isinstance(epsilon, int | float)
        or not math.isfinite(epsilon)
        or epsilon <= 0
    ):
        raise ConfigError.for_field("epsilon", epsilon, "must be a finite number > 0")
    return float(epsilon)


def _check_beta(beta: float) -> float:
    if isinstance(beta, bool) or not isinstance(beta, int | float) or not 0 < beta < 1:
        raise ConfigError.for_field("beta", beta, "must be in (0, 1)")
    return float(beta)


def _per_user(name: str, values: ArrayLike, *, integer: bool) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationError.for_field(name, values, "must be numbers, one per user") from None
    if arr.ndim != 1:
        raise ValidationError.for_field(name, arr.shape, "must be 1-d (one value per user)")
    bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0))
    if bad.size:
        i = int(bad[0])
        raise ValidationError.for_field(f"{name}[{i}]", float(arr[i]), "must be finite and >= 0")
    if integer:
        frac = np.flatnonzero(arr != np.floor(arr))
        if frac.size:
            i = int(frac[0])
            raise ValidationError.for_field(f"{name}[{i}]", float(arr[i]), "must be an integer")
    return arr


def _check_cap(cap: float, *, integer: bool) -> float:
    ok = isinstance(cap, int | float) and not isinstance(cap, bool) and math.isfinite(cap)
    if not ok or cap <= 0 or (integer and int(cap) != cap):
        rule = "must be an integer >= 1" if integer else "must be a finite number > 0"
        raise ConfigError.for_field("cap", cap, rule)
    return float(cap)


@functools.lru_cache(maxsize=64)
def _integer_noise(cap: int, epsilon: float) -> tuple[Any, float]:
    """OpenDP's discrete Laplace measurement on an integer with absolute-distance sensitivity
    ``cap``, at the smallest scale its privacy map certifies for ``epsilon``."""
    dp = _opendp()
    space = dp.atom_domain(T=int), dp.absolute_distance(T=int)

    def make(scale: float) -> Any:
        return space >> dp.m.then_laplace(scale)

    scale = float(dp.binary_search_param(make, d_in=cap, d_out=epsilon, T=float))
    meas = make(scale)
    assert meas.map(cap) <= epsilon  # certified by OpenDP's privacy map
    return meas, scale


@functools.lru_cache(maxsize=64)
def _float_sum(cap: float, epsilon: float) -> tuple[Any, float]:
    """OpenDP's ``clamp >> sum >> Laplace`` on a vector of floats (its float sum accounts for
    rounding in the sensitivity), at the smallest scale certified for ``epsilon``."""
    dp = _opendp()
    space = dp.vector_domain(dp.atom_domain(T=float, nan=False)), dp.symmetric_distance()

    def make(scale: float) -> Any:
        return space >> dp.t.then_clamp((0.0, cap)) >> dp.t.then_sum() >> dp.m.then_laplace(scale)

    scale = float(dp.binary_search_param(make, d_in=1, d_out=epsilon, T=float))
    meas = make(scale)
    assert meas.map(1) <= epsilon
    return meas, scale


def _noisy_sum(
    values: np.ndarray, cap: float, epsilon: float, beta: float, *, integer: bool
) -> tuple[float, float, str]:
    """``(released sum, accuracy at beta, mechanism)`` of ``values`` clamped to ``[0, cap]``.

    Integers are clamped and summed exactly here (int64), so adding or removing a user moves
    the sum by at most ``cap``, and OpenDP's discrete Laplace measurement is certified for that
    sensitivity; floats go through OpenDP's whole vector pipeline."""
    dp = _opendp()
    if integer:
        meas, scale = _integer_noise(int(cap), epsilon)
        exact = int(np.minimum(values, cap).astype(np.int64).sum())
        value = float(meas(exact))
        acc = float(dp.discrete_laplacian_scale_to_accuracy(scale, beta))
        kind = "discrete Laplace"
    else:
        meas, scale = _float_sum(float(cap), epsilon)
        value = float(meas(values.tolist()))
        acc = float(dp.laplacian_scale_to_accuracy(scale, beta))
        kind = "Laplace"
    return value, acc, f"{kind}, clamp [0, {cap:g}], sensitivity {cap:g}, scale {scale:.4g}"


def _spend(ledger: PrivacyLedger | None, epsilon: float, label: str, mechanism: str) -> None:
    if ledger is not None:
        ledger.spend(epsilon, 0.0, label=label, mechanism=mechanism)


def dp_count(
    per_user: ArrayLike,
    *,
    epsilon: float,
    cap: int,
    beta: float = 0.05,
    ledger: PrivacyLedger | None = None,
    label: str = "count",
) -> Release:
    """A count (e.g. decisions) summed over users, each user's count clipped to ``cap``."""
    return _total(per_user, epsilon, cap, beta, ledger, label, integer=True)


def dp_sum(
    per_user: ArrayLike,
    *,
    epsilon: float,
    cap: float,
    beta: float = 0.05,
    ledger: PrivacyLedger | None = None,
    label: str = "sum",
) -> Release:
    """A sum of non-negative per-user values (order value, reward), each clipped to ``cap``."""
    return _total(per_user, epsilon, cap, beta, ledger, label, integer=False)


def _total(
    per_user: ArrayLike,
    epsilon: float,
    cap: float,
    beta: float,
    ledger: PrivacyLedger | None,
    label: str,
    *,
    integer: bool,
) -> Release:
    """:func:`dp_count` (``integer``: discrete Laplace) and :func:`dp_sum` (Laplace)."""
    eps, b = _check_epsilon(epsilon), _check_beta(beta)
    c = _check_cap(cap, integer=integer)
    values = _per_user("per_user", per_user, integer=integer)
    _spend(ledger, eps, label, "count: discrete Laplace" if integer else "sum: Laplace")
    value, acc, mech = _noisy_sum(values, c, eps, b, integer=integer)
    return Release(label, value, eps, 0.0, mech, acc, 1 - b, int(np.sum(values > c)))


def _rate_parts(
    numerator: ArrayLike, denominator: ArrayLike, cap: int
) -> tuple[np.ndarray, np.ndarray, int]:
    num = _per_user("numerator", numerator, integer=True)
    den = _per_user("denominator", denominator, integer=True)
    if num.shape != den.shape:
        raise ValidationError.for_field(
            "numerator", num.shape, f"must have one value per user like denominator {den.shape}"
        )
    den_c = np.minimum(den, cap)
    clipped = int(np.sum((den > cap) | (num > den_c)))
    return np.minimum(num, den_c), den_c, clipped


def _rate(
    num: np.ndarray, den: np.ndarray, cap: float, eps: float, beta: float
) -> tuple[float, float, str]:
    c_hat, a_c, m_c = _noisy_sum(num, cap, eps / 2, beta / 2, integer=True)
    d_hat, a_d, _ = _noisy_sum(den, cap, eps / 2, beta / 2, integer=True)
    value = c_hat / d_hat if d_hat > 0 else math.nan
    bound = (a_c + a_d) / (d_hat - 2 * a_d) if d_hat > 2 * a_d else math.inf
    return value, bound, f"ratio of two sums at epsilon {eps / 2:g} each ({m_c})"


def dp_rate(
    numerator: ArrayLike,
    denominator: ArrayLike,
    *,
    epsilon: float,
    cap: int,
    beta: float = 0.05,
    ledger: PrivacyLedger | None = None,
    label: str = "rate",
) -> Release:
    """``sum(numerator) / sum(denominator)`` over users (CTR = clicks / decisions): decisions
    clipped to ``cap`` per user, clicks to the user's clipped decisions."""
    eps, b = _check_epsilon(epsilon), _check_beta(beta)
    c = _check_cap(cap, integer=True)
    num, den, clipped = _rate_parts(numerator, denominator, int(c))
    _spend(ledger, eps, label, "rate: two discrete Laplace sums")
    value, bound, mech = _rate(num, den, c, eps, b)
    return Release(label, value, eps, 0.0, mech, bound, 1 - b, clipped)


def dp_uplift(
    treatment: tuple[ArrayLike, ArrayLike],
    control: tuple[ArrayLike, ArrayLike],
    *,
    epsilon: float,
    cap: int,
    beta: float = 0.05,
    ledger: PrivacyLedger | None = None,
    label: str = "uplift",
) -> Release:
    """``rate(treatment) - rate(control)``, each group given as ``(numerator, denominator)``
    per user; ``epsilon`` and ``beta`` split evenly between the groups."""
    eps, b = _check_epsilon(epsilon), _check_beta(beta)
    c = _check_cap(cap, integer=True)
    parts = [_rate_parts(n, d, int(c)) for n, d in (treatment, control)]
    _spend(ledger, eps, label, "uplift: difference of two rates")
    (v_t, b_t, mech), (v_c, b_c, _) = (_rate(n, d, c, eps / 2, b / 2) for n, d, _ in parts)
    clipped = parts[0][2] + parts[1][2]
    return Release(
        label, v_t - v_c, eps, 0.0, f"difference of rates ({mech})", b_t + b_c, 1 - b, clipped
    )
