"""The simulation runner: real engines against a synthetic world, with common random numbers.

There is no simulation-only code path. Each policy and each control group gets its own
:class:`~bandit_engine.Engine`, built by :func:`bandit_engine.simulation.engines.build_engine` exactly as a user
would build one (the demo profile schema fitted on the world's platform tables, a catalog of the
world's deals, courses and bundles with city and validity eligibility, the policy from
:func:`~bandit_engine.policies.make_policy`, the scenario's :class:`~bandit_engine.rewards.RewardSpec`).
Every round the runner calls ``engine.decide(user_id, now=t)``; reports the click at ``t`` and the
order at ``t`` or after a drawn delay with ``engine.report(..., at=...)``; the engine closes
attribution windows and updates its policy by itself. Time is simulated: every call passes
``now`` / ``at``, and decision ids come from a deterministic ``id_factory``.

Common random numbers (CRN)
---------------------------
Every engine of a seed sees the same users at the same times and the same outcome draws
(:mod:`~bandit_engine.simulation.streams`), so policies are compared paired, on the same luck.

Oracle and regret
-----------------
Each round the oracle's value is the best *expected* reward among the candidates the engine
offered (all engines offer the same candidates; the runner checks it), with the expected reward
``p_click * (click + p_order * (order + value_weight * value))`` from the world's true rates. The
regret of a round is that minus the expected reward of the chosen bundle, so it is >= 0 by
construction. Expected rather than realized rewards are used because the realized difference
adds the click/order coin flips, whose variance dwarfs the regret signal over a few thousand
rounds. A reward cap in the :class:`RewardSpec` is ignored by this expectation (documented
limitation; the shipped scenarios have no cap).

In a grid world (``bundles = "grid"``: every deal x course pair, never listed) the candidates
are the pairs of the deals and courses the engine's unlisted catalog offered the user, and the
oracle is their best expected reward, found exactly by
:func:`~bandit_engine.simulation.grid_response.grid_best` without scoring every pair; without
drift it is computed once per (user, offered grid).

Realized metrics (CTR, orders, revenue, mean reward) count every event of a decision, including
orders that arrived after its attribution window: the business gets that revenue even though the
policy never learns from it.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..engine import Engine
from ..records import Decision
from ..rewards import RewardSpec
from ..service import LoggedEngine, apply_admin
from ..store import EventLog
from .arms import ArmSpec, arm_specs, build_arm_engine, catalog_feature_names
from .scenario import Scenario
from .streams import Draws, Stream, draw_outcomes, seed_streams
from .traces import ArmTrace, SeedTrace
from .world import World

__all__ = [
    "SIMULATION_HMAC_KEY",
    "Progress",
    "run_seed",
    "run_stream",
    "simulation_hmac_key",
    "total_steps",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
BoolArray = NDArray[np.bool_]
Progress = Callable[[int], None]

#: Pseudonym key of the synthetic users in simulated event logs. The users are generated, so the
#: key protects nothing; a fixed key keeps simulated logs reproducible and lets them be reopened.
SIMULATION_HMAC_KEY = b"bandit-engine synthetic users (not a secret)"

_EMPTY: FloatArray = np.empty(0)
_PROGRESS_EVERY = 250
_LOG_BATCH = 2000


def simulation_hmac_key() -> bytes:
    """The HMAC key for event logs of simulated users (:data:`SIMULATION_HMAC_KEY`)."""
    return SIMULATION_HMAC_KEY


def total_steps(scenario: Scenario) -> int:
    """Rounds the progress bar counts for ``scenario`` (runs + replay parts)."""
    n = scenario.run.rounds * scenario.run.seeds
    if scenario.replay is not None:
        rounds = scenario.replay.rounds or scenario.run.rounds
        n += rounds * scenario.run.seeds
    return n


# -- the core loop ---------------------------------------------------------------------------
@dataclass
class _Candidates:
    """What the runner needs about one candidate tuple (cached by object identity)."""

    ids: tuple[str, ...]
    world_idx: IntArray
    pos: dict[str, int]
    new: BoolArray
    any_new: bool


class _CandidateCache:
    def __init__(self, world: World, new_bundles: set[str]) -> None:
        self.world = world
        self.new_bundles = new_bundles
        self._by_id: dict[int, _Candidates] = {}

    def get(self, ids: tuple[str, ...]) -> _Candidates:
        hit = self._by_id.get(id(ids))
        if hit is not None and hit.ids is ids:
            return hit
        if len(self._by_id) > 4096:
            self._by_id.clear()
        new = np.fromiter((b in self.new_bundles for b in ids), dtype=bool, count=len(ids))
        entry = _Candidates(
            ids,
            self.world.bundle_indices(ids),
            {b: i for i, b in enumerate(ids)},
            new,
            bool(new.any()),
        )
        self._by_id[id(ids)] = entry  # the entry keeps ``ids`` alive, so its id is not reused
        return entry


def run_stream(
    world: World,
    stream: Stream,
    draws: Draws,
    engines: Sequence[Engine],
    *,
    rewards: RewardSpec,
    log: EventLog | None = None,
    user_ids: Sequence[str] | None = None,
    wave_rank: IntArray | None = None,
    at_round: dict[int, Callable[[float], set[str]]] | None = None,
    progress: Progress | None = None,
    seed: int = 0,
    labels: Sequence[str] | None = None,
) -> SeedTrace:
    """Drive ``engines`` through ``stream`` in lockstep and record what each did.

    Parameters
    ----------
    world
        The world (true rates, oracle).
    stream, draws
        Arrivals and their common random numbers (same length).
    engines
        One engine per arm; all must offer the same candidates (same catalog content).
    rewards
        The reward spec (for realized and expected rewards; normally every engine's spec).
    log
        Optional event log receiving every decision, event and learned reward.
    user_ids
        Id of every world user (default ``world.user_id``).
    wave_rank
        Per round, the 0-based decision count of a new-user wave member (-1 otherwise).
    at_round
        ``{round: action(t)}``: catalog changes to run before that round's decisions; an action
        returns the ids of the bundles it added.
    progress
        Called with the number of rounds done since its last call.
    """
    n = len(stream)
    labels = list(labels) if labels is not None else [str(i) for i in range(len(engines))]
    ids = user_ids if user_ids is not None else [world.user_id(u) for u in range(world.n_users)]
    traces = [ArmTrace.empty(n) for _ in engines]
    oracle = np.zeros(n)
    best_old = np.full(n, -np.inf)
    best_new = np.full(n, -np.inf)
    n_cand = np.zeros(n, dtype=np.intp)
    new_bundles: set[str] = set()
    cache = _CandidateCache(world, new_bundles)
    w_click, w_order, w_value = rewards.click, rewards.order, rewards.value_weight
    cap = rewards.cap
    pending: list[tuple[float, int, int, str, float]] = []  # delayed orders
    seq = itertools.count()
    times = stream.times.tolist()
    users = stream.users.tolist()
    uc, uo, vf, dl = (a.tolist() for a in (draws.click, draws.order, draws.value, draws.delay))
    actions = at_round or {}
    added_at: int | None = None
    seconds = [0.0] * len(engines)
    world_seconds = 0.0
    perf = time.perf_counter
    wall0 = perf()
    # With a log, every engine runs inside a LoggedEngine: the same decide / report / learn / log
    # path as the HTTP server, on one shared log (engines are told apart by their model ids).
    runs: Sequence[Engine | LoggedEngine] = (
        [LoggedEngine(e, log) for e in engines] if log is not None else engines
    )

    last_event = [times[-1] if times else 0.0]
    grid_world = world.is_grid
    # a grid world's oracle per (user, offered deals): exact and unchanged without drift
    grid_rows: dict[int, tuple[tuple[str, ...], IntArray, IntArray]] = {}
    grid_oracle: dict[tuple[int, int], float] = {}
    static_truth = world.config.drift.kind == "none"

    def grid_best(engine: Engine | LoggedEngine, uid: str, u: int, t: float) -> float:
        core = engine.engine if isinstance(engine, LoggedEngine) else engine
        g = core.catalog.grid_for(core.profile_of(uid), t)
        rows = grid_rows.get(id(g.deal_ids))
        if rows is None or rows[0] is not g.deal_ids:
            if len(grid_rows) > 64:
                grid_rows.clear()
                grid_oracle.clear()
            rows = (g.deal_ids, world.deal_rows(g.deal_ids), world.course_rows(g.course_ids))
            grid_rows[id(g.deal_ids)] = rows
        key = (u, id(g.deal_ids))
        best = grid_oracle.get(key) if static_truth else None
        if best is None:
            best, _ = world.best_pair(u, rows[1], rows[2], t, rewards)
            if static_truth:
                grid_oracle[key] = best
        return best

    def deliver(until: float) -> None:
        while pending and pending[0][0] <= until:
            te, _, a, did, value = heapq.heappop(pending)
            last_event[0] = max(last_event[0], te)
            t0 = perf()
            runs[a].report(did, "order", value=value, at=te)
            seconds[a] += perf() - t0

    def step(i: int) -> None:
        nonlocal added_at, world_seconds
        t = times[i]
        action = actions.get(i)
        if action is not None:
            new_bundles.update(action(t))
            added_at = i
        if pending:
            deliver(t)
        u = users[i]
        uid = ids[u]
        info: _Candidates | None = None
        # p_click, p_order, value and expected reward of each candidate
        pc_a = po_a = v_a = ex_a = _EMPTY
        for a, engine in enumerate(runs):
            t0 = perf()
            d = engine.decide(uid, now=t)
            seconds[a] += perf() - t0
            if grid_world:
                # every engine decides over an unlisted catalog: rates of the chosen pair only
                w0 = perf()
                if a == 0:
                    oracle[i] = best_old[i] = grid_best(engine, uid, u, t)
                    n_cand[i] = d.n_candidates or 0
                elif d.n_candidates != n_cand[i]:
                    raise RuntimeError(
                        f"engine {labels[a]!r} offered {d.n_candidates} pairs, {labels[0]!r} "
                        f"{n_cand[i]} at round {i}: the engines' catalogs diverged"
                    )
                pc1, po1, v1 = world.true_rates(u, world.bundle_indices([d.bundle_id]), t)
                world_seconds += perf() - w0
                pcj, poj, vj = pc1.item(0), po1.item(0), v1.item(0)
                exj = pcj * (w_click + poj * (w_order + w_value * vj))
                record(a, engine, d, i, t, pcj, poj, vj, exj, False)
                continue
            # a grid policy's decision lists only its choice: the candidates are the catalog's
            # eligible set for this user (the same cached tuple every listed engine offers)
            if d.n_candidates is None:
                cands = d.candidates
            else:
                core = engine.engine if isinstance(engine, LoggedEngine) else engine
                cands = core.catalog.eligible_for(core.profile_of(uid), t).ids
            if info is None:
                info = cache.get(cands)
                w0 = perf()
                pc_a, po_a, v_a = world.true_rates(u, info.world_idx, t)
                ex_a = pc_a * (w_click + po_a * (w_order + w_value * v_a))
                world_seconds += perf() - w0
                best = float(ex_a.max())
                oracle[i] = best
                n_cand[i] = len(cands)
                if info.any_new:
                    best_new[i] = float(ex_a[info.new].max())
                    if not info.new.all():
                        best_old[i] = float(ex_a[~info.new].max())
                else:
                    best_old[i] = best
            elif cands is not info.ids and cands != info.ids:
                raise RuntimeError(
                    f"engine {labels[a]!r} offered different candidates than {labels[0]!r} at "
                    f"round {i}: the engines' catalogs diverged"
                )
            j = info.pos[d.bundle_id]
            # .item() per chosen bundle: cheaper than converting every candidate's rates
            pcj, poj, vj, exj = pc_a.item(j), po_a.item(j), v_a.item(j), ex_a.item(j)
            record(a, engine, d, i, t, pcj, poj, vj, exj, bool(info.any_new and info.new[j]))

    def record(
        a: int,
        engine: Engine | LoggedEngine,
        d: Decision,
        i: int,
        t: float,
        pcj: float,
        poj: float,
        vj: float,
        exj: float,
        chose_new: bool,
    ) -> None:
        """Record arm ``a``'s decision of round ``i`` and report its drawn outcomes."""
        tr = traces[a]
        tr.expected[i] = exj
        tr.bundle[i] = d.bundle_id
        if chose_new:
            tr.chose_new[i] = True
        if uc[i] >= pcj:
            return
        tr.click[i] = True
        t0 = perf()
        engine.report(d.decision_id, "click", at=t)
        seconds[a] += perf() - t0
        r = w_click
        if uo[i] < poj:
            value = vj * vf[i]
            tr.order[i] = True
            tr.value[i] = value
            r += w_order + w_value * value
            delay = dl[i]
            if delay > 0.0:
                heapq.heappush(pending, (t + delay, next(seq), a, d.decision_id, value))
            else:
                t0 = perf()
                engine.report(d.decision_id, "order", value=value, at=t)
                seconds[a] += perf() - t0
        tr.reward[i] = r if cap is None else min(r, cap)

    def batch() -> AbstractContextManager[Any]:
        return log.transaction() if log is not None else nullcontext()

    # Log writes are grouped into one transaction per block of rounds (one commit each).
    block = _LOG_BATCH if log is not None else max(n, 1)
    for start in range(0, n, block):
        with batch():
            for i in range(start, min(n, start + block)):
                step(i)
                if progress is not None and (i + 1) % _PROGRESS_EVERY == 0:
                    progress(_PROGRESS_EVERY)
    if progress is not None and n % _PROGRESS_EVERY:
        progress(n % _PROGRESS_EVERY)
    # The run is over: deliver the remaining delayed orders and let the last windows close, as
    # they would in production (learning after the end does not change any metric).
    with batch():
        if pending:
            deliver(math.inf)
        end = last_event[0] + rewards.window + 1.0
        for a, engine in enumerate(runs):
            t0 = perf()
            engine.flush(now=end)
            seconds[a] += perf() - t0
    for a, engine in enumerate(engines):
        traces[a].n_late = int(engine.attribution.n_late)
        traces[a].n_learned = int(engine.n_learned)
        traces[a].seconds = seconds[a]
    return SeedTrace(
        seed=seed,
        times=stream.times,
        users=stream.users,
        oracle=oracle,
        best_old=best_old,
        best_new=best_new,
        n_candidates=n_cand,
        wave_rank=wave_rank if wave_rank is not None else np.full(n, -1, dtype=np.intp),
        arms=dict(zip(labels, traces, strict=True)),
        added_at=added_at,
        world_seconds=world_seconds,
        wall_seconds=perf() - wall0,
        new_bundles=tuple(sorted(new_bundles)),
    )


# -- one seed of a scenario ------------------------------------------------------------------
def _wave(
    world: World, stream: Stream, scenario: Scenario, rng: np.random.Generator
) -> tuple[Stream, IntArray]:
    """Put the new-user wave into the stream; return it and each round's wave rank."""
    n = len(stream)
    rank = np.full(n, -1, dtype=np.intp)
    wave = scenario.new_users
    if wave is None:
        return stream, rank
    members = world.add_new_users(wave.users, rng, city=wave.city)
    start = int(wave.at * n)
    mask = (np.arange(n) >= start) & (rng.random(n) < wave.share)
    m = int(mask.sum())
    users = stream.users.copy()
    if m:
        _, picks = world.arrivals(m, rng, users=members)
        users[mask] = picks
        seen: dict[int, int] = {}
        for i in np.flatnonzero(mask).tolist():
            u = int(users[i])
            rank[i] = seen.get(u, 0)
            seen[u] = rank[i] + 1
    return Stream(stream.times, users), rank


def _catalog_action(
    world: World,
    engines: Sequence[Engine],
    scenario: Scenario,
    rng: np.random.Generator,
    log: EventLog | None,
) -> Callable[[float], set[str]]:
    """The mid-run catalog change of ``[new_bundles]``: the world grows and every engine's catalog
    gets the same deals, courses and bundles through the catalog's public API."""
    spec = scenario.new_bundles
    assert spec is not None

    def apply(t: float) -> set[str]:
        additions = []
        if spec.deals:
            additions.append(world.add_deals(spec.deals, rng, t=t))
        if spec.courses:
            additions.append(world.add_courses(spec.courses, rng))
        added: set[str] = set()
        for add in additions:
            bundles = add.bundles[["deal_id", "course_id", "bundle_id"]]
            ops = []
            if len(add.deals):
                ops.append(("add_deals", {"deals": _records(add.deals)}))
            if len(add.courses):
                ops.append(("add_courses", {"courses": _records(add.courses)}))
            ops.append(("add_bundles", {"bundles": _records(bundles)}))
            for op, payload in ops:
                # the one way a catalog change is applied (live, in the server, rolling forward);
                # journaled once for all engines, which share the log
                for engine in engines:
                    apply_admin(engine, op, payload)
                if log is not None:
                    log.log_admin(op, payload, ts=t)
            added.update(str(b) for b in bundles["bundle_id"])
        return added

    return apply


def _records(frame: Any) -> list[dict[str, Any]]:
    out = []
    for row in frame.to_dict(orient="records"):
        rec = {}
        for k, val in row.items():
            if isinstance(val, np.generic):
                val = val.item()
            rec[str(k)] = val
        out.append(rec)
    return out


def run_seed(
    scenario: Scenario,
    seed: int,
    *,
    arms: Sequence[ArmSpec] | None = None,
    log: EventLog | None = None,
    progress: Progress | None = None,
) -> SeedTrace:
    """Run every policy and control of ``scenario`` for one seed (one world, one stream)."""
    arms = list(arms) if arms is not None else arm_specs(scenario.policies, scenario.controls)
    rs = seed_streams(seed, scenario.run.world_seed)
    world = World.generate(scenario.world, seed=rs.world_seed)
    n = scenario.run.rounds
    times, users = world.arrivals(n, rs.stream)
    stream = Stream(times, users)
    draws = draw_outcomes(n, rs.outcomes, scenario.orders)
    event_rng, catalog_rng = rs.events.spawn(2)
    stream, rank = _wave(world, stream, scenario, event_rng)
    names = catalog_feature_names(world)
    engines = []
    for a, arm in enumerate(arms):
        engines.append(
            build_arm_engine(
                world,
                arm.spec,
                rewards=scenario.rewards,
                policy_seed=rs.policy_seed,
                model_id=f"sim-{scenario.name}-s{seed}-{a}",
                id_prefix=f"s{seed}a{a}",
                feature_names=names,
            )
        )
    actions: dict[int, Callable[[float], set[str]]] = {}
    if scenario.new_bundles is not None:
        actions[int(scenario.new_bundles.at * n)] = _catalog_action(
            world, engines, scenario, catalog_rng, log
        )
    user_ids = [world.user_id(u) for u in range(world.n_users)]
    try:
        trace = run_stream(
            world,
            stream,
            draws,
            engines,
            rewards=scenario.rewards,
            log=log,
            user_ids=user_ids,
            wave_rank=rank,
            at_round=actions,
            progress=progress,
            seed=seed,
            labels=[a.label for a in arms],
        )
    finally:
        for engine in engines:
            close = getattr(engine.policy, "close", None)
            if callable(close):
                close()
    # the segment report reads what a live log would hold: presence ("new" users are on
    # neither platform) and the city a group-buying profile reveals
    truth = world.truth
    seg = truth["segment"].replace({"new": "neither"}).tolist()
    trace.user_presence = tuple(seg)
    trace.user_city = tuple(
        c if s in ("both", "groupbuy") else "" for s, c in zip(seg, truth["city"], strict=True)
    )
    drift = scenario.world.drift
    if drift.kind != "none":
        t_drift = scenario.world.start_time + drift.at_days * 86400.0
        k = int(np.searchsorted(trace.times, t_drift))
        trace.drift_at = k if k < n else None
    return trace
