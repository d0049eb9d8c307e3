"""Applying :class:`~bandit_engine.rules.Rules` at decision time: the :class:`RuleRunner`.

Order of a decision with rules (the engine calls these; see :meth:`Engine.decide
<bandit_engine.Engine.decide>`):

1. the catalog's eligibility (city, validity, availability mask);
2. the eligibility predicates (static ones are computed once per catalog version, the ones that
   read the profile per decision);
3. exclusions, frequency caps and budgets, read from the :class:`~bandit_engine.rules.state.RuleState`;
4. the policy chooses among what is left, so its propensity is over that set (it is given the
   catalog's list and a mask of what is left, which keeps its per-list caches);
5. if nothing is left, the fallback (:class:`~bandit_engine.rules.Fallback`);
6. the chosen bundle's shows and decision budgets are counted (:meth:`RuleRunner.record`).

With a state in the event log, 3 and 6 run inside the decision's transaction (see
:class:`~bandit_engine.service.LoggedEngine`), which every writer takes one at a time, so the
count a decision reads is the count it increments: caps and decision budgets are exact across
processes.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..catalog import Catalog
from ..catalog.bundles import CandidateSet
from ..errors import ConfigError, ValidationError
from ..features import FeatureMap
from ..policies.base import Policy
from ..policies.registry import make_policy
from ._window import CapSpec
from .predicates import BUNDLE_SIDES, Predicate
from .spec import Rules
from .state import MemoryRuleState, RuleState

__all__ = ["RuleRunner", "known_columns", "policy_from_spec"]

BoolArray = NDArray[np.bool_]
_PENDING_KEPT = 200_000
_NO_LIMIT = 2**62  # above any budget: the minimum's start when no budget is unpaced
_MASKS_KEPT = 8_192  # dynamic rules' masks cached (cleared when full)


def known_columns(features: FeatureMap, catalog: Catalog) -> tuple[set[str], set[str]]:
    """``(profile columns, bundle columns)`` a predicate may name."""
    profile = {
        f"{platform}.{f.spec.name}"
        for platform, block in features.blocks.items()
        for f in block.fields
    }
    bundle = {f"deal.{c}" for c in catalog.deals().columns if c != "active"} | {
        f"course.{c}" for c in catalog.courses().columns if c != "active"
    }
    return profile, bundle


def policy_from_spec(spec: str, field: str = "fallback.policy") -> Policy:
    """``"name"`` or ``"name:key=value,..."`` (numbers, ``true`` / ``false`` parsed) through
    ``make_policy``; errors name ``field``."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError.for_field(field, spec, "must be a policy spec like 'fixed_rule:column=3'")
    name, _, rest = spec.partition(":")
    params: dict[str, Any] = {}
    for part in filter(None, rest.split(",")):
        key, eq, raw = part.partition("=")
        if not eq:
            raise ConfigError.for_field(field, spec, "must look like 'name:key=value'")
        value: Any = {"true": True, "false": False, "none": None}.get(raw.lower(), raw)
        for conv in (int, float) if isinstance(value, str) else ():
            try:
                value = conv(raw)
                break
            except ValueError:
                continue
        params[key.strip()] = value
    try:
        return make_policy(name.strip(), **params)
    except ConfigError as exc:
        raise ConfigError(f"{field}: {exc.message}", field=field, value=spec) from None


class _Compiled:
    """One eligibility rule: its predicates, and which of their sides read the profile."""

    def __init__(self, name: str, require: Predicate, when: Predicate | None, allow: bool) -> None:
        self.name = name
        self.require = require
        self.when = when
        self.allow_missing = allow
        #: the profile columns it reads, as ``(platform, field)``
        self.profile_columns = tuple(
            dict.fromkeys(
                tuple(c.split(".", 1))
                for p in (require, when)
                if p
                for c in p.columns
                if c.split(".")[0] not in BUNDLE_SIDES
            )
        )
        self.dynamic = bool(self.profile_columns)


