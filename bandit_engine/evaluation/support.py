"""Support (overlap) of the evaluated policy by the logging policy: the one rule that decides
whether the importance-weighting estimates can be trusted at all.

IPS is unbiased only if every action the evaluated policy ``pi`` can take on a row had a positive
logging probability ``mu`` there. A log records the propensity of the *logged* action only, so
the missing support that can be seen from it is this: a row logged with propensity (near) 1 means
the logger played that action with certainty, so every *other* candidate had logging probability
0, and the evaluated policy's mass on them, ``1 - pi(a_i | x_i)``, is mass no logged row can ever
reweight. IPS then silently drops that part of the policy's value (a uniform policy over four
candidates evaluated on an always-action-0 log gets a quarter of the logged value), SNIPS returns
the logged actions' mean reward, and DR / DM fill it in with the reward model's extrapolation,
which the log cannot check.

:class:`SupportStats` holds the sufficient statistics (counts and sums, so it merges exactly across
chunks and workers: integer counts, float sums up to rounding) and :attr:`SupportStats.supported`
applies the rule:

    support is missing  <=>  mean_i u_i > MAX_UNSUPPORTED_MASS,
    u_i = sum_a pi(a | x_i) [mu(a | x_i) <= NEVER_PLAYED]   on rows whose logging
                                                             distribution mu the log holds,
    u_i = max(0, 1 - pi(a_i | x_i))  if  pscore_i >= DETERMINISTIC_PSCORE,  else 0,  elsewhere.

The engine's own event log records the logging policy's whole distribution over the candidates
of every decision (when the policy knows it), so there the rule is exact: a greedy logger whose
scores tie between two of four candidates logs propensity 1/2 but never plays the other two.
CSV / Parquet / OBD logs record the logged action's propensity only: there rows logged with a
propensity below 1 count as supported, so ``unsupported_mass`` is a lower bound, and a logger
that randomises among a few candidates only is caught by the weight diagnostics (effective sample
size, largest weight), not by this rule. The accumulators see the logged propensity only, so the
``unsupported_*`` extras of their estimates are that lower bound; the evaluation's ``support``
uses the logged distribution where there is one.

The same facts warn before a log is used: :func:`greedy_policy_warning` (``bandit serve-policy``
at startup: a policy of :data:`GREEDY_POLICIES` with ``epsilon == 0`` will log propensity 1) and
:func:`no_randomisation_warning` (``bandit simulate --log``, from what the log holds).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._validate import SUM_TOLERANCE, FloatArray

__all__ = [
    "DETERMINISTIC_PSCORE",
    "GREEDY_POLICIES",
    "MAX_UNSUPPORTED_MASS",
    "MOSTLY_DETERMINISTIC",
    "NEVER_PLAYED",
    "SupportStats",
    "exact_unsupported_mass",
    "greedy_policy_warning",
    "no_randomisation_warning",
]

#: A logged propensity at or above this is 1: the logger played that action with certainty (the
#: margin absorbs float32 storage and rounding of ``1 - epsilon + epsilon / K``-style sums).
DETERMINISTIC_PSCORE = 1.0 - 1e-6
#: A candidate whose logged logging probability is at most this was never played (the margin of
#: :data:`DETERMINISTIC_PSCORE`: a propensity of ``1 - 1e-6`` leaves at most ``1e-6`` elsewhere).
NEVER_PLAYED = 1e-6
#: Above this mean share of the evaluated policy's probability mass on actions the logger never
#: plays, the importance-weighting estimates are declared unsupported: 1% of the policy's mass
#: can move its value by 1% of the reward range, the size of the uplifts people act on.
MAX_UNSUPPORTED_MASS = 0.01
#: A logging policy that never played some candidates on at least this share of its decisions is
#: called non-randomising (:func:`no_randomisation_warning`).
MOSTLY_DETERMINISTIC = 0.5
#: Registered policies that play the argmax of their scores and randomise only through
#: ``epsilon`` (and uniform tie-breaking): README, "Policies and their propensities", the
#: tie/epsilon rule. ``tests/test_evaluation_traps.py`` checks every one of them logs propensity 1
#: at ``epsilon=0`` once it has learned, and that the policies left out do not.
GREEDY_POLICIES = (
    "linucb",
    "dp_linucb",
    "hybrid_linucb",
    "pair_ucb",
    "epsilon_greedy",
    "popularity",
    "fixed_rule",
)


@dataclass(frozen=True)
class SupportStats:
    """Sufficient statistics of support and weights over logged rows (mergeable).

    Attributes
    ----------
    n_rows
        Rows seen.
    n_deterministic
        Rows logged with propensity >= :data:`DETERMINISTIC_PSCORE`.
    n_unsupported
        Rows where the evaluated policy puts more than rounding (``SUM_TOLERANCE``) probability
        on actions the logger never plays there.
    n_exact
        Rows judged from the logged logging distribution (the rest from the propensity).
    unsupported_mass_sum
        Sum over rows of ``u_i`` (module docstring).
    sum_w, sum_w2, max_w
        Sum, sum of squares and largest of the raw (unclipped) weights ``pi / pscore``.
    """

    n_rows: int = 0
    n_deterministic: int = 0
    n_unsupported: int = 0
    n_exact: int = 0
    unsupported_mass_sum: float = 0.0
    sum_w: float = 0.0
    sum_w2: float = 0.0
    max_w: float = float("-inf")

    @classmethod
    def of(
        cls, pi: FloatArray, pscore: FloatArray, exact: FloatArray | None = None
    ) -> SupportStats:
        """The statistics of rows with evaluated probability ``pi`` and logged ``pscore`` of the
        logged action (both (n,), ``pscore`` in (0, 1]); ``exact`` (n,), when given, is each
        row's unsupported mass from the logging distribution (:func:`exact_unsupported_mass`;
        NaN where the log does not hold it)."""
        n = int(pi.shape[0])
        if n == 0:
            return cls()
        certain = pscore >= DETERMINISTIC_PSCORE
        elsewhere = np.where(certain, np.maximum(1.0 - pi, 0.0), 0.0)
        known = np.zeros(n, dtype=bool) if exact is None else ~np.isnan(exact)
        if exact is not None:
            elsewhere = np.where(known, exact, elsewhere)
        w = pi / pscore
        return cls(
            n_rows=n,
            n_deterministic=int(np.count_nonzero(certain)),
            n_unsupported=int(np.count_nonzero(elsewhere > SUM_TOLERANCE)),
            n_exact=int(np.count_nonzero(known)),
            unsupported_mass_sum=float(elsewhere.sum()),
            sum_w=float(w.sum()),
            sum_w2=float(w @ w),
            max_w=float(w.max()),
        )

    def merge(self, other: SupportStats) -> SupportStats:
        """The statistics of both sets of rows (counts exact; sums up to float rounding)."""
        return SupportStats(
            n_rows=self.n_rows + other.n_rows,
            n_deterministic=self.n_deterministic + other.n_deterministic,
            n_unsupported=self.n_unsupported + other.n_unsupported,
            n_exact=self.n_exact + other.n_exact,
            unsupported_mass_sum=self.unsupported_mass_sum + other.unsupported_mass_sum,
            sum_w=self.sum_w + other.sum_w,
            sum_w2=self.sum_w2 + other.sum_w2,
            max_w=max(self.max_w, other.max_w),
        )

    # -- summaries -------------------------------------------------------------------------------
    def _share(self, count: float) -> float:
        return count / self.n_rows if self.n_rows else float("nan")

    @property
    def deterministic_share(self) -> float:
        """Share of rows logged with propensity (near) 1."""
        return self._share(self.n_deterministic)

    @property
    def exact_share(self) -> float:
        """Share of rows judged from the logged logging distribution (exactly)."""
        return self._share(self.n_exact)

    @property
    def unsupported_share(self) -> float:
        """Share of rows where the evaluated policy puts mass on actions the logger never plays."""
        return self._share(self.n_unsupported)

    @property
    def unsupported_mass(self) -> float:
        """Mean over rows of the evaluated policy's mass on actions the logger never plays."""
        return self._share(self.unsupported_mass_sum)

    @property
    def ess(self) -> float:
        """Effective sample size of the raw weights, ``(sum w)^2 / sum w^2``."""
        return self.sum_w**2 / self.sum_w2 if self.sum_w2 > 0 else 0.0

    @property
    def supported(self) -> bool:
        """The rule of the module docstring (``True`` for no rows: nothing to judge)."""
        return not self.n_rows or self.unsupported_mass <= MAX_UNSUPPORTED_MASS

    def message(self) -> str | None:
        """The warning to show when support is missing, else ``None``."""
        if self.supported:
            return None
        if self.n_exact:
            how = (
                "the logging policy never plays some of the candidates (judged from its logged "
                f"distribution on {100 * self.exact_share:.0f}% of the rows; "
                f"{100 * self.deterministic_share:.0f}% of the decisions have propensity 1)"
            )
        else:
            how = (
                f"{100 * self.deterministic_share:.0f}% of the logged decisions have propensity 1 "
                "(the logging policy played that action with certainty, so it never played the "
                "other candidates)"
            )
        return (
            f"NO SUPPORT: {how}, and on {100 * self.unsupported_share:.0f}% of the "
            "rows the evaluated policy puts probability on those never-played actions "
            f"({100 * self.unsupported_mass:.1f}% of its probability mass on average, above "
            f"the {100 * MAX_UNSUPPORTED_MASS:g}% limit). The log holds no reward for them: "
            "IPS and SNIPS are biased (they only see the logged actions), DM and the DR family "
            "rest on the reward model's untested extrapolation, and no uplift is called "
            "significant. Evaluate on a log whose logging policy keeps randomising (epsilon > "
            "0, uniform), or compare live."
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data: the counts, the shares, the weight diagnostics and the verdict."""
        return {
            "n_rows": self.n_rows,
            "deterministic_share": self.deterministic_share,
            "exact_share": self.exact_share,
            "unsupported_share": self.unsupported_share,
            "unsupported_mass": self.unsupported_mass,
            "ess": self.ess,
            "max_weight": self.max_w if self.n_rows else float("nan"),
            "max_unsupported_mass": MAX_UNSUPPORTED_MASS,
            "supported": self.supported,
        }


def exact_unsupported_mass(dist: FloatArray, logging: FloatArray) -> FloatArray:
    """(n,) the evaluated policy's mass on the candidates the logger never plays,
    ``sum_a dist[i, a] [logging[i, a] <= NEVER_PLAYED]`` (non-candidates have 0 in both), NaN on
    rows whose logging distribution is unknown (NaN rows of ``logging``); both (n, K)."""
    unknown: NDArray[np.bool_] = np.asarray(np.isnan(logging).any(axis=1))
    never = np.where(unknown[:, None], False, logging <= NEVER_PLAYED)
    out: FloatArray = np.einsum("ij,ij->i", dist, never.astype(np.float64))
    out[unknown] = np.nan
    return out


def no_randomisation_warning(
    pscore: FloatArray, who: str, min_logging_prob: FloatArray | None = None
) -> str | None:
    """The warning for a logging policy that left candidates out (never played them) on at least
    :data:`MOSTLY_DETERMINISTIC` of its decisions, else ``None``.

    A decision leaves candidates out when its smallest logging probability over the candidates
    (``min_logging_prob``, NaN where unknown) is at most :data:`NEVER_PLAYED`, or, where that is
    unknown, when its propensity is (near) 1. Such a log cannot support a later off-policy
    evaluation of a policy that plays those candidates (:class:`SupportStats`). A greedy policy
    randomises between tied scores (early on), hence a share, not "all". ``who`` names the policy.
    """
    known = ~np.isnan(pscore)
    if not known.any():
        return None
    certain = pscore >= DETERMINISTIC_PSCORE
    leaves_out = certain
    if min_logging_prob is not None:
        exact = ~np.isnan(min_logging_prob)
        leaves_out = np.where(exact, min_logging_prob <= NEVER_PLAYED, certain)
    n = int(np.count_nonzero(known))
    share = float(np.count_nonzero(leaves_out & known)) / n
    if share < MOSTLY_DETERMINISTIC:
        return None
    ones = float(np.count_nonzero(certain & known)) / n
    return (
        f"{who} never played some of the candidates on {100 * share:.0f}% of its {n} decisions "
        f"(propensity 1 on {100 * ones:.0f}%: it randomises at most to break ties): such a log "
        "cannot support IPS / DR evaluation of other policies later. Give it exploration that "
        "randomises over every candidate (e.g. epsilon=0.05) if the log is meant for offline "
        "evaluation."
    )


def greedy_policy_warning(name: str, params: Mapping[str, Any]) -> str | None:
    """The warning for serving a policy of :data:`GREEDY_POLICIES` with ``epsilon == 0``, else
    ``None``: such a policy logs propensity 1 whenever one candidate scores best (UCB's
    exploration bonus is deterministic optimism, not randomisation), so its log will not
    support off-policy evaluation (:func:`no_randomisation_warning` says the same from a log)."""
    if name not in GREEDY_POLICIES or params.get("epsilon", 0.0) != 0.0:
        return None
    return (
        f"policy {name} has epsilon=0: it plays its best-scoring candidate with probability 1 "
        "(ties apart), so the decisions it logs have propensity 1 and the log cannot support "
        "IPS / DR evaluation of other policies later; serve it with epsilon > 0 (e.g. "
        "epsilon=0.05) if the log is meant for offline evaluation"
    )
