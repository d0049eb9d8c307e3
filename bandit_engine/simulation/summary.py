"""The numbers of a simulation: metrics, uplift, cold-start and drift summaries, curves, timings.

:func:`summarize` turns a :class:`~bandit_engine.simulation.traces.SimulationResult` into plain
data (the content of ``summary.json``); :func:`curves` gives the cumulative curves behind
``curves.csv`` and the plots; :func:`timings` the speed of the run. Writing them is
:mod:`~bandit_engine.simulation.outputs`, printing them :mod:`~bandit_engine.simulation.render`.

Metrics (per policy, averaged over seeds)
-----------------------------------------
``mean_reward``: realized reward per decision (the scenario's reward weights over every click and
order, late ones included). ``ctr``: clicks per decision. ``order_rate``: orders per decision.
``revenue_per_decision``: order value per decision (CNY). ``expected_reward``: the true expected
reward of the chosen bundles. ``regret``: cumulative regret over the run (oracle expected reward
minus chosen expected reward, summed over rounds; see :mod:`~bandit_engine.simulation.runner`).
``uplift`` and ``realized_uplift``: paired intervals over each control
(:mod:`~bandit_engine.simulation.uplift`).

Determinism
-----------
``summary.json`` holds no timestamps and no timings (those go to ``timings.json``), its keys come
in a fixed order and every float is rounded to 6 significant digits, so the same scenario and
seed give a byte-identical file.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .arms import ArmSpec
from .new_user_curve import new_user_curve
from .traces import SeedTrace, SimulationResult
from .uplift import mean_interval, paired_uplift

__all__ = ["curves", "summarize", "timings"]

FloatArray = NDArray[np.float64]


def _r(x: Any) -> Any:
    """Round a float to 6 significant digits for stable JSON; NaN / inf become ``None``."""
    if x is None:
        return None
    if isinstance(x, bool | int | np.integer) and not isinstance(x, np.bool_):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    v = float(x)
    if not math.isfinite(v):
        return None
    return float(f"{v:.6g}")


# -- the summary ------------------------------------------------------------------------------
def _seed_metrics(trace: SeedTrace, label: str) -> dict[str, float]:
    tr = trace.arms[label]
    n = tr.reward.shape[0]
    regret = trace.oracle - tr.expected
    return {
        "mean_reward": float(tr.reward.mean()),
        "ctr": float(tr.click.mean()),
        "order_rate": float(tr.order.mean()),
        "revenue_per_decision": float(tr.value.sum() / n),
        "expected_reward": float(tr.expected.mean()),
        "oracle_reward": float(trace.oracle.mean()),
        "regret": float(regret.sum()),
        "regret_per_decision": float(regret.mean()),
        "late_events": float(tr.n_late),
        # only orders can be late (clicks are reported with the decision)
        "late_order_share": float(tr.n_late / n_orders)
        if (n_orders := int(tr.order.sum()))
        else 0.0,
    }


def _policy_record(
    result: SimulationResult, arm: ArmSpec, controls: list[ArmSpec]
) -> dict[str, Any]:
    seeds = result.seeds
    per_seed = [_seed_metrics(s, arm.label) for s in seeds]
    rec: dict[str, Any] = {
        "policy": arm.label,
        "name": arm.spec.name,
        "role": arm.role,
        "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in arm.spec.params},
        "rounds": int(seeds[0].oracle.shape[0]),
        "seeds": len(seeds),
    }
    for key in per_seed[0]:
        rec[key] = float(np.mean([m[key] for m in per_seed]))
    _, lo, hi = mean_interval([s.arms[arm.label].reward for s in seeds])
    rec["mean_reward_ci_low"], rec["mean_reward_ci_high"] = lo, hi
    others = [c for c in controls if c.label != arm.label]
    rec["uplift"] = {
        c.label: paired_uplift(
            [s.arms[arm.label].expected for s in seeds], [s.arms[c.label].expected for s in seeds]
        )
        for c in others
    }
    rec["realized_uplift"] = {
        c.label: paired_uplift(
            [s.arms[arm.label].reward for s in seeds], [s.arms[c.label].reward for s in seeds]
        )
        for c in others
    }
    return rec


def _blocks(values: FloatArray, block: int) -> FloatArray:
    n = values.shape[0] // block
    if n == 0:
        return np.empty(0)
    out: FloatArray = values[: n * block].reshape(n, block).mean(axis=1)
    return out


def _new_users(result: SimulationResult, controls: list[ArmSpec]) -> dict[str, Any] | None:
    wave = result.scenario.new_users
    if wave is None:
        return None
    k = wave.first_k
    out: dict[str, Any] = {
        "first_k": k,
        "users": wave.users,
        "share": wave.share,
        "starts_at_round": int(wave.at * result.scenario.run.rounds),
    }
    masks = [(s.wave_rank >= 0) & (s.wave_rank < k) for s in result.seeds]
    if not any(m.any() for m in masks):
        out["note"] = "no wave member arrived during the run"
        return out
    starts = [int(wave.at * s.oracle.shape[0]) for s in result.seeds]
    established = [
        (np.arange(s.oracle.shape[0]) >= st) & (s.wave_rank < 0)
        for s, st in zip(result.seeds, starts, strict=True)
    ]
    oracle = float(
        np.mean([s.oracle[m].mean() for s, m in zip(result.seeds, masks, strict=True) if m.any()])
    )
    out["oracle_first_k_reward"] = oracle
    out["decisions_scored"] = int(sum(int(m.sum()) for m in masks))
    policies: dict[str, Any] = {}
    for arm in result.arms:
        exp = [s.arms[arm.label].expected for s in result.seeds]
        vals = [e[m] for e, m in zip(exp, masks, strict=True) if m.any()]
        first_k = float(np.mean([v.mean() for v in vals]))
        by_decision = []
        for j in range(k):
            per = [
                e[s.wave_rank == j].mean()
                for e, s in zip(exp, result.seeds, strict=True)
                if (s.wave_rank == j).any()
            ]
            by_decision.append(float(np.mean(per)) if per else math.nan)
        est = [e[m].mean() for e, m in zip(exp, established, strict=True) if m.any()]
        rec: dict[str, Any] = {
            "role": arm.role,
            "first_k_reward": first_k,
            "share_of_oracle": first_k / oracle if oracle > 0 else math.nan,
            "by_decision": by_decision,
            "established_users_reward": float(np.mean(est)) if est else math.nan,
            "vs": {},
        }
        for c in controls:
            if c.label == arm.label:
                continue
            cexp = [s.arms[c.label].expected for s in result.seeds]
            pairs = [(e[m], ce[m]) for e, ce, m in zip(exp, cexp, masks, strict=True) if m.any()]
            rec["vs"][c.label] = paired_uplift([p[0] for p in pairs], [p[1] for p in pairs])
        policies[arm.label] = rec
    out["policies"] = policies
    # share of the oracle by decision index 1..20, with intervals (new_user_curve.py)
    out["curve"] = new_user_curve(
        result.seeds, [a.label for a in result.arms], [c.label for c in controls]
    )
    return out


#: Decisions after new bundles arrive over which their early share is reported (issue 9 judges a
#: policy's cold start for bundles by its share there against the fair share there).
EARLY_ROUNDS = 2_000


def _new_bundles(result: SimulationResult) -> dict[str, Any] | None:
    spec = result.scenario.new_bundles
    if spec is None:
        return None
    block = result.scenario.report.block
    tol = result.scenario.report.fair_share_tolerance
    seeds = [s for s in result.seeds if s.added_at is not None]
    out: dict[str, Any] = {
        "deals": spec.deals,
        "courses": spec.courses,
        "added_at_round": seeds[0].added_at if seeds else None,
        "block": block,
        "tolerance": tol,
    }
    if not seeds:
        out["note"] = "the catalog change happened after the last round"
        return out
    out["new_bundles"] = len(seeds[0].new_bundles)
    fair = []
    for s in seeds:
        a = int(s.added_at or 0)
        fair.append(float((s.best_new[a:] > s.best_old[a:]).mean()))
    out["fair_share"] = float(np.mean(fair))
    # the first EARLY_ROUNDS after arrival: how a policy treats bundles it knows nothing about
    early = []
    for s in seeds:
        window = slice(int(s.added_at or 0), int(s.added_at or 0) + EARLY_ROUNDS)
        early.append(float((s.best_new[window] > s.best_old[window]).mean()))
    out["early_rounds"] = EARLY_ROUNDS
    out["early_fair_share"] = float(np.mean(early))
    out["offered_share"] = float(
        np.mean([np.isfinite(s.best_new[int(s.added_at or 0) :]).mean() for s in seeds])
    )
    policies: dict[str, Any] = {}
    for arm in result.arms:
        shares, reach, hours, explore, missed, post_regret, blocks_all = [], [], [], [], [], [], []
        early_shares = []
        for s, f in zip(seeds, fair, strict=True):
            a = int(s.added_at or 0)
            tr = s.arms[arm.label]
            chose = tr.chose_new[a:]
            shares.append(float(chose.mean()))
            early_shares.append(float(chose[:EARLY_ROUNDS].mean()))
            blocks = _blocks(chose.astype(np.float64), block)
            blocks_all.append(blocks)
            hit = np.flatnonzero(blocks >= tol * f) if f > 0 else np.array([0])
            if hit.shape[0]:
                r = int((hit[0] + 1) * block) if f > 0 else 0
                reach.append(r)
                end = min(a + r, s.times.shape[0] - 1)
                hours.append(float((s.times[end] - s.times[a]) / 3600.0))
            exp = tr.expected[a:]
            bo, bn = s.best_old[a:], s.best_new[a:]
            with np.errstate(invalid="ignore"):
                ex_cost = np.where(chose & np.isfinite(bo), np.maximum(bo - exp, 0.0), 0.0)
                miss = np.where(~chose & np.isfinite(bn), np.maximum(bn - bo, 0.0), 0.0)
            explore.append(float(ex_cost.sum()))
            missed.append(float(miss.sum()))
            post_regret.append(float((s.oracle[a:] - exp).sum()))
        n_blocks = min(b.shape[0] for b in blocks_all)
        policies[arm.label] = {
            "role": arm.role,
            "share": float(np.mean(shares)),
            "early_share": float(np.mean(early_shares)),
            "rounds_to_fair_share": float(np.mean(reach)) if len(reach) == len(seeds) else None,
            "hours_to_fair_share": float(np.mean(hours)) if len(hours) == len(seeds) else None,
            "seeds_reaching_fair_share": len(reach),
            "exploration_cost": float(np.mean(explore)),
            "missed_gain": float(np.mean(missed)),
            "regret_from_new_bundles": float(np.mean(explore) + np.mean(missed)),
            "regret_after_addition": float(np.mean(post_regret)),
            "share_by_block": np.mean([b[:n_blocks] for b in blocks_all], axis=0).tolist(),
        }
    out["policies"] = policies
    return out


def _drift(result: SimulationResult) -> dict[str, Any] | None:
    drift = result.scenario.world.drift
    if drift.kind == "none":
        return None
    block = result.scenario.report.block
    level = result.scenario.report.recovery
    rounds = int(result.seeds[0].oracle.shape[0])
    # a seed is measured when a full block precedes the drift and a full block follows it
    started = [s for s in result.seeds if s.drift_at is not None]
    seeds = [s for s in started if s.drift_at is not None and block <= s.drift_at <= rounds - block]
    out: dict[str, Any] = {
        "kind": drift.kind,
        "at_days": drift.at_days,
        "strength": drift.strength,
        "block": block,
        "recovery_level": level,
    }
    if not seeds:
        out["note"] = _drift_note(started, rounds, block, drift.at_days)
        return out
    out["drift_at_round"] = int(np.mean([s.drift_at for s in seeds]))
    policies: dict[str, Any] = {}
    for arm in result.arms:
        pre_l, dip_l, post_l, rec_l, curves_l = [], [], [], [], []
        for s in seeds:
            d = int(s.drift_at or 0)
            tr = s.arms[arm.label]
            w = min(d, 4 * block)
            pre = float(tr.expected[d - w : d].sum() / s.oracle[d - w : d].sum())
            e_b = _blocks(tr.expected[d:], block)
            o_b = _blocks(s.oracle[d:], block)
            ratio = e_b / o_b
            curves_l.append(ratio)
            pre_l.append(pre)
            if ratio.shape[0]:
                dip_l.append(float(ratio.min()))
                tail = max(1, ratio.shape[0] // 4)
                post_l.append(float(e_b[-tail:].sum() / o_b[-tail:].sum()))
                hit = np.flatnonzero(ratio >= level * pre)
                if hit.shape[0]:
                    rec_l.append(int((hit[0] + 1) * block))
        n_b = min(c.shape[0] for c in curves_l)
        policies[arm.label] = {
            "role": arm.role,
            "pre_drift_share_of_oracle": float(np.mean(pre_l)),
            "lowest_share_after_drift": float(np.mean(dip_l)) if dip_l else None,
            "final_share_of_oracle": float(np.mean(post_l)) if post_l else None,
            "rounds_to_recover": float(np.mean(rec_l)) if len(rec_l) == len(seeds) else None,
            "seeds_recovered": len(rec_l),
            "share_of_oracle_by_block": np.mean([c[:n_b] for c in curves_l], axis=0).tolist(),
        }
    out["policies"] = policies
    return out


def _drift_note(started: list[Any], rounds: int, block: int, at_days: float) -> str:
    """Why a run measures no recovery after the drift, in a sentence."""
    if not started:
        return (
            f"the run ({rounds:,} rounds) ends before the drift starts (day {at_days:g}); run "
            "more rounds to measure the recovery"
        )
    first = min(int(s.drift_at) for s in started)
    if first < block:
        return (
            f"the drift starts at round {first:,}, before one report block ({block:,} rounds) "
            "has passed, so there is no level before it to compare with"
        )
    return (
        f"the run ends {rounds - first:,} rounds after the drift starts (round {first:,}), less "
        f"than one report block ({block:,} rounds), so nothing after it is measured; run at "
        f"least {first + block:,} rounds"
    )


def _winner(policies: list[dict[str, Any]]) -> str | None:
    cands = [p for p in policies if p["role"] == "policy"] or policies
    if not cands:
        return None
    return str(max(cands, key=lambda p: p["expected_reward"])["policy"])


def summarize(result: SimulationResult) -> dict[str, Any]:
    """The content of ``summary.json`` (plain data, floats rounded; see the module docstring)."""
    controls = [a for a in result.arms if a.role == "control"]
    policies = [_policy_record(result, arm, controls) for arm in result.arms]
    seeds = len(result.seeds)
    summary: dict[str, Any] = {
        "scenario": result.scenario.name,
        "description": result.scenario.description,
        "seeds": [s.seed for s in result.seeds],
        "rounds": int(result.seeds[0].oracle.shape[0]),
        "interval": (
            f"95% Student t-interval over {seeds} seeds, paired per seed"
            if seeds >= 2
            else "95% normal interval over per-round paired differences (1 seed; optimistic)"
        ),
        "reward": result.scenario.rewards.to_dict(),
        "oracle_reward": float(np.mean([s.oracle.mean() for s in result.seeds])),
        "winner": _winner(policies),
        "policies": policies,
    }
    cold: dict[str, Any] = {}
    nu = _new_users(result, controls)
    if nu is not None:
        cold["new_users"] = nu
    nb = _new_bundles(result)
    if nb is not None:
        cold["new_bundles"] = nb
    if cold:
        summary["cold_start"] = cold
    dr = _drift(result)
    if dr is not None:
        summary["drift"] = dr
    if result.replay is not None:
        summary["replay"] = result.replay.to_dict()
    summary["settings"] = result.scenario.to_dict()
    out: dict[str, Any] = _clean(summary)
    return out


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, str) or obj is None:
        return obj
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | float | np.integer | np.floating):
        return _r(obj)
    return str(obj)


def timings(result: SimulationResult) -> dict[str, Any]:
    """Speed of the run (not deterministic, so kept out of ``summary.json``): rounds per second of
    each engine (time inside its ``decide`` / ``report`` calls), of the world's true-rate
    computations and of the whole run."""
    rounds = sum(s.oracle.shape[0] for s in result.seeds)
    wall = sum(s.wall_seconds for s in result.seeds)
    out: dict[str, Any] = {
        "rounds": int(rounds),
        "wall_seconds": round(wall, 3),
        "rounds_per_second": round(rounds / wall, 1) if wall > 0 else None,
        "world_seconds": round(sum(s.world_seconds for s in result.seeds), 3),
        "engines": {},
    }
    for arm in result.arms:
        sec = sum(s.arms[arm.label].seconds for s in result.seeds)
        out["engines"][arm.label] = {
            "seconds": round(sec, 3),
            "decisions_per_second": round(rounds / sec, 1) if sec > 0 else None,
        }
    return out


# -- curves -----------------------------------------------------------------------------------
def curves(result: SimulationResult) -> dict[str, dict[str, FloatArray]]:
    """Per policy, cumulative curves averaged over seeds at ``report.curve_points`` rounds."""
    n = min(s.oracle.shape[0] for s in result.seeds)
    points = min(n, result.scenario.report.curve_points)
    rounds = np.unique(np.linspace(1, n, points).round().astype(np.int64))
    idx = rounds - 1
    oracle = np.mean([np.cumsum(s.oracle[:n])[idx] for s in result.seeds], axis=0)
    out: dict[str, dict[str, FloatArray]] = {}
    for arm in result.arms:
        rew = np.mean([np.cumsum(s.arms[arm.label].reward[:n])[idx] for s in result.seeds], axis=0)
        exp = np.mean(
            [np.cumsum(s.arms[arm.label].expected[:n])[idx] for s in result.seeds], axis=0
        )
        out[arm.label] = {
            "round": rounds.astype(np.float64),
            "cumulative_reward": rew,
            "cumulative_expected_reward": exp,
            "cumulative_oracle_reward": oracle,
            "cumulative_regret": oracle - exp,
            "average_reward": rew / rounds,
        }
    return out
