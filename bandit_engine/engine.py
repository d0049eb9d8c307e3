"""The :class:`Engine`: profiles -> context -> eligible bundles -> policy -> decision -> rewards -> learning.

The same object is used unchanged by the embedding API, ``bandit simulate``, ``bandit evaluate`` and
``bandit serve-policy``.

Examples
--------
>>> from bandit_engine.demo import demo_engine
>>> engine = demo_engine(seed=7)
>>> d = engine.decide("U000001")
>>> 0.0 < d.propensity <= 1.0
True
>>> engine.report(d.decision_id, "click")
'accepted'
"""

from __future__ import annotations

import hashlib
import math
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from itertools import compress
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ._version import __version__
from .catalog import Catalog
from .errors import (
    BanditError,
    ConfigError,
    ConflictError,
    ModelFileError,
    NoOfferError,
    NotFoundError,
    ValidationError,
)
from .features import FeatureMap
from .features.behaviour import BehaviourStore
from .features.grid import GridFeatures
from .features.pairs import PairFeatures, exchangeable_groups
from .fileformat import read_state, write_state
from .holdout import POLICY_GROUP, HoldoutPlan
from .policies.base import GridPolicy, Policy
from .policies.explain import Explanation, explain_choice
from .policies.registry import policy_from_dict, policy_to_dict
from .profiles import (
    CONSENT,
    PERSONALISATION,
    Profile,
    ProfileSource,
    ProfileStore,
    check_consent,
    merge_profiles,
    withhold,
)
from .records import Decision, LearnedReward, PairGrid
from .rewards import Attribution, ClosedDecision, EventStatus, RewardSpec
from .rules import RuleRunner, Rules, RuleState

__all__ = ["OPT_OUT_MODE", "Engine"]

FloatArray = NDArray[np.float64]
Clock = Callable[[], float]
MAX_ID_LENGTH = 128
#: Ids an availability mask (``decide(candidates=...)``) may name: the mask is checked id by id.
MAX_CANDIDATES = 100_000
_SAVED_CLOSED = 100_000
#: The mode of a decision served to a user who opted out of personalisation: the control policy
#: (uniform over the eligible bundles) chose it from a context holding nothing of the profile.
OPT_OUT_MODE = "control:opt_out"
_SWEEP_EVERY = 3600.0


class _Pending:
    """What a decision needs to learn later (a slotted class: one is made per decision)."""

    __slots__ = (
        "bundle_id",
        "bundle_row",
        "candidates",
        "group",
        "propensity",
        "seen",
        "t",
        "user_key",
        "x",
        "z",
    )

    def __init__(
        self,
        x: FloatArray,
        bundle_id: str,
        z: FloatArray,
        propensity: float,
        user_key: bytes | None = None,
        bundle_row: int = -1,
        candidates: tuple[str, ...] | None = None,
        t: float | None = None,
        seen: Any = False,
        group: str | None = None,
    ) -> None:
        self.group = group  # holdout group that chose (None: no holdout plan)
        self.candidates = candidates  # the tuple the catalog shares between decisions (explain)
        self.t = t
        self.seen = seen  # the user's behaviour row the candidate rows were built from (explain)
        self.x = x
        self.bundle_id = bundle_id
        self.z = z
        self.propensity = propensity
        self.user_key = user_key  # behaviour pseudonym (never the raw id), None if anonymous
        self.bundle_row = bundle_row  # catalog row of the bundle (behaviour bookkeeping)


