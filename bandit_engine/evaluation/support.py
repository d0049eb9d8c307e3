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
    "MAX_GROUPS",
    "MAX_UNSUPPORTED_MASS",
    "MIN_EXPECTED",
    "MOSTLY_DETERMINISTIC",
    "NEVER_PLAYED",
    "RARE_SHARE",
    "ContextGroups",
    "ContextSupport",
    "SupportStats",
    "context_groups",
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
    n_context: int = 0
    context: ContextSupport | None = None

    @classmethod
    def of(
        cls,
        pi: FloatArray,
        pscore: FloatArray,
        exact: FloatArray | None = None,
        context: ContextSupport | None = None,
        context_mass: FloatArray | None = None,
    ) -> SupportStats:
        """The statistics of rows with evaluated probability ``pi`` and logged ``pscore`` of the
        logged action (both (n,), ``pscore`` in (0, 1]); ``exact`` (n,), when given, is each
        row's unsupported mass from the logging distribution (:func:`exact_unsupported_mass`;
        NaN where the log does not hold it). ``context_mass`` (n,), when given, is each row's
        mass on the actions its context group never tried (:class:`ContextSupport`, with
        ``context`` its per-group sums): a row's unsupported mass is the larger of the two
        judgements (a lower bound of the mass on actions either rule finds unplayed)."""
        n = int(pi.shape[0])
        if n == 0:
            return cls()
        certain = pscore >= DETERMINISTIC_PSCORE
        elsewhere = np.where(certain, np.maximum(1.0 - pi, 0.0), 0.0)
        known = np.zeros(n, dtype=bool) if exact is None else ~np.isnan(exact)
        if exact is not None:
            elsewhere = np.where(known, exact, elsewhere)
        n_context = 0
        if context_mass is not None:
            elsewhere = np.maximum(elsewhere, context_mass)
            n_context = int(np.count_nonzero(context_mass > SUM_TOLERANCE))
        w = pi / pscore
        return cls(
            n_context=n_context,
            context=context,
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
            n_context=self.n_context + other.n_context,
            context=(
                None
                if self.context is None or other.context is None
                else self.context.merge(other.context)
            ),
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
    def max_unsupported_mass_limit(self) -> float:
        """The limit of the rule (:data:`MAX_UNSUPPORTED_MASS`)."""
        return MAX_UNSUPPORTED_MASS

    @property
    def context_unsupported_share(self) -> float:
        """Share of rows where the policy puts mass on actions their context group never tried."""
        return self._share(self.n_context)

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
        if self.n_context and not self.n_deterministic and not self.n_exact:
            # only the per-context rule sees it: a logger that randomises, but never over some
            # actions in some contexts (its propensities below 1 do not show it)
            worst = self.context.worst(1) if self.context is not None else []
            where = (
                f"; worst: {worst[0]['context']} ({100 * worst[0]['unsupported_mass']:.0f}% of "
                f"the policy's mass there, {worst[0]['rows']} rows)"
                if worst
                else ""
            )
            how = (
                "in some contexts the log never (or almost never) tried some of the actions "
                f"(groups: {self.context.how if self.context is not None else 'contexts'}"
                f"{where})"
            )
        elif self.n_exact:
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
            f"NO SUPPORT, NOT IDENTIFIABLE: {how}, and on {100 * self.unsupported_share:.0f}% of the "
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
            "verdict": "identifiable" if self.supported else "not identifiable",
            "context_unsupported_share": self.context_unsupported_share,
            "per_context": None if self.context is None else self.context.to_dict(),
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


# -- support per context -----------------------------------------------------------------------
#: A (context group, action) pair counts as tried "almost never" when the log played it at most
#: this share as often as a uniform logger over the same candidates would have (1%: rarer than an
#: epsilon-greedy logger with epsilon = 0.01 explores).
RARE_SHARE = 0.01
#: ... and only when a uniform logger would have played it at least this often there: below it,
#: "never tried" is what chance gives a uniform logger too (10 expected plays are all missed with
#: probability e^-10 = 5e-5), so small groups are given the benefit of the doubt.
MIN_EXPECTED = 10.0
#: Most context groups (clusters) the per-context support is reported over.
MAX_GROUPS = 50
#: Rows k-means is fitted on (all rows are then assigned to the nearest centre, in chunks).
_KMEANS_SAMPLE = 20_000
_KMEANS_ITERATIONS = 25
_ASSIGN_CHUNK = 65_536


def _standardise(context: FloatArray) -> FloatArray:
    sd = context.std(axis=0)
    keep = sd > 0
    if not keep.any():
        return np.zeros((context.shape[0], 0))
    out: FloatArray = (context[:, keep] - context[:, keep].mean(axis=0)) / sd[keep]
    return out


def _assign(z: FloatArray, centres: FloatArray) -> NDArray[np.int64]:
    out = np.empty(z.shape[0], dtype=np.int64)
    c2 = np.einsum("ij,ij->i", centres, centres)
    for lo in range(0, z.shape[0], _ASSIGN_CHUNK):
        block = z[lo : lo + _ASSIGN_CHUNK]
        out[lo : lo + _ASSIGN_CHUNK] = np.argmin(c2[None, :] - 2.0 * block @ centres.T, axis=1)
    return out


def _kmeans(z: FloatArray, k: int, rng: np.random.Generator) -> FloatArray:
    """Centres of Lloyd's k-means with k-means++ seeding (Arthur & Vassilvitskii 2007) on ``z``."""
    centres = [z[int(rng.integers(z.shape[0]))]]
    d2 = np.sum((z - centres[0]) ** 2, axis=1)
    for _ in range(1, k):
        total = float(d2.sum())
        if total <= 0:
            break
        nxt = z[int(rng.choice(z.shape[0], p=d2 / total))]
        centres.append(nxt)
        d2 = np.minimum(d2, np.sum((z - nxt) ** 2, axis=1))
    c = np.array(centres)
    for _ in range(_KMEANS_ITERATIONS):
        lab = _assign(z, c)
        new = np.array(
            [z[lab == j].mean(axis=0) if (lab == j).any() else c[j] for j in range(c.shape[0])]
        )
        if np.allclose(new, c):
            break
        c = new
    return c


@dataclass(frozen=True, eq=False)
class ContextGroups:
    """Which context group every logged row belongs to, and which (group, action) pairs the log
    never or almost never tried (:func:`context_groups`)."""

    group: NDArray[np.int64]
    rare: NDArray[np.bool_]
    how: str
    labels: tuple[str, ...]
    arm_ids: tuple[str, ...] | None = None
    judged: float = 1.0

    @property
    def n_groups(self) -> int:
        return int(self.rare.shape[0])

    def rows(self, index: NDArray[np.int64]) -> ContextGroups:
        """The same groups for a subset of the rows (what a worker gets with its part)."""
        return ContextGroups(
            self.group[index], self.rare, self.how, self.labels, self.arm_ids, self.judged
        )


def _describe_key(row: FloatArray) -> str:
    nz = np.flatnonzero(row)
    shown = ", ".join(f"x[{j}]={row[j]:g}" for j in nz[:6])
    return (shown + (", ..." if nz.shape[0] > 6 else "")) or "all zero"


def _describe_centre(centre: FloatArray, cols: NDArray[np.int64]) -> str:
    top = np.argsort(-np.abs(centre), kind="stable")[:3]
    return ", ".join(f"x[{int(cols[j])}] {centre[j]:+.1f} sd" for j in top) or "the mean"


def context_groups(
    context: FloatArray,
    action: NDArray[np.int64],
    n_actions: int,
    *,
    candidates: tuple[NDArray[np.int64], ...] | None = None,
    arm_ids: tuple[str, ...] | None = None,
    max_groups: int = MAX_GROUPS,
    seed: int = 0,
) -> ContextGroups:
    """Group the logged rows by context and find the actions each group never tried.

    Groups are the distinct logged context vectors when there are few enough of them (segment
    or one-hot contexts), else k-means clusters of the standardised contexts (seeded). Their
    number is at most ``max_groups`` and at most ``n / (2 * MIN_EXPECTED * K)``, so that a
    uniform logger would play every action about 20 times per group: then "never tried" means
    the logger did not play it there, not bad luck.

    A (group, action) pair is *rare* when a uniform logger over each row's candidates would
    have played it at least :data:`MIN_EXPECTED` times there (``e = sum_i [a in C_i] / |C_i|``)
    and the log played it at most ``RARE_SHARE * e`` times. The evaluated policy's probability
    on rare pairs is mass that no logged row reweights (module docstring). Limits: groups are a
    coarsening (a policy that moves mass to an untried action only in a corner of a cluster is
    averaged with the rest of it), and a propensity below 1 on *some* rows of a group is enough
    to count as tried.
    """
    n = int(context.shape[0])
    K = int(n_actions)
    cap = max(1, min(int(max_groups), n // int(2 * MIN_EXPECTED * K)))
    raw = np.ascontiguousarray(context)
    keys = raw.view(np.dtype((np.void, raw.dtype.itemsize * raw.shape[1]))).ravel()
    # continuous contexts show more distinct keys than groups within their first rows: the
    # full sort of every row's key is only paid for logs that may have few of them
    few = np.unique(keys[: min(n, 100_000)]).shape[0] <= cap
    if few:
        uniq, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    labels: list[str]
    if cap == 1:
        group = np.zeros(n, dtype=np.int64)
        how = "1 group of all rows (too few rows per action to split by context)"
        labels = ["all rows"]
    elif few and uniq.shape[0] <= cap:
        group = inverse.astype(np.int64).ravel()
        how = f"{uniq.shape[0]} distinct logged contexts"
        labels = [_describe_key(raw[i]) for i in first]
    else:
        sd = context.std(axis=0)
        cols = np.flatnonzero(sd > 0)
        z = _standardise(context)
        rng = np.random.default_rng(seed)
        sample = z if n <= _KMEANS_SAMPLE else z[rng.choice(n, _KMEANS_SAMPLE, replace=False)]
        centres = _kmeans(sample, cap, rng)
        group = _assign(z, centres)
        # renumber by size (largest first) and drop empty clusters
        sizes = np.bincount(group, minlength=centres.shape[0])
        order = np.argsort(-sizes, kind="stable")
        order = order[sizes[order] > 0]
        remap = np.full(centres.shape[0], -1, dtype=np.int64)
        remap[order] = np.arange(order.shape[0])
        group = remap[group]
        centres = centres[order]
        how = f"{centres.shape[0]} k-means clusters of the standardised context"
        labels = [_describe_centre(c, cols) for c in centres]
    G = len(labels)
    played = np.zeros((G, K))
    np.add.at(played, (group, action), 1.0)
    if candidates is None:
        expected = np.repeat((np.bincount(group, minlength=G) / K)[:, None], K, axis=1)
    else:
        expected = np.zeros((G, K))
        for g, c in zip(group.tolist(), candidates, strict=True):
            expected[g, c] += 1.0 / c.shape[0]
    judged = expected >= MIN_EXPECTED
    rare = judged & (played <= RARE_SHARE * expected)
    share = float(judged.sum() / max(1, int((expected > 0).sum())))
    return ContextGroups(group, rare, how, tuple(labels), arm_ids, share)


@dataclass(frozen=True, eq=False)
class ContextSupport:
    """The evaluated policy's mass on actions its context group never tried (mergeable sums).

    Attributes
    ----------
    how, labels
        How the groups were formed, and a short description of each.
    rare
        (G, K) the pairs the log never or almost never tried (:func:`context_groups`).
    rows
        (G,) evaluated rows per group.
    judged
        Share of the (group, candidate action) pairs a uniform logger would have played at
        least :data:`MIN_EXPECTED` times there: only those can be called never tried.
    mass
        (G, K) sum over the group's rows of the policy's probability on each rare action.
    """

    how: str
    labels: tuple[str, ...]
    rare: NDArray[np.bool_]
    rows: FloatArray
    mass: FloatArray
    arm_ids: tuple[str, ...] | None = None
    judged: float = 1.0

    @staticmethod
    def row_mass(dist: FloatArray, groups: ContextGroups) -> FloatArray:
        """(n,) each row's policy mass on the actions its group never tried."""
        out: FloatArray = np.einsum("ij,ij->i", dist, groups.rare[groups.group])
        return out

    @classmethod
    def of(cls, dist: FloatArray, groups: ContextGroups) -> ContextSupport:
        G = groups.n_groups
        rows = np.bincount(groups.group, minlength=G).astype(np.float64)
        mass = np.zeros(groups.rare.shape)
        masked = np.where(groups.rare[groups.group], dist, 0.0)
        np.add.at(mass, groups.group, masked)
        return cls(
            groups.how, groups.labels, groups.rare, rows, mass, groups.arm_ids, groups.judged
        )

    def merge(self, other: ContextSupport) -> ContextSupport:
        return ContextSupport(
            self.how,
            self.labels,
            self.rare,
            self.rows + other.rows,
            self.mass + other.mass,
            self.arm_ids,
            self.judged,
        )

    @property
    def group_mass(self) -> FloatArray:
        """(G,) mean policy mass on never-tried actions per group (NaN for empty groups)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            out: FloatArray = self.mass.sum(axis=1) / self.rows
        return out

    def worst(self, k: int = 5) -> list[dict[str, Any]]:
        """The ``k`` groups with the largest mass on never-tried actions (those with any)."""
        arm_ids = self.arm_ids
        gm = np.nan_to_num(self.group_mass, nan=0.0)
        out = []
        for g in np.argsort(-gm, kind="stable")[:k].tolist():
            if gm[g] <= SUM_TOLERANCE:
                break
            per = self.mass[g] / self.rows[g]
            top = np.argsort(-per, kind="stable")[:3]
            out.append(
                {
                    "group": g,
                    "context": self.labels[g],
                    "rows": int(self.rows[g]),
                    "unsupported_mass": float(gm[g]),
                    "never_tried": int(self.rare[g].sum()),
                    "top_actions": {
                        (arm_ids[a] if arm_ids is not None else str(a)): float(per[a])
                        for a in top.tolist()
                        if per[a] > SUM_TOLERANCE
                    },
                }
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        """The distribution over rows of their group's mass, and the worst groups."""
        gm = np.nan_to_num(self.group_mass, nan=0.0)
        n = float(self.rows.sum())
        order = np.argsort(gm, kind="stable")
        cum = np.cumsum(self.rows[order]) / n if n else np.zeros(0)

        def quantile(q: float) -> float:
            if not n:
                return float("nan")
            return float(gm[order][int(np.searchsorted(cum, q))])

        return {
            "groups": self.how,
            "n_groups": int(self.rows.shape[0]),
            "mean_mass": float((gm * self.rows).sum() / n) if n else float("nan"),
            "median_mass": quantile(0.5),
            "p90_mass": quantile(0.9),
            "max_mass": float(gm.max()) if gm.shape[0] else float("nan"),
            "rows_above_limit": float(self.rows[gm > MAX_UNSUPPORTED_MASS].sum() / n)
            if n
            else float("nan"),
            "rare_share": RARE_SHARE,
            "judged_pairs": self.judged,
            "worst": self.worst(5),
        }