class RuleRunner:
    """:class:`~bandit_engine.rules.Rules` bound to an engine's schema and catalog.

    Construction checks every column the predicates name: an unknown one is a
    :class:`~bandit_engine.errors.ConfigError` naming the rule, the column and the known columns.
    """

    def __init__(
        self,
        rules: Rules,
        features: FeatureMap,
        catalog: Catalog,
        state: RuleState | None = None,
    ) -> None:
        if not isinstance(rules, Rules):
            raise ConfigError.for_field("rules", type(rules).__name__, "must be a Rules object")
        if not catalog.materialized:
            raise ConfigError.for_field(
                "rules",
                "materialize=False",
                "need a listed catalog (the grid path has no rules yet)",
            )
        self.rules = rules
        self.catalog = catalog
        # the caps as the state's incremental counts take them (set with the state, below)
        self._cap_spec: tuple[CapSpec, ...] = tuple(
            (c.per, c.window, c.max_shows) for c in rules.caps
        )
        self._fast_caps: tuple[CapSpec, ...] | None = None
        self.state = state if state is not None else MemoryRuleState()
        profile_cols, bundle_cols = known_columns(features, catalog)
        self._compiled: list[_Compiled] = []
        for rule in rules.eligibility:
            require, when = rule.predicates
            for p in (require, when):
                if p is None:
                    continue
                for col in p.columns:
                    side = col.split(".")[0]
                    known = bundle_cols if side in BUNDLE_SIDES else profile_cols
                    if col not in known:
                        raise ConfigError(
                            f"eligibility rule {rule.name!r} names unknown column {col!r}; known "
                            f"columns: {sorted(profile_cols | bundle_cols)}",
                            field=f"eligibility[{rule.name}]",
                            value=col,
                        )
            self._compiled.append(_Compiled(rule.name, require, when, rule.if_missing == "allow"))
        fb = rules.fallback
        if fb.kind == "bundle":
            assert fb.bundle_id is not None
            if fb.bundle_id not in catalog:
                raise ConfigError.for_field(
                    "fallback.bundle_id", fb.bundle_id, "must name a bundle of the catalog"
                )
        self.fallback_policy: Policy | None = (
            policy_from_spec(fb.policy) if fb.kind == "policy" and fb.policy else None
        )
        bind = getattr(self.fallback_policy, "bind_feature_names", None)
        if callable(bind):  # fixed_rule:column=deal.discount finds its column
            bind(catalog.feature_names)
        self._cap_scopes = sorted({c.per for c in rules.caps})
        self._caps_by_scope: dict[str, list[tuple[int, float]]] = {}
        for j, cap in enumerate(rules.caps):
            self._caps_by_scope.setdefault(cap.per, []).append((j, cap.window))
        self._scope_at = {scope: i for i, scope in enumerate(self._caps_by_scope)}
        self._cap_windows = list(self._caps_by_scope.values())
        self._max_window = max((c.window for c in rules.caps), default=0.0)
        self._dynamic = [c for c in self._compiled if c.dynamic]
        self._profile_columns = tuple(
            dict.fromkeys(col for c in self._dynamic for col in c.profile_columns)
        )
        # the eligibility rules' mask and its count, per (list, the profile values the rules
        # read): users with the same values over the same list get the same mask
        self._rule_masks: dict[
            tuple[Any, ...], tuple[NDArray[np.intp], tuple[int, int], BoolArray | None, int]
        ] = {}
        # per list: scope -> id -> positions in the list (where the counters' blocks land)
        self._positions_of: dict[
            int, tuple[NDArray[np.intp], tuple[int, int], dict[str, dict[str, list[int]]]]
        ] = {}
        self._uses_state = rules.uses_state
        self._excl_active = rules.exclusions.active
        self._reads_user = bool(rules.caps) or self._excl_active
        # what counting a served decision needs, worked out once
        self._decision_budgets = [
            (b.name, b.per == "bundle", frozenset(b.ids))
            for b in rules.budgets
            if b.count == "decisions"
        ]
        self._cap_per = [c.per for c in rules.caps]
        self._cap_reasons = [f"cap {c.name!r}" for c in rules.caps]
        self._budget_paces = [(b.max_per_day, b.pacing == "even") for b in rules.budgets]
        self._budget_even = [m for m, even in self._budget_paces if even]
        self._budget_fixed_min = min(
            (m for m, even in self._budget_paces if not even), default=_NO_LIMIT
        )
        self._keeps_pending = rules.exclusions.active or any(
            b.count == "orders" for b in rules.budgets
        )
        self._static: tuple[tuple[int, int], BoolArray | None] | None = None
        self._parts: tuple[tuple[int, int], dict[str, NDArray[Any]]] | None = None
        # the static mask restricted to a candidate list, per list (the catalog hands out the
        # same rows array per city): id(rows) -> (rows, stamp, mask)
        self._static_rows: dict[int, tuple[NDArray[np.intp], tuple[int, int], BoolArray]] = {}
        # (column, id(rows)) -> (rows, the columns' dict it came from, the column at rows)
        self._gathered: dict[tuple[str, int], tuple[Any, Any, NDArray[Any]]] = {}
        self._pending: OrderedDict[str, tuple[str | None, str]] = OrderedDict()
        #: set while a restart replays the journal: counts are already in the log
        self.replaying = False

    @property
    def state(self) -> RuleState:
        """Where the caps, budgets and exclusions count (replaceable: a
        :class:`~bandit_engine.service.LoggedEngine` puts its log's state here)."""
        return self._state

    @state.setter
    def state(self, state: RuleState) -> None:
        self._state = state
        # a state that keeps the caps' counts incrementally answers without a recount
        self._fast_caps = (
            state.track_caps(self._cap_spec)
            if isinstance(state, MemoryRuleState) and self._cap_spec
            else None
        )

    # -- catalog columns, cached per catalog version ------------------------------------------
    def _stamp(self) -> tuple[int, int]:
        return (self.catalog.version, len(self.catalog))

    def _columns(self) -> dict[str, NDArray[Any]]:
        """Per bundle row: ``deal_row``, ``course_row``, ids, and every column a rule reads."""
        stamp = self._stamp()
        if self._parts is not None and self._parts[0] == stamp:
            return self._parts[1]
        cat = self.catalog
        rows = np.arange(len(cat), dtype=np.intp)
        d_rows, c_rows = cat.part_rows(rows)
        deals, courses = cat.deals(), cat.courses()
        out: dict[str, NDArray[Any]] = {
            "deal_row": d_rows,
            "course_row": c_rows,
            "deal_id": deals["deal_id"].to_numpy(dtype=object)[d_rows],
            "course_id": courses["course_id"].to_numpy(dtype=object)[c_rows],
            "bundle_id": np.asarray(cat.bundle_ids, dtype=object),
        }
        for comp in self._compiled:
            for p in (comp.require, comp.when):
                for col in p.columns if p else ():
                    side, name = col.split(".", 1)
                    if side not in BUNDLE_SIDES or col in out:
                        continue
                    table, at = (deals, d_rows) if side == "deal" else (courses, c_rows)
                    values = table[name].to_numpy()
                    if values.dtype.kind in "biuf":
                        out[col] = values.astype(np.float64)[at]
                    else:
                        out[col] = values.astype(object)[at]
        self._parts = (stamp, out)
        return out

    def _static_mask(self) -> BoolArray | None:
        """Rows allowed by the rules that read no profile (``None``: no such rule)."""
        stamp = self._stamp()
        if self._static is not None and self._static[0] == stamp:
            return self._static[1]
        rules = [c for c in self._compiled if not c.dynamic]
        mask: BoolArray | None = None
        if rules:
            cols = self._columns()
            n = len(self.catalog)
            mask = np.ones(n, dtype=bool)
            every = np.arange(n, dtype=np.intp)
            for comp in rules:
                mask &= self._rule(comp, cols, every, {})
        self._static = (stamp, mask)
        return mask

    # -- predicates -------------------------------------------------------------------------------
    def _side(
        self, col: str, cols: Mapping[str, NDArray[Any]], rows: NDArray[np.intp], profile: Any
    ) -> Any:
        side, name = col.split(".", 1)
        if side in BUNDLE_SIDES:
            # a bundle column at a list's rows: the same for every decision over that list
            hit = self._gathered.get((col, id(rows)))
            if hit is not None and hit[0] is rows and hit[1] is cols:
                return hit[2]
            if len(self._gathered) >= 512:
                self._gathered.clear()
            values = cols[col][rows]
            self._gathered[(col, id(rows))] = (rows, cols, values)
            return values
        part = profile.get(side) if profile else None
        return part.get(name) if part else None

    def _pred(
        self,
        p: Predicate,
        cols: Mapping[str, NDArray[Any]],
        rows: NDArray[np.intp],
        profile: Any,
    ) -> tuple[BoolArray, BoolArray]:
        """``(holds, undecided)`` over ``rows``."""
        n = rows.shape[0]
        left = self._side(p.column, cols, rows, profile)
        if p.other is None:
            right: Any = p.value
        else:
            right = self._side(p.other, cols, rows, profile)
            if p.factor != 1.0:
                right = _scaled(right, p.factor)
        la, ra = isinstance(left, np.ndarray), isinstance(right, np.ndarray)
        if not la and not ra:
            r = p.compare(left, right)
            return np.full(n, r is True), np.full(n, r is None)
        ufunc = _UFUNCS.get(p.op)
        if ufunc is not None and _numeric(left) and _numeric(right):
            # the fast path: numbers against numbers (NaN compares False without a warning)
            if left is None or right is None:
                return np.zeros(n, dtype=bool), np.ones(n, dtype=bool)
            holds = ufunc(left, right)
            undecided = np.isnan(left) if la else np.isnan(right)
            if la and ra:
                undecided |= np.isnan(right)
            elif (not la and isinstance(left, float) and math.isnan(left)) or (
                not ra and isinstance(right, float) and math.isnan(right)
            ):
                undecided = np.ones(n, dtype=bool)
            if p.op == "!=":
                holds &= ~undecided
            return holds, undecided
        lefts = left if la else [left] * n
        rights = right if ra else [right] * n
        res = [p.compare(a, b) for a, b in zip(lefts, rights, strict=True)]
        return (
            np.fromiter((r is True for r in res), dtype=bool, count=n),
            np.fromiter((r is None for r in res), dtype=bool, count=n),
        )

    def _rule(
        self,
        comp: _Compiled,
        cols: Mapping[str, NDArray[Any]],
        rows: NDArray[np.intp],
        profile: Any,
    ) -> BoolArray:
        holds, undecided = self._pred(comp.require, cols, rows, profile)
        ok = holds | undecided if comp.allow_missing else holds
        if comp.when is not None:
            applies, w_undecided = self._pred(comp.when, cols, rows, profile)
            ok = ok | ~(applies & ~w_undecided)
        return ok

    # -- per decision -----------------------------------------------------------------------------
    def user_key(self, user_id: str | None) -> str | None:
        """The state's pseudonym of ``user_id`` (``None`` for an anonymous decision)."""
        return None if user_id is None else self.state.user_key(user_id)

    def _blocked(
        self, key: str | None, now: float
    ) -> tuple[set[str], set[str], set[str], list[str]]:
        """``(bundles, deals, courses, reasons)`` the counters rule out now."""
        rules = self.rules
        by: dict[str, set[str]] = {"bundle": set(), "deal": set(), "course": set()}
        reasons: list[str] = []
        excl = rules.exclusions
        if key is not None and self._reads_user:
            state = self._state
            over = None
            orders: Sequence[tuple[str, str, float]] = ()
            if self._fast_caps is not None and isinstance(state, MemoryRuleState):
                over = state.cap_blocked(key, now, self._fast_caps)
            if over is not None:  # the state's incremental counts: no recount
                for j, items in enumerate(over):
                    if items:
                        by[self._cap_per[j]] |= items
                        reasons.append(self._cap_reasons[j])
                if self._excl_active:
                    assert isinstance(state, MemoryRuleState)
                    orders = state.orders_of(key)
            else:
                hist = state.history(key, now - self._max_window, orders=self._excl_active)
                if rules.caps and hist.shows:
                    self._recount_caps(hist.shows, now, by, reasons)
                orders = hist.orders
            if excl.bought_courses and orders:
                by["course"] |= {c for _, c, _ in orders}
                reasons.append("bought courses")
            if excl.ordered_deals_days is not None and orders:
                since = now - excl.ordered_deals_days * 86_400.0
                recent = {d for d, _, ts in orders if ts > since}
                if recent:
                    by["deal"] |= recent
                    reasons.append("recently ordered deals")
        if rules.budgets:
            # Budget.allowed for every budget, the share of the day worked out once
            f = (now % 86_400.0) / 86_400.0
            lowest = self._budget_fixed_min
            for m in self._budget_even:
                lowest = min(lowest, max(1, min(m, math.ceil(m * f))))
            used = self._state.budget_used(int(now // 86_400), lowest)
            if used:  # only the counts at or above the smallest limit come back
                limits = [
                    max(1, min(m, math.ceil(m * f))) if even else m
                    for m, even in self._budget_paces
                ]
                for b, limit in zip(rules.budgets, limits, strict=True):
                    out = {
                        item for (name, item), n in used.items() if name == b.name and n >= limit
                    }
                    if out:
                        by[b.per] |= out
                        reasons.append(f"budget {b.name!r}")
        return by["bundle"], by["deal"], by["course"], reasons

    def _recount_caps(
        self,
        shows: Sequence[tuple[str, str, float]],
        now: float,
        by: dict[str, set[str]],
        reasons: list[str],
    ) -> None:
        """The caps' blocked items from the user's shows (for a state without incremental
        counts): one pass, counting (cap, item) for every cap of the show's scope whose window
        holds it."""
        counts: dict[tuple[int, str], int] = {}
        get = counts.get
        cuts = [[(j, now - w) for j, w in caps] for caps in self._cap_windows]
        scope_at = self._scope_at
        for scope, item, ts in shows:
            for j, cut in cuts[scope_at[scope]] if scope in scope_at else ():
                if ts > cut:
                    ck = (j, item)
                    counts[ck] = get(ck, 0) + 1
        hit_caps: set[int] = set()
        caps = self.rules.caps
        for (j, item), c in counts.items():
            if c >= caps[j].max_shows:
                by[caps[j].per].add(item)
                hit_caps.add(j)
        reasons.extend(self._cap_reasons[j] for j in sorted(hit_caps))

    def _static_for(self, rows: NDArray[np.intp]) -> BoolArray | None:
        """:meth:`_static_mask` restricted to ``rows``, cached per rows array (the catalog's
        per-city lists are the same arrays decision after decision)."""
        static = self._static_mask()
        if static is None:
            return None
        stamp = self._stamp()
        hit = self._static_rows.get(id(rows))
        if hit is not None and hit[0] is rows and hit[1] == stamp:
            return hit[2]
        if len(self._static_rows) >= 256:
            self._static_rows.clear()
        mask = static[rows]
        self._static_rows[id(rows)] = (rows, stamp, mask)
        return mask

    def _rule_mask(self, rows: NDArray[np.intp], profile: Any) -> tuple[BoolArray | None, int]:
        """The eligibility rules' mask over ``rows`` (static and profile x bundle rules
        together; ``None``: all pass) and how many pass, cached per (list, the profile values
        the rules read with their types: ``True`` and ``1`` compare alike but scale
        differently). The mask is shared: callers never change it in place."""
        if len(self._profile_columns) == 1:  # the common case, without the list
            side, name = self._profile_columns[0]
            part = profile.get(side) if profile else None
            v = part.get(name) if part else None
            key: tuple[Any, ...] = (id(rows), type(v), v)
        else:
            values: list[Any] = [id(rows)]
            for side, name in self._profile_columns:
                part = profile.get(side) if profile else None
                v = part.get(name) if part else None
                values.append(type(v))
                values.append(v)
            key = tuple(values)
        stamp = self._stamp()
        cached = True
        try:
            hit = self._rule_masks.get(key)
        except TypeError:  # an unhashable value (a list of tags): no cache
            cached, hit = False, None
        if hit is not None and hit[0] is rows and hit[1] == stamp:
            return hit[2], hit[3]
        keep = self._static_for(rows)
        if self._dynamic:
            cols = self._columns()
            for comp in self._dynamic:
                ok = self._rule(comp, cols, rows, profile)
                keep = ok if keep is None else keep & ok
        n = rows.shape[0] if keep is None else int(np.count_nonzero(keep))
        if keep is not None:
            keep.flags.writeable = False  # shared from here on: a write would corrupt the cache
        if cached:
            if len(self._rule_masks) >= _MASKS_KEPT:
                self._rule_masks.clear()
            self._rule_masks[key] = (rows, stamp, keep, n)
        return keep, n

    def _positions(self, rows: NDArray[np.intp]) -> dict[str, dict[str, list[int]]]:
        """Per scope (bundle, deal, course), id -> its positions in ``rows``, cached per list
        (as :meth:`_static_for`)."""
        stamp = self._stamp()
        hit = self._positions_of.get(id(rows))
        if hit is not None and hit[0] is rows and hit[1] == stamp:
            return hit[2]
        cols = self._columns()
        out: dict[str, dict[str, list[int]]] = {}
        for scope in ("bundle", "deal", "course"):
            at: dict[str, list[int]] = {}
            for i, item in enumerate(cols[f"{scope}_id"][rows].tolist()):
                at.setdefault(item, []).append(i)
            out[scope] = at
        if len(self._positions_of) >= 256:
            self._positions_of.clear()
        self._positions_of[id(rows)] = (rows, stamp, out)
        return out

    def keep_mask(
        self, cs: CandidateSet, profile: Any, key: str | None, now: float
    ) -> tuple[BoolArray | None, str]:
        """Which of ``cs`` pass every rule: ``(None, "")`` when all do, ``(mask, "")`` when some
        do, ``(all-False mask, reasons)`` when none does.

        Per decision this is a few dictionary reads and, when the counters block something, a
        handful of array operations: the eligibility rules' mask is cached per list and profile
        values, the counters' blocked ids are looked up among the list's positions, and the
        reasons are only worked out when nothing is left."""
        rows = cs.rows
        keep, n = self._rule_mask(rows, profile)
        why: list[str] = []
        if self._uses_state:
            bundles, deals, courses, why = self._blocked(key, now)
            if bundles or deals or courses:
                pos = self._positions(rows)
                at: list[int] = []
                for scope, items in (("bundle", bundles), ("deal", deals), ("course", courses)):
                    of = pos[scope]
                    for item in items:
                        hit = of.get(item)
                        if hit is not None:
                            at.extend(hit)
                if at:
                    keep = np.ones(rows.shape[0], dtype=bool) if keep is None else keep.copy()
                    keep[at] = False
                    n = int(np.count_nonzero(keep))
        if keep is None or n == keep.shape[0]:
            return None, ""
        if n:
            return keep, ""
        failed: list[tuple[str, BoolArray]] = []
        static = self._static_for(rows)
        if static is not None:
            failed.append(("eligibility rules", static))
        cols = self._columns()
        for comp in self._dynamic:
            failed.append((f"rule {comp.name!r}", self._rule(comp, cols, rows, profile)))
        reasons = [label for label, ok in failed if not ok.all()] + why
        return keep, "the rules rule out every eligible bundle (" + ", ".join(reasons) + ")"

    def filter(
        self, cs: CandidateSet, profile: Any, key: str | None, now: float
    ) -> tuple[CandidateSet | None, str]:
        """The candidates that pass every rule (``None`` and the reasons when none does)."""
        keep, reason = self.keep_mask(cs, profile, key, now)
        if keep is None:
            return cs, ""
        if reason:
            return None, reason
        idx = np.flatnonzero(keep)
        return (
            CandidateSet(tuple([cs.ids[i] for i in idx.tolist()]), cs.rows[idx], cs.features[idx]),
            "",
        )

    def eligible(
        self,
        profile: Any,
        key: str | None,
        now: float,
        restrict: Sequence[str] | None,
    ) -> tuple[CandidateSet | None, BoolArray | None, str]:
        """The catalog's eligible set for ``profile`` and the mask of what the rules keep of it
        (``None``: all of it); ``(None, None, reason)`` when nothing is left. The set is the
        catalog's own (per city, the same object every time), so a policy given it with the mask
        keeps its per-list caches (see :mod:`bandit_engine.policies._mask`). With
        ``fallback.kind == "error"`` the catalog's own error propagates."""
        try:
            cs = self.catalog.eligible_for(profile, now, restrict)
        except ValidationError as exc:
            if self.rules.fallback.kind == "error":
                raise
            return None, None, exc.message
        keep, reason = self.keep_mask(cs, profile, key, now)
        if reason:
            return None, None, reason
        return cs, keep, ""

    def fallback_set(
        self, profile: Any, key: str | None, now: float
    ) -> tuple[CandidateSet | None, BoolArray | None]:
        """The candidates of the fallback and the mask of those the rules keep (``None``: all);
        ``(None, None)``: none, the decision is a no-offer. A control policy gets every offered
        bundle under the mask, so its per-list caches hold as the main policy's do."""
        fb = self.rules.fallback
        if fb.kind == "bundle":
            assert fb.bundle_id is not None
            row = self.catalog.row(fb.bundle_id)
            # exempt from eligibility, caps and exclusions, never from budgets
            bundles, deals, _, _ = self._blocked(None, now)
            deal_id, _ = self.catalog.parts(fb.bundle_id)
            if fb.bundle_id in bundles or deal_id in deals:
                return None, None
            rows = np.asarray([row], dtype=np.intp)
            cs = CandidateSet((fb.bundle_id,), rows, self.catalog.features([fb.bundle_id]))
            return cs, None
        if fb.kind == "policy":
            offered = self.catalog.offered(now)
            if not offered.ids:
                return None, None
            keep, reason = self.keep_mask(offered, profile, key, now)
            return (None, None) if reason else (offered, keep)
        return None, None

    # -- counting ---------------------------------------------------------------------------------
    def _decision_units(self, bundle_id: str, deal_id: str) -> list[tuple[str, str]]:
        """:meth:`_units` of ``"decisions"`` from the budgets worked out at construction."""
        out = []
        for name, per_bundle, ids in self._decision_budgets:
            item = bundle_id if per_bundle else deal_id
            if not ids or item in ids:
                out.append((name, item))
        return out

    def _units(self, count: str, bundle_id: str, deal_id: str) -> list[tuple[str, str]]:
        out = []
        for b in self.rules.budgets:
            if b.count != count:
                continue
            item = bundle_id if b.per == "bundle" else deal_id
            if not b.ids or item in b.ids:
                out.append((b.name, item))
        return out

    def record(
        self,
        decision_id: str,
        key: str | None,
        bundle_id: str,
        now: float,
        parts: tuple[str, str] | None = None,
    ) -> None:
        """Count a served decision: its shows for the caps, its decision budgets (``parts``:
        the bundle's deal and course ids when the caller has them)."""
        if self.replaying or not self._uses_state:
            return
        deal_id, course_id = parts if parts is not None else self.catalog.parts(bundle_id)
        items = {"bundle": bundle_id, "deal": deal_id, "course": course_id}
        self._state.record_show(
            key,
            [(scope, items[scope]) for scope in self._cap_scopes],
            self._decision_units(bundle_id, deal_id),
            now=now,
            day=int(now // 86_400),
            forget_before=now - self._max_window,
        )
        if self._keeps_pending:
            if len(self._pending) >= _PENDING_KEPT:
                self._pending.popitem(last=False)
            self._pending[decision_id] = (key, bundle_id)

    def on_order(self, decision_id: str, now: float) -> None:
        """Count an accepted order of a decision this runner recorded (exclusions, order
        budgets). Orders of decisions it no longer remembers (more than 200,000 decisions ago, or
        before a restart) count through the event log only."""
        if self.replaying:
            return
        seen = self._pending.get(decision_id)
        if seen is None:
            return
        key, bundle_id = seen
        deal_id, course_id = self.catalog.parts(bundle_id)
        self.state.record_order(
            key,
            deal_id,
            course_id,
            self._units("orders", bundle_id, deal_id),
            now=now,
            day=int(now // 86_400),
        )

    def forget(self, user_id: str) -> int:
        """Remove the user's counters (right to be forgotten); returns how many rows."""
        key = self.state.user_key(user_id)
        for did in [d for d, (k, _) in self._pending.items() if k == key]:
            del self._pending[did]
        return self.state.forget(key)


_UFUNCS: dict[str, Any] = {
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
    "==": np.equal,
    "!=": np.not_equal,
}


def _numeric(v: Any) -> bool:
    """A float64 array, a number (bools count as 0 / 1) or ``None`` (missing)."""
    if isinstance(v, np.ndarray):
        return bool(v.dtype == np.float64)
    return v is None or isinstance(v, int | float)


def _scaled(v: Any, factor: float) -> Any:
    """``factor * v`` for numbers and float arrays; ``None`` (undecided) for anything else."""
    if isinstance(v, np.ndarray):
        return v * factor if v.dtype == np.float64 else None
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) * factor