def _check_id(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH:
        raise ValidationError.for_field(
            name, value, f"must be a non-empty string of at most {MAX_ID_LENGTH} characters"
        )
    return value


def _plain_pseudonym(user_id: str) -> str:
    """An unkeyed stand-in pseudonym for an engine used without an event log."""
    return hashlib.sha256(user_id.encode("utf-8")).hexdigest()


def _segment_of(prof: Profile, city: Any) -> tuple[str, str | None]:
    """The reporting segment of a decision's user: platform presence and city."""
    k = prof.get("knowledge") is not None
    g = prof.get("groupbuy") is not None
    presence = "both" if k and g else "knowledge" if k else "groupbuy" if g else "neither"
    return presence, None if city is None else str(city)


def _check_time(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError.for_field(name, value, "must be a finite number of epoch seconds")
    return float(value)


class Engine:
    """Features + catalog + policy + reward spec, with save/load.

    Parameters
    ----------
    features
        A fitted :class:`~bandit_engine.features.FeatureMap` (turns a profile into ``x``).
    catalog
        The :class:`~bandit_engine.catalog.Catalog` of bundles.
    policy
        Any :class:`~bandit_engine.policies.Policy`; it carries its own seeded generator.
    rewards
        The :class:`~bandit_engine.rewards.RewardSpec` (weights, cap, default reward, window).
    clock
        Returns the current time in epoch seconds (injectable for tests and simulations).
    id_factory
        Makes decision ids (default: random UUID4 hex). Simulations pass a deterministic one.
    on_learned
        Called with every :class:`~bandit_engine.records.LearnedReward` after the policy learned it.
    auto_advance
        Close due attribution windows at every ``decide`` / ``report`` call. When ``False`` the caller
        calls :meth:`advance`.
    model_id
        Identity of this model lineage, part of every ``policy_version`` (default: a random UUID;
        kept through save/load). Pass a fixed one for reproducible logs.

    Notes
    -----
    A decision learns once, when its attribution window closes (see :mod:`bandit_engine.rewards`).
    The engine is not thread-safe; the HTTP server serializes access to it.

    With a grid policy (``factored_ucb``, ``factored_ts``; a pair-all catalog, listed or not) a
    decision scores the user's eligible deals x active courses through their sides
    (:mod:`bandit_engine.features.grid`) instead of listing candidates. Not yet on that path: the
    live behaviour block (the schema's Behaviour is ignored), availability masks
    (``candidates=``), :meth:`redo_decision`, :meth:`score` and :meth:`policy_inputs`; each says so
    with a :class:`~bandit_engine.errors.ConfigError`.
    """

    def __init__(
        self,
        features: FeatureMap,
        catalog: Catalog,
        policy: Policy,
        rewards: RewardSpec | None = None,
        *,
        clock: Clock = time.time,
        id_factory: Callable[[], str] | None = None,
        on_learned: Callable[[LearnedReward], None] | None = None,
        auto_advance: bool = True,
        model_id: str | None = None,
    ) -> None:
        grid_policy = callable(getattr(policy, "choose_grid", None))
        if not (isinstance(policy, GridPolicy) if grid_policy else isinstance(policy, Policy)):
            raise ValidationError.for_field(
                "policy", type(policy).__name__, "must implement the Policy protocol"
            )
        self.grid: GridFeatures | None = None
        if grid_policy:
            self.grid = GridFeatures(
                features.feature_names, catalog.deal_feature_names, catalog.course_feature_names
            )
        elif not catalog.materialized:
            raise ConfigError.for_field(
                "policy",
                getattr(policy, "name", type(policy).__name__),
                "cannot decide over an unlisted catalog (materialize=False): use a grid "
                "policy (factored_ucb, the default there; factored_ts; grid_popularity or "
                "grid_uniform as controls) or list the bundles",
            )
        self.features = features
        self.catalog = catalog
        self.policy = policy
        bind = getattr(policy, "bind_feature_names", None)
        if callable(bind) and self.grid is None:
            # a policy that names bundle columns (fixed_rule:column=deal.discount) finds them
            bind(catalog.feature_names)
        self.rewards = rewards if rewards is not None else RewardSpec()
        self.clock = clock
        self.id_factory = id_factory if id_factory is not None else (lambda: uuid.uuid4().hex)
        self.on_learned = on_learned
        self.auto_advance = auto_advance
        self.profiles: ProfileSource = ProfileStore()
        self.attribution: Attribution[_Pending] = Attribution(self.rewards)
        self.model_id = uuid.uuid4().hex if model_id is None else _check_id("model_id", model_id)
        self.n_decisions = 0
        self.n_learned = 0
        # Live behaviour (features/behaviour.py) and pair features (features/pairs.py): on when the
        # schema declares a Behaviour block. x = [profile x, behaviour user features]; candidate
        # rows = [bundle z, profile-match + crosses, behaviour per-candidate features].
        spec = getattr(features, "behaviour", None)
        self.behaviour: BehaviourStore | None = None
        self.pairs: PairFeatures | None = None
        if spec is not None and self.grid is None:
            # part_slots=None ("auto") is resolved here, once, from the catalog's size; the
            # store saves the resolved spec, so a loaded engine keeps the policy's dimensions
            self._use_behaviour(BehaviourStore(spec.resolved(catalog)))
        self._swept_at = -math.inf
        self._static_rows: tuple[tuple[int, int], FloatArray] | None = None
        self._cells: tuple[int, NDArray[np.intp], NDArray[np.intp]] | None = None
        # recent grids' user-independent side rows (features/grid.py), keyed by the grid object
        self._sides: dict[int, tuple[Any, Any, Any]] = {}
        # policy_version, remembered with what it was made from (rebuilt when any changes)
        self._version: tuple[str, str, int, str] = ("", "", -1, "")
        # holdout groups (bandit_engine/holdout.py): each group's own policy, learning only from
        # its group's decisions; pseudonym_fn is the event log's keyed pseudonym when served
        self.holdout: HoldoutPlan | None = None
        self.holdout_policies: dict[str, Policy] = {}
        self.pseudonym_fn: Callable[[str], str] | None = None
        #: business rules (bandit_engine/rules): applied before the policy chooses; None = off
        self.rules: RuleRunner | None = None
        # the control policy of users who opted out of personalisation (uniform over what is
        # eligible, seed 0: exact propensities 1/k), made at the first such decision
        self._control: Any = None

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        *,
        schema: Any,
        profiles: Mapping[str, pd.DataFrame],
        catalog: Catalog,
        policy: Policy,
        rewards: RewardSpec | None = None,
        ignore_extra: bool = True,
        **kwargs: Any,
    ) -> Engine:
        """Fit ``schema`` (a :class:`~bandit_engine.features.ProfileSchema`) on the platform tables,
        load those profiles into the engine's profile store and return the engine.

        Table columns the schema does not declare are ignored unless ``ignore_extra=False``
        (real tables are wide; the schema says what the model uses)."""
        features = schema.fit(profiles, ignore_extra=ignore_extra)
        engine = cls(features, catalog, policy, rewards, **kwargs)
        engine.load_profiles(profiles, ignore_extra=ignore_extra)
        return engine

    def load_profiles(
        self, tables: Mapping[str, pd.DataFrame], *, ignore_extra: bool = True
    ) -> int:
        """Put every user of the platform tables into the profile store (only the columns the schema
        declares, unless ``ignore_extra=False`` makes other columns an error); returns how many."""
        n = 0
        for user_id, profile in self.features.profiles(tables, ignore_extra=ignore_extra):
            self.profiles.put(str(user_id), profile)
            n += 1
        return n

    def use_rules(self, rules: Rules | None, state: RuleState | None = None) -> None:
        """Apply business rules (:class:`~bandit_engine.rules.Rules`) to every later decision, or
        none (``None``). ``state`` keeps the caps' and budgets' counters (default: this process's
        memory; a :class:`~bandit_engine.service.LoggedEngine` puts them in its event log).

        Checked now: a predicate naming an unknown column, or a fallback bundle not in the
        catalog, is a :class:`~bandit_engine.errors.ConfigError` and changes nothing. Rules are
        saved with the engine; their in-memory counters are not."""
        if rules is None:
            self.rules = None
            return
        if self.grid is not None:
            self._not_for_grid("rules")
        self.rules = RuleRunner(rules, self.features, self.catalog, state)

    # -- properties -------------------------------------------------------------------------
    @property
    def policy_version(self) -> str:
        """``"<policy name>:<model id prefix>:<updates learned>"``; changes with every update."""
        name, model_id, n = self.policy.name, self.model_id, self.policy.n_updates_
        cached = self._version
        if cached[2] != n or cached[1] is not model_id or cached[0] is not name:
            cached = self._version = (name, model_id, n, f"{name}:{model_id[:8]}:{n}")
        return cached[3]

    def now(self) -> float:
        return float(self.clock())

    # -- holdout groups ---------------------------------------------------------------------
    def set_holdout(self, plan: HoldoutPlan | None, *, seed: int = 0) -> None:
        """Keep shares of users on control policies (:mod:`bandit_engine.holdout`); ``None``
        removes the plan. Each group gets a fresh policy (seeded from ``seed`` and its position).
        With a grid policy every group's policy must be a grid policy too (``grid_popularity``,
        ``grid_uniform``, a factored policy): a :class:`~bandit_engine.errors.ConfigError` names
        the group otherwise, and nothing changes."""
        if plan is None:
            self.holdout, self.holdout_policies = None, {}
            return
        policies = {g.name: g.make(seed + 1 + i) for i, g in enumerate(plan.groups)}
        if self.grid is not None:
            for name, policy in policies.items():
                if not callable(getattr(policy, "choose_grid", None)):
                    raise ConfigError.for_field(
                        f"holdout group {name!r} policy",
                        policy.name,
                        "must be a grid policy on an unlisted or grid catalog (grid_popularity, "
                        "grid_uniform, factored_ts, factored_ucb)",
                    )
        self.holdout_policies = policies
        self.holdout = plan

    def group_of(self, user_id: str | None, decision_id: str) -> str | None:
        """A decision's holdout group: by the user's pseudonym (``pseudonym_fn``, the event log's
        keyed hash when served; a SHA-256 of the id otherwise), by the decision id when anonymous;
        ``None`` without a plan."""
        plan = self.holdout
        if plan is None:
            return None
        if user_id is None:
            return plan.assign("decision:" + decision_id)
        fn = self.pseudonym_fn
        return plan.assign(fn(user_id) if fn is not None else _plain_pseudonym(user_id))

    def policy_of(self, group: str | None) -> Policy:
        if group is None or group == POLICY_GROUP:
            return self.policy
        policy = self.holdout_policies.get(group)
        if policy is None:
            raise ConflictError.for_field(
                "group",
                group,
                f"is not a holdout group of this engine ({sorted(self.holdout_policies)})",
            )
        return policy

    def _use_behaviour(self, store: BehaviourStore) -> None:
        spec = store.spec
        self.behaviour = store
        self._static_rows = None
        self.pairs = PairFeatures(
            self.features.feature_names,
            self.catalog.feature_names,
            match=spec.profile_match,
            crosses=spec.crosses,
            known_crosses=spec.known_crosses,
            bundle_crosses=spec.bundle_crosses,
            part_slots=spec.part_slots or 0,
        )
        self._tell_static_columns()

    def _tell_static_columns(self) -> None:
        """Tell a pair policy how many leading columns of a candidate row depend on the bundle
        alone (bundle features, then the static pair columns): it caches their share of the
        confidence widths per bundle (a speed hint, checked against the rows)."""
        if self._pair_rows and hasattr(self.policy, "static_columns"):
            assert self.pairs is not None
            self.policy.static_columns = self.catalog.n_arm_features + self.pairs.n_static
        if self._pair_rows and hasattr(self.policy, "prior_groups"):
            assert self.pairs is not None
            names = [*self.catalog.feature_names, *self.pairs.names]
            self.policy.prior_groups = exchangeable_groups(names)

    @property
    def n_context(self) -> int:
        """Length of the context vector the policy sees (profile + behaviour user features)."""
        spec = self.behaviour.spec if self.behaviour is not None else None
        return self.features.n_features + (spec.n_user_features if spec is not None else 0)

    @property
    def n_arm_features(self) -> int:
        """Length of a candidate row the policy sees (bundle + pair + behaviour features); for a
        grid policy, of the learned row ``[deal side, course side, deal cell, course cell]``."""
        if self.grid is not None:
            return self.grid.deal_width + self.grid.course_width + 2
        p = self.catalog.n_arm_features
        if self._pair_rows:
            assert self.behaviour is not None and self.pairs is not None
            p += self.pairs.width + self.behaviour.spec.n_pair_features
        return p

    @property
    def _pair_rows(self) -> bool:
        """Whether the policy gets the extended candidate rows: only policies that declare
        ``pair_features = True`` (a shared model over the rows); the others get the bundle rows
        (a model over ``x (x) z`` would grow with the product of both widths)."""
        return self.pairs is not None and bool(getattr(self.policy, "pair_features", False))

    def _user_key(self, user_id: str | None) -> bytes | None:
        if self.behaviour is None or user_id is None:
            return None
        return self.behaviour.key(user_id)

    def behaviour_key(self, user_id: str) -> bytes | None:
        """The key of ``user_id`` in the live behaviour state (a pseudonym, never the raw id), or
        ``None`` when the engine keeps no behaviour."""
        return self._user_key(_check_id("user_id", user_id))

    def forget_behaviour(self, user_id: str) -> bool:
        """Erase the user's live behaviour (right to be forgotten); ``True`` if there was some.
        Decisions still pending keep their key and update nothing once it is gone."""
        if self.behaviour is None:
            return False
        return self.behaviour.forget(_check_id("user_id", user_id))

    def _live(
        self, x: FloatArray, key: bytes | None, rows: Any, Z: FloatArray, t: float
    ) -> tuple[FloatArray, FloatArray]:
        """``(x, Z)`` extended with the behaviour and pair features (unchanged without them)."""
        b, pairs = self.behaviour, self.pairs
        if b is None or pairs is None:
            return x, Z
        b.bind(self.catalog)
        xe = x
        if b.spec.n_user_features:
            d = x.shape[0]
            xe = np.empty(d + b.spec.n_user_features)
            xe[:d] = x
            b.user_vector(key, t, xe[d:])
        if not self._pair_rows:
            return xe, Z
        rows_a = np.asarray(rows, dtype=np.intp)
        Ze = np.hstack(
            [
                Z,
                self._static_pair_rows()[rows_a],
                pairs.compute_dynamic(x, Z),
                b.pair(key, t, rows_a),
            ]
        )
        return xe, Ze

    def _static_pair_rows(self) -> FloatArray:
        """The bundle-only pair columns of every catalog row, rebuilt when the catalog changes
        (they are the same for every user: computing them once saves most of the pair work)."""
        catalog, pairs = self.catalog, self.pairs
        assert pairs is not None
        stamp = (catalog.version, len(catalog))
        if self._static_rows is None or self._static_rows[0] != stamp:
            rows = np.arange(len(catalog), dtype=np.intp)
            Z = catalog.features(list(catalog.bundle_ids))
            parts = catalog.part_rows(rows) if any(pairs.part_slots) else None
            self._static_rows = (stamp, pairs.compute_static(Z, parts))
        return self._static_rows[1]

    # -- deciding ---------------------------------------------------------------------------
    def profile_of(
        self,
        user_id: str | None,
        profile: Mapping[str, Mapping[str, Any] | None] | None = None,
    ) -> Profile:
        """The stored profile of ``user_id`` merged with ``profile`` (inline wins)."""
        stored = self.profiles.get(user_id) if user_id is not None else None
        if profile is not None and not isinstance(profile, Mapping):
            raise ValidationError.for_field(
                "profile", profile, "must be a mapping platform -> fields"
            )
        return merge_profiles(stored, profile)

    def fusable(
        self,
        user_id: str | None,
        profile: Mapping[str, Mapping[str, Any] | None] | None = None,
    ) -> tuple[Profile, bool]:
        """What fusion may use of the user's profile now: ``(profile, personalised)``.

        The stored and inline profiles merged (:meth:`profile_of`), then the consent record
        applied (:func:`~bandit_engine.profiles.withhold`): withheld platforms left out, and for
        a user who opted out of personalisation, nothing (``({}, False)``)."""
        prof, personalised = withhold(self.profile_of(user_id, profile))
        return (prof if personalised else {}), personalised

    def set_consent(self, user_id: str, consent: Mapping[str, Any]) -> dict[str, bool]:
        """Record a user's consent (scopes: the declared platforms and ``"personalisation"``,
        each ``True`` / ``False``), merged over what was recorded; returns the whole record.

        It applies from the user's next decision. Withholding a platform also drops that
        platform's stored record from the engine's profile store (the log's store does the same);
        opting out of personalisation erases the user's live behaviour, and none is kept while the
        opt-out stands."""
        uid = _check_id("user_id", user_id)
        checked = check_consent(consent, self.features.platform_names)
        self.profiles.upsert(uid, CONSENT, checked)
        if checked.get(PERSONALISATION) is False:
            self.forget_behaviour(uid)
        record = (self.profiles.get(uid) or {}).get(CONSENT) or {}
        return {str(k): bool(v) for k, v in record.items()}

    def _control_policy(self, *, grid: bool = False) -> Any:
        """The opt-out control: uniform over the eligible bundles (over the grid's pairs for a
        grid policy), seed 0."""
        if self._control is None:
            if grid:
                from .policies.grid_baselines import GridUniform

                self._control = GridUniform(seed=0)
            else:
                from .policies.baselines import UniformRandom

                self._control = UniformRandom(seed=0)
        return self._control

    def context(
        self,
        user_id: str | None = None,
        profile: Mapping[str, Mapping[str, Any] | None] | None = None,
        *,
        now: float | None = None,
    ) -> FloatArray:
        """The context vector ``x`` the policy would see for this user now (consent applied)."""
        t = self.now() if now is None else _check_time("now", now)
        return self.features.transform_one(self.fusable(user_id, profile)[0], now=t)

    def policy_inputs(
        self,
        user_id: str | None = None,
        profile: Mapping[str, Mapping[str, Any] | None] | None = None,
        *,
        now: float | None = None,
    ) -> tuple[FloatArray, tuple[str, ...], FloatArray]:
        """``(x, candidate ids, candidate rows)``: what the policy would see if this user were
        decided for now (live behaviour and pair features included). Changes nothing."""
        self._not_for_grid("policy_inputs")
        t = self.now() if now is None else _check_time("now", now)
        if user_id is not None:
            _check_id("user_id", user_id)
        prof, personalised = self.fusable(user_id, profile)
        x = self.features.transform_one(prof, now=t)
        cs = self.catalog.eligible_for(prof, t)
        key = self._user_key(user_id) if personalised else None
        x, Z = self._live(x, key, cs.rows, cs.features, t)
        return x, cs.ids, Z

    def decide(
        self,
        user_id: str | None = None,
        profile: Mapping[str, Mapping[str, Any] | None] | None = None,
        *,
        candidates: Sequence[str] | None = None,
        decision_id: str | None = None,
        now: float | None = None,
    ) -> Decision:
        """Choose a bundle for a user.

        Parameters
        ----------
        user_id
            Looks up the stored profile (``None`` or an unknown id: cold start unless ``profile``).
        profile
            Inline profile ``{platform: {field: value}}``, merged over the stored one.
        candidates
            Optional availability mask: only these bundle ids (if eligible) may be chosen.
        decision_id
            Client-chosen id (must be new); default from ``id_factory``.
        now
            Decision time in epoch seconds (default: the engine's clock).
        """
        t = self.now() if now is None else _check_time("now", now)
        if decision_id is not None:
            _check_id("decision_id", decision_id)
            if decision_id in self.attribution:
                raise ConflictError.for_field("decision_id", decision_id, "is already in use")
        if user_id is not None:
            _check_id("user_id", user_id)
        if (
            candidates is not None
            and not isinstance(candidates, str)
            and hasattr(candidates, "__len__")
            and len(candidates) > MAX_CANDIDATES
        ):
            raise ValidationError.for_field(
                "candidates",
                f"{len(candidates):,} ids",
                f"must name at most {MAX_CANDIDATES:,} bundles",
            )
        if candidates is not None and (
            isinstance(candidates, str) or not all(isinstance(c, str) for c in candidates)
        ):
            raise ValidationError.for_field(
                "candidates", candidates, "must be a list of bundle ids"
            )
        if candidates is not None and len(set(candidates)) != len(candidates):
            seen: set[str] = set()
            for c in candidates:
                if c in seen:
                    raise ValidationError.for_field("candidates", c, "must not name a bundle twice")
                seen.add(c)
        if self.auto_advance:
            self.advance(t)
        if profile is None:
            # Read-only use below: the stored profile itself, not profile_of's merged copy.
            stored = self.profiles.get(user_id) if user_id is not None else None
            prof: Profile = stored if stored is not None else {}
        else:
            prof = self.profile_of(user_id, profile)
        # consent (profiles.withhold): withheld platforms are absent; an opted-out user is served
        # the control policy from nothing of their profile, and keeps no behaviour state
        prof, personalised = withhold(prof)
        if not personalised:
            prof = {}
        x = self.features.transform_one(prof, now=t)
        if self.grid is not None:
            if candidates is not None:
                self._not_for_grid("candidates")
            did = decision_id if decision_id is not None else self.id_factory()
            group = self.group_of(user_id, did)
            segment = _segment_of(prof, self.catalog.rules.city_of(prof))
            return self._choose_grid(
                did, prof, x, t, group=group, segment=segment, control=not personalised
            )
        if self.rules is not None:
            did = decision_id if decision_id is not None else self.id_factory()
            return self._decide_with_rules(did, user_id, prof, x, t, candidates, personalised)
        cs = self.catalog.eligible_for(prof, t, candidates)
        did = decision_id if decision_id is not None else self.id_factory()
        key = self._user_key(user_id) if personalised else None
        x, Z = self._live(x, key, cs.rows, cs.features, t)
        group = self.group_of(user_id, did)
        segment = _segment_of(prof, self.catalog.rules.city_of(prof))
        if not personalised:
            return self._choose(
                did,
                x,
                cs.ids,
                Z,
                t,
                None,
                cs.rows,
                group=group,
                segment=segment,
                policy=self._control_policy(),
                mode=OPT_OUT_MODE,
            )
        return self._choose(did, x, cs.ids, Z, t, key, cs.rows, group=group, segment=segment)

    def _decide_with_rules(
        self,
        did: str,
        user_id: str | None,
        prof: Profile,
        x: FloatArray,
        t: float,
        candidates: Sequence[str] | None,
        personalised: bool = True,
    ) -> Decision:
        """:meth:`decide` with business rules: the rules shrink the candidate set before the
        policy chooses (so the propensity is over what was eligible), the fallback serves when
        nothing is left, and the served bundle is counted (bandit_engine/rules/runtime.py).
        An opted-out user (``personalised`` false) is served the control policy; caps still
        count their shows (they protect the user and are not personalisation)."""
        rr = self.rules
        assert rr is not None
        rkey = rr.user_key(user_id)
        cs, keep, reason = rr.eligible(prof, rkey, t, candidates)
        policy: Policy | None = None
        mode: str | None = None
        if cs is None:
            kind = rr.rules.fallback.kind
            if kind == "error":
                raise ValidationError(
                    f"candidates must keep a bundle for this user now, but {reason} (set a "
                    "fallback in the rules to serve something else)",
                    field="candidates",
                    value=[],
                )
            cs, keep = rr.fallback_set(prof, rkey, t)
            if cs is None or not cs.ids:
                raise NoOfferError(
                    reason
                    if kind == "no_offer"
                    else f"{reason}; the {kind} fallback has nothing to offer either"
                )
            mode = f"fallback:{kind}"
            policy = rr.fallback_policy
        if not personalised and mode is None:
            policy, mode = self._control_policy(), OPT_OUT_MODE
        key = self._user_key(user_id) if personalised else None
        xe, Z = self._live(x, key, cs.rows, cs.features, t)
        group = self.group_of(user_id, did)
        segment = _segment_of(prof, self.catalog.rules.city_of(prof))
        d = self._choose(
            did,
            xe,
            cs.ids,
            Z,
            t,
            key,
            cs.rows,
            group=group,
            segment=segment,
            policy=policy,
            mode=mode,
            mask=keep,
        )
        rr.record(did, rkey, d.bundle_id, t, (d.deal_id, d.course_id))
        return d

    def _choose(
        self,
        decision_id: str,
        x: FloatArray,
        ids: tuple[str, ...],
        Z: FloatArray,
        t: float,
        user_key: bytes | None = None,
        rows: Any = None,
        *,
        group: str | None = None,
        segment: tuple[str, str | None] | None = None,
        policy: Policy | None = None,
        mode: str | None = None,
        mask: NDArray[np.bool_] | None = None,
    ) -> Decision:
        # a rule's fallback policy when given, else the decision's holdout group's policy
        chooser = self.policy_of(group) if policy is None else policy
        scores: FloatArray
        if mask is None:
            choice = chooser.choose(x, ids, Z)
            i, scores, probs = choice.index, choice.scores, choice.probabilities
            z = Z[i]
            row = int(rows[i]) if rows is not None else -1
        else:
            # the rules' mask over the catalog's list: the policy keeps its per-list caches, the
            # decision records the eligible sub-list (the propensity is over it); the chosen
            # bundle's features (a copy, as the gathered sub-list gave) and row are read at its
            # position in the whole list
            choice = chooser.choose(x, ids, Z, mask)
            at = choice.index
            z = Z[at].copy()
            row = int(rows[at]) if rows is not None else -1
            # (plain list and boolean-index operations: np.flatnonzero and np.searchsorted cost
            # more in call overhead than in work on a list of tens)
            keep = mask.tolist()
            i = sum(keep[:at])  # the chosen bundle's place among the kept ones
            ids = tuple(compress(ids, keep))
            scores = choice.scores[mask]
            probs = None if choice.probabilities is None else choice.probabilities[mask]
        bundle_id = ids[i]
        seen: Any = False
        if self._pair_rows and self.behaviour is not None:
            # what the candidate rows were built from, before this decision changes it
            seen = self.behaviour.snapshot(user_key, t)
        self.attribution.add_decision(
            decision_id,
            t,
            _Pending(x, bundle_id, z, choice.propensity, user_key, row, ids, t, seen, group),
        )
        if user_key is not None and self.behaviour is not None and row >= 0:
            self.behaviour.observe_decision(user_key, row, t)
        self.n_decisions += 1
        deal_id, course_id = self.catalog.parts(bundle_id)
        return Decision(
            decision_id=decision_id,
            bundle_id=bundle_id,
            deal_id=deal_id,
            course_id=course_id,
            propensity=float(choice.propensity),
            candidates=ids,
            scores=tuple(scores.tolist()),
            policy_version=self.policy_version,
            timestamp=t,
            probabilities=None if probs is None else tuple(probs.tolist()),
            x=x,
            z=z,
            group=group,
            presence=None if segment is None else segment[0],
            city=None if segment is None else segment[1],
            mode=mode if mode is not None else getattr(chooser, "serving_mode", None),
        )

    def _not_for_grid(self, what: str) -> None:
        if self.grid is not None:
            raise ConfigError.for_field(
                what,
                self.policy.name,
                "is not supported with a grid policy yet (see the Engine docstring)",
            )

    def _grid_cells(self) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
        """Every deal's and course's pairing cell, recomputed when the catalog changes."""
        assert self.grid is not None
        cached = self._cells
        if cached is None or cached[0] != self.catalog.version:
            cached = self._cells = (
                self.catalog.version,
                self.grid.deal_cells(self.catalog.deal_z),
                self.grid.course_cells(self.catalog.course_z),
            )
        return cached[1], cached[2]

    def _choose_grid(
        self,
        decision_id: str,
        prof: Profile,
        x: FloatArray,
        t: float,
        *,
        group: str | None = None,
        segment: tuple[str, str | None] | None = None,
        control: bool = False,
    ) -> Decision:
        gf = self.grid
        assert gf is not None
        g = self.catalog.grid_for(prof, t)
        dcells, ccells = self._grid_cells()
        sides = self._sides.get(id(g))
        if sides is None or sides[0] is not g:
            if len(self._sides) >= 16:
                self._sides.clear()
            sides = (
                g,
                gf.deal_rows(self.catalog.deal_z[g.deal_rows]),
                gf.course_rows(self.catalog.course_z[g.course_rows]),
            )
            self._sides[id(g)] = sides
        D = gf.deal_side(x, sides[1])
        C = gf.course_side(x, sides[2])
        grid = PairGrid(
            g.deal_ids,
            g.course_ids,
            D,
            C,
            dcells[g.deal_rows],
            ccells[g.course_rows],
            gf.n_deal_cells,
            gf.n_course_cells,
            g.allowed,
        )
        # an opted-out user's: the control; else the decision's holdout group's policy (a grid
        # policy: set_holdout checked it)
        policy: GridPolicy = (
            self._control_policy(grid=True) if control else self.policy_of(group)  # type: ignore[assignment]
        )
        choice = policy.choose_grid(grid)
        d, c = choice.deal, choice.course
        deal_id, course_id = g.deal_ids[d], g.course_ids[c]
        if g.bundle_rows is None:
            bundle_id = f"{deal_id}+{course_id}"
        else:
            bundle_id = self.catalog.bundle_at(int(g.bundle_rows[d, c]))
        z = np.concatenate([D[d], C[c], [float(grid.deal_cell[d]), float(grid.course_cell[c])]])
        self.attribution.add_decision(
            decision_id, t, _Pending(x, bundle_id, z, choice.propensity, None, -1, group=group)
        )
        self.n_decisions += 1
        return Decision(
            decision_id=decision_id,
            bundle_id=bundle_id,
            deal_id=deal_id,
            course_id=course_id,
            propensity=float(choice.propensity),
            candidates=(bundle_id,),
            scores=(float(choice.score),),
            policy_version=self.policy_version,
            timestamp=t,
            x=x,
            z=z,
            n_candidates=grid.size,
            group=group,
            presence=None if segment is None else segment[0],
            city=None if segment is None else segment[1],
            mode=OPT_OUT_MODE if control else None,
        )

    def redo_decision(
        self,
        decision_id: str,
        x: FloatArray,
        candidates: Sequence[str],
        *,
        now: float,
        expected_bundle: str | None = None,
        user_key: bytes | None = None,
        group: str | None = None,
        mode: str | None = None,
    ) -> Decision:
        """Re-run a logged decision with its logged context and candidate list.

        ``mode`` :data:`OPT_OUT_MODE` redoes the decision of a user who had opted out of
        personalisation: by the control policy, without behaviour (as the original was).

        With a behaviour block, ``user_key`` is the user's behaviour key (:meth:`behaviour_key`;
        the event log's pseudonym when a :class:`~bandit_engine.service.LoggedEngine` serves the
        engine): the live features are recomputed from the behaviour state and the redone
        decision updates it as the original did.

        Used to rebuild state after a restart (checkpoint + roll-forward of the journal, see
        :mod:`bandit_engine.service`): the policy consumes its
        random generator exactly as the original call did, so the same bundle comes out. If
        ``expected_bundle`` is given and differs, :class:`~bandit_engine.errors.ConflictError` is
        raised (the log and the checkpoint disagree): the decision is not recorded, but the policy's
        generator has advanced, so the caller must stop and rebuild from an earlier checkpoint.
        """
        self._not_for_grid("redo_decision")
        t = _check_time("now", now)
        _check_id("decision_id", decision_id)
        if decision_id in self.attribution:
            raise ConflictError.for_field("decision_id", decision_id, "is already in use")
        xv = np.asarray(x, dtype=np.float64)
        if xv.shape != (self.n_context,):
            raise ValidationError.for_field("x", xv.shape, f"must have shape ({self.n_context},)")
        if self.auto_advance:
            self.advance(t)
        ids = tuple(str(c) for c in candidates)
        Z = self.catalog.features(ids)
        if mode == OPT_OUT_MODE:
            control = self._control_policy()
            if self.behaviour is not None:
                rows = np.asarray([self.catalog.row(b) for b in ids], dtype=np.intp)
                xv, Z = self._live(xv[: self.features.n_features], None, rows, Z, t)
            decision = self._choose(
                decision_id, xv, ids, Z, t, group=group, policy=control, mode=OPT_OUT_MODE
            )
        elif self.behaviour is not None:
            # The behaviour features are recomputed from the state as it is now, which is the
            # state the original call saw when the checkpoint and the journal agree
            rows = np.asarray([self.catalog.row(b) for b in ids], dtype=np.intp)
            xv, Z = self._live(xv[: self.features.n_features], user_key, rows, Z, t)
            decision = self._choose(decision_id, xv, ids, Z, t, user_key, rows, group=group)
        else:
            decision = self._choose(decision_id, xv, ids, Z, t, group=group)
        if expected_bundle is not None and decision.bundle_id != expected_bundle:
            self.attribution.discard(decision_id)
            self.n_decisions -= 1
            raise ConflictError.for_field(
                "bundle_id",
                decision.bundle_id,
                f"differs from the logged choice {expected_bundle!r} for {decision_id!r}; the "
                "checkpoint and the log disagree, so this engine's state is not trustworthy",
            )
        return decision

    # -- outcomes and learning --------------------------------------------------------------
    def report(
        self,
        decision_id: str,
        type: str,
        *,
        value: float = 0.0,
        event_id: str | None = None,
        at: float | None = None,
    ) -> EventStatus:
        """Report a click or an order for a decision.

        Returns ``"accepted"`` (counts toward the decision's reward), ``"duplicate"`` (this
        ``event_id`` was seen before for this decision) or ``"late"`` (outside the attribution
        window: kept, not learned). Unknown decision ids raise
        :class:`~bandit_engine.errors.NotFoundError`.
        """
        _check_id("decision_id", decision_id)
        self.rewards.check_type(type)  # click, order and the spec's declared event types
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise ValidationError.for_field("value", value, "must be a finite number")
        if value < 0:
            raise ValidationError.for_field("value", value, "must be >= 0")
        if event_id is not None:
            _check_id("event_id", event_id)
        t = self.now() if at is None else _check_time("at", at)
        if type not in ("click", "order") and decision_id in self.attribution:
            try:  # a platform's event needs that part in the bundle (pending decisions only)
                bundle_id = self.attribution.pending_payload(decision_id).bundle_id
            except NotFoundError:
                bundle_id = None
            if bundle_id is not None:
                self.rewards.check_part(type, *self.catalog.parts(bundle_id))
        status = self.attribution.add_event(decision_id, type, t, float(value), event_id)
        if status == "accepted" and type == "order" and self.rules is not None:
            self.rules.on_order(decision_id, t)
        if status == "accepted" and self.behaviour is not None:
            p = self.attribution.pending_payload(decision_id)
            if p.user_key is not None and p.bundle_row >= 0:
                self.behaviour.observe_event(p.user_key, p.bundle_row, type, t)
        if self.auto_advance:
            self.advance(t)
        return status

    def advance(self, now: float | None = None) -> list[LearnedReward]:
        """Close every attribution window that ended before ``now`` and learn from it."""
        t = self.now() if now is None else now
        if self.behaviour is not None and t - self._swept_at >= _SWEEP_EVERY:
            # idle users' behaviour expires (Behaviour.ttl_days); checked once an hour
            self.behaviour.sweep(t)
            self._swept_at = t
        if self.attribution.next_deadline() >= t:
            return []
        return self._learn(self.attribution.close_due(t))

    def flush(self, now: float | None = None) -> list[LearnedReward]:
        """Close every pending decision now and learn from it (end of a run, shutdown)."""
        t = self.now() if now is None else now
        return self._learn(self.attribution.close_all(t))

    def _learn(self, closed: Sequence[ClosedDecision[_Pending]]) -> list[LearnedReward]:
        out = []
        grid = self.grid
        for c in closed:
            p = c.payload
            if grid is not None:
                kd = grid.deal_width
                deal_id, course_id = self.catalog.parts(p.bundle_id)
                # a holdout group's decision teaches its own policy only
                self.policy_of(p.group).update_pair(  # type: ignore[attr-defined]
                    deal_id,
                    course_id,
                    p.z[:kd],
                    p.z[kd:-2],
                    int(p.z[-2]),
                    int(p.z[-1]),
                    c.reward,
                    p.propensity,
                )
            else:
                # a holdout group's decision teaches its own policy only
                self.policy_of(p.group).update(p.x, p.bundle_id, p.z, c.reward, p.propensity)
            self.n_learned += 1
            rec = LearnedReward(
                c.decision_id, p.bundle_id, c.reward, c.status, c.n_events, c.closed_at
            )
            out.append(rec)
            if self.on_learned is not None:
                self.on_learned(rec)
        return out

    def decision_vectors(self, decision_id: str) -> tuple[FloatArray, FloatArray]:
        """``(x, z)`` of a pending decision: its context vector and its bundle's feature vector (what
        the policy will learn from; the event log stores both)."""
        pending = self.attribution.pending_payload(decision_id)
        return pending.x, pending.z

    def explain(self, decision_id: str, *, top_k: int = 5) -> Explanation:
        """Why this decision's bundle: its estimated reward and exploration term, the runner-up,
        and the ``top_k`` features that moved its estimate most (:mod:`~bandit_engine.policies.explain`).

        Computed now, from what the engine keeps of a pending decision (its context, its
        candidates, its time) and the model as it is now: if the policy learned since the
        decision, the numbers are today's (``notes`` says so). For pair policies the candidates'
        live-behaviour columns are the user's behaviour now.

        Raises
        ------
        NotFoundError
            The decision is not pending in this engine (its attribution window closed and its
            inputs were dropped, it was never made here, or it came back from a checkpoint
            without its candidate list).
        ConfigError
            The policy cannot explain (Vowpal Wabbit, the baselines) or decides over a grid.
        """
        if decision_id not in self.attribution or self.attribution.status(decision_id) != "pending":
            raise NotFoundError.for_field(
                "decision_id",
                decision_id,
                "is not a pending decision of this engine: its inputs are gone (a decision can "
                "be explained until its attribution window closes)",
            )
        self._not_for_grid("explain")
        pending = self.attribution.pending_payload(decision_id)
        if pending.candidates is None or pending.t is None:
            raise NotFoundError.for_field(
                "decision_id",
                decision_id,
                "was restored from a checkpoint without its candidate list: it cannot be explained",
            )
        ids, t = pending.candidates, pending.t
        catalog = self.catalog
        known = [b for b in ids if b in catalog]
        if len(known) != len(ids):
            raise NotFoundError.for_field(
                "decision_id", decision_id, "names candidates the catalog no longer holds"
            )
        rows = np.array([catalog.row(b) for b in ids], dtype=np.intp)
        x = pending.x  # as the policy saw it (live user features included)
        Z = catalog.features(list(ids))
        if self._pair_rows and self.pairs is not None and self.behaviour is not None:
            # the candidate rows as _live built them, from the behaviour the decision saw
            Z = np.hstack(
                [
                    Z,
                    self._static_pair_rows()[rows],
                    self.pairs.compute_dynamic(x[: self.features.n_features], Z),
                    self.behaviour.pair(pending.user_key, t, rows, snap=pending.seen),
                ]
            )
        x_names = list(self.features.feature_names)
        z_names = list(catalog.feature_names)
        if self.behaviour is not None and self.pairs is not None:
            x_names += self.behaviour.spec.user_feature_names()
            if self._pair_rows:
                z_names += list(self.pairs.names) + self.behaviour.spec.pair_feature_names()
        if len(x_names) != x.shape[0]:
            x_names = [f"x[{j}]" for j in range(x.shape[0])]
        if len(z_names) != Z.shape[1]:
            z_names = [f"z[{j}]" for j in range(Z.shape[1])]
        notes = [f"estimated with the model as it is now ({self.policy_version})"]
        if self._pair_rows and pending.seen is False:
            notes.append("candidate rows use the user's live behaviour as it is now")
        return explain_choice(
            self.policy,
            x,
            ids,
            Z,
            ids.index(pending.bundle_id),
            x_names=x_names,
            z_names=z_names,
            decision_id=decision_id,
            policy_version=self.policy_version,
            top_k=top_k,
            notes=notes,
        )

    def status(self, decision_id: str) -> str:
        """``"pending"``, ``"learned"`` or ``"default"``."""
        return self.attribution.status(decision_id)

    # -- batch scoring ----------------------------------------------------------------------
    def score(
        self,
        tables: Mapping[str, pd.DataFrame],
        *,
        now: float | None = None,
        eligible_only: bool = True,
    ) -> pd.DataFrame:
        """Deterministic scores (estimated mean reward) of every user in ``tables`` for every active
        bundle: a frame indexed by user with one column per bundle. Ineligible (user, bundle) cells
        are NaN when ``eligible_only``.

        Consent (:func:`~bandit_engine.profiles.withhold`) is applied from the users' stored
        records: rows of a platform a user withheld are left out before fusion (so the platform
        reads as absent, as in :meth:`decide`), and a user who opted out of personalisation gets
        a row of NaN (no personalised score exists for them)."""
        self._not_for_grid("score")
        t = self.now() if now is None else _check_time("now", now)
        tables, opted_out = self._consented_tables(tables)
        X = self.features.transform(tables, now=t)
        everything = self.catalog.offered(t)
        b = self.behaviour
        if b is None or (not self._pair_rows and not b.spec.n_user_features):
            scores = self.policy.score_batch(
                X.to_numpy(dtype=np.float64), everything.ids, everything.features
            )
        else:  # live features depend on the user: one candidate matrix per user
            Xa = X.to_numpy(dtype=np.float64)
            scores = np.empty((Xa.shape[0], len(everything.ids)))
            for r, user in enumerate(X.index):
                user_key = self._user_key(str(user))
                xe, Ze = self._live(Xa[r], user_key, everything.rows, everything.features, t)
                scores[r] = self.policy.score_batch(xe[None, :], everything.ids, Ze)[0]
        out = pd.DataFrame(scores, index=X.index, columns=list(everything.ids))
        if eligible_only and self.catalog.rules.user_city is not None:
            platform, field = self.catalog.rules.user_city.split(".")
            table = tables.get(platform)
            if table is not None and field in table.columns:
                key = self.features.key
                cities = table.set_index(key)[field].reindex(out.index)
                for city in cities.dropna().unique():
                    allowed = set(self.catalog.candidates(city=str(city), now=t).ids)
                    cols = [c for c in out.columns if c not in allowed]
                    if cols:
                        out.loc[(cities == city).to_numpy(), cols] = np.nan
        if opted_out:
            out.loc[out.index.isin(list(opted_out))] = np.nan
        return out

    def _consented_tables(
        self, tables: Mapping[str, pd.DataFrame]
    ) -> tuple[dict[str, pd.DataFrame], set[str]]:
        """``tables`` without the rows of platforms their users withheld, and the users who opted
        out of personalisation (from the stored consent records)."""
        key = self.features.key
        out: dict[str, pd.DataFrame] = {}
        opted_out: set[str] = set()
        for platform, table in tables.items():
            if not isinstance(table, pd.DataFrame) or key not in table.columns:
                out[platform] = table  # the feature map names what is wrong with it
                continue
            keep = np.ones(len(table), dtype=bool)
            for i, user in enumerate(table[key].astype(str).tolist()):
                stored = self.profiles.get(user)
                record = stored.get(CONSENT) if stored is not None else None
                if not record:
                    continue
                if record.get(platform) is False:
                    keep[i] = False
                if record.get(PERSONALISATION) is False:
                    opted_out.add(user)
            out[platform] = table if keep.all() else table.loc[keep]
        return out, opted_out

    # -- persistence ------------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        """The whole engine as plain data (JSON values, numpy arrays, bytes)."""
        pending = self.attribution.pending_items()
        d = self.n_context
        p = self.n_arm_features
        out: dict[str, Any] = {
            "library_version": __version__,
            "engine": {
                "model_id": self.model_id,
                "n_decisions": self.n_decisions,
                "n_learned": self.n_learned,
                "n_late": self.attribution.n_late,
                "n_duplicates": self.attribution.n_duplicates,
            },
            "features": self.features.to_dict(),
            "catalog": self.catalog.to_dict(),
            "policy": policy_to_dict(self.policy),
            "rewards": self.rewards.to_dict(),
            "pending": {
                "meta": [
                    {
                        "decision_id": did,
                        "timestamp": ts,
                        "bundle_id": payload.bundle_id,
                        "propensity": payload.propensity,
                        "reward_sum": rsum,
                        "n_events": n_ev,
                        "event_ids": ev_ids,
                        **({} if payload.group is None else {"group": payload.group}),
                    }
                    for did, ts, payload, rsum, n_ev, ev_ids in pending
                ],
                "x": np.asarray([item[2].x for item in pending], dtype=np.float64).reshape(-1, d),
                "z": np.asarray([item[2].z for item in pending], dtype=np.float64).reshape(-1, p),
            },
            "closed": [list(item) for item in self.attribution.closed_items(last=_SAVED_CLOSED)],
        }
        if self.rules is not None:
            out["rules"] = self.rules.rules.to_dict()
            if self.rules.fallback_policy is not None:
                out["rules_fallback_policy"] = policy_to_dict(self.rules.fallback_policy)
        if self._control is not None:  # opt-out decisions were made: the control's generator
            out["consent_control"] = policy_to_dict(self._control)
        if self.holdout is not None:  # absent otherwise: older readers see the file they know
            out["holdout"] = {
                "plan": self.holdout.to_dict(),
                "policies": {n: policy_to_dict(p) for n, p in self.holdout_policies.items()},
            }
        if self.behaviour is not None:
            out["behaviour"] = self.behaviour.to_state()
            out["pending"]["user_keys"] = [
                None if it[2].user_key is None else it[2].user_key.hex() for it in pending
            ]
            out["pending"]["bundle_rows"] = [it[2].bundle_row for it in pending]
        return out

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the whole engine to one file (atomic replace). Profiles are not included."""
        write_state(path, self.to_state(), library_version=__version__)

    @classmethod
    def from_state(
        cls,
        state: Mapping[str, Any],
        *,
        clock: Clock = time.time,
        id_factory: Callable[[], str] | None = None,
        on_learned: Callable[[LearnedReward], None] | None = None,
        auto_advance: bool = True,
    ) -> Engine:
        """Rebuild an engine from :meth:`to_state` output (validated)."""
        try:
            features = FeatureMap.from_dict(state["features"])
            catalog = Catalog.from_dict(state["catalog"])
            policy = policy_from_dict(state["policy"])
            rewards = RewardSpec.from_dict(state["rewards"])
            engine = cls(
                features,
                catalog,
                policy,
                rewards,
                clock=clock,
                id_factory=id_factory,
                on_learned=on_learned,
                auto_advance=auto_advance,
            )
            if "behaviour" in state:
                engine._use_behaviour(BehaviourStore.from_state(state["behaviour"]))
            if "rules" in state:  # files written before rules existed have none
                engine.use_rules(Rules.from_dict(state["rules"]))
                assert engine.rules is not None
                if "rules_fallback_policy" in state:
                    engine.rules.fallback_policy = policy_from_dict(state["rules_fallback_policy"])
            if "consent_control" in state:
                engine._control = policy_from_dict(state["consent_control"])
            if "holdout" in state:
                engine.holdout = HoldoutPlan.from_dict(state["holdout"]["plan"])
                engine.holdout_policies = {
                    str(n): policy_from_dict(d) for n, d in state["holdout"]["policies"].items()
                }
            keys = state["pending"].get("user_keys")
            brows = state["pending"].get("bundle_rows")
            meta = state["engine"]
            engine.model_id = str(meta["model_id"])
            engine.n_decisions = int(meta["n_decisions"])
            engine.n_learned = int(meta["n_learned"])
            engine.attribution.n_late = int(meta["n_late"])
            engine.attribution.n_duplicates = int(meta["n_duplicates"])
            for did, status, ids in state["closed"]:
                engine.attribution.restore_closed(str(did), str(status), [str(i) for i in ids])
            px = np.asarray(state["pending"]["x"], dtype=np.float64)
            pz = np.asarray(state["pending"]["z"], dtype=np.float64)
            for i, item in enumerate(state["pending"]["meta"]):
                payload = _Pending(
                    px[i],
                    str(item["bundle_id"]),
                    pz[i],
                    float(item["propensity"]),
                    bytes.fromhex(keys[i]) if keys and keys[i] is not None else None,
                    int(brows[i]) if brows else -1,
                    group=item.get("group"),
                )
                engine.attribution.restore_pending(
                    str(item["decision_id"]),
                    float(item["timestamp"]),
                    payload,
                    float(item["reward_sum"]),
                    int(item["n_events"]),
                    item["event_ids"],
                )
        except ModelFileError:
            raise
        except (BanditError, KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise ModelFileError(
                f"model state is malformed or incompatible ({type(exc).__name__}: {exc})",
                field="state",
            ) from None
        return engine

    @classmethod
    def load(cls, path: str | os.PathLike[str], **kwargs: Any) -> Engine:
        """Load an engine saved by :meth:`save`. Raises
        :class:`~bandit_engine.errors.ModelFileError` for corrupted, truncated or incompatible files."""
        return cls.from_state(read_state(path), **kwargs)
