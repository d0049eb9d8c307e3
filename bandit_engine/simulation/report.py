"""The simulation report: metrics, uplift intervals, cold-start and drift summaries, outputs.

:func:`summarize` turns a :class:`~bandit_engine.simulation.runner.SimulationResult` into plain
data (the content of ``summary.json``); :func:`render` prints the table a newcomer reads;
:func:`write_outputs` writes ``summary.json``, ``curves.csv``, ``timings.json`` and the PNG plots
into a directory; :func:`atomic_dir` and :func:`atomic_log` make sure a failed run leaves no
half-written output.

Metrics (per policy, averaged over seeds)
-----------------------------------------
``mean_reward``: realized reward per decision (the scenario's reward weights over every click and
order, late ones included). ``ctr``: clicks per decision. ``order_rate``: orders per decision.
``revenue_per_decision``: order value per decision (CNY). ``expected_reward``: the true expected
reward of the chosen bundles. ``regret``: cumulative regret over the run (oracle expected reward
minus chosen expected reward, summed over rounds; see :mod:`~bandit_engine.simulation.runner`).

Uplift intervals
----------------
``uplift`` is the relative difference in *expected* reward per decision of a policy over a
control (the true expected reward of the bundles each one chose), ``difference`` the absolute one.
The simulator knows the truth, so it can compare what each policy earns on average without the
click and order coin flips, whose noise would otherwise dominate the difference over a few
thousand decisions. ``realized_uplift`` is the same comparison on the realized rewards (what an
A/B test would see). Both are paired: every policy saw the same users and the same random
outcomes.

* With two or more seeds: per seed ``d_s = mean_A,s - mean_C,s`` and ``u_s = d_s / mean_C,s``; the
  interval is Student's t over seeds (``t_{0.975, S-1} * sd / sqrt(S)``). Seeds are independent
  worlds and streams, so this interval also covers world-to-world variation.
* With one seed: a normal interval over the per-round paired differences ``r_A,t - r_C,t``, the
  relative one by the delta method for a ratio of means. It treats rounds as independent, which
  ignores the autocorrelation learning creates: it is narrower than it should be. Use
  ``--seeds 2`` or more for a decision.

``summary.json`` records which interval was used (``interval``).

Determinism
-----------
``summary.json`` holds no timestamps and no timings (those go to ``timings.json``), its keys come
in a fixed order and every float is rounded to 6 significant digits, so the same scenario and
seed give a byte-identical file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from rich.console import Console
from rich.table import Table
from scipy import stats

from ..errors import ConflictError, NotFoundError
from ..store import EventLog
from .runner import SIMULATION_HMAC_KEY, ArmSpec, SeedTrace, SimulationResult

__all__ = [
    "OUTPUT_FILES",
    "atomic_dir",
    "atomic_log",
    "check_output_paths",
    "curves",
    "headline",
    "render",
    "summarize",
    "timings",
    "write_outputs",
]

FloatArray = NDArray[np.float64]

#: Files ``write_outputs`` may create (an existing ``--out`` directory holding only these is
#: replaced; any other content makes the run refuse to touch it).
OUTPUT_FILES = (
    "summary.json",
    "curves.csv",
    "timings.json",
    "reward_regret.png",
    "uplift.png",
    "cold_start.png",
    "drift.png",
)
_LEVEL = 0.95


# -- numbers --------------------------------------------------------------------------------
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


def _t_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """``(mean, low, high)``: Student's t interval of a mean over seeds."""
    v = np.asarray(values, dtype=np.float64)
    m = float(v.mean())
    if v.shape[0] < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + _LEVEL / 2, v.shape[0] - 1)) * float(v.std(ddof=1))
    half /= math.sqrt(v.shape[0])
    return m, m - half, m + half


def _z() -> float:
    return float(stats.norm.ppf(0.5 + _LEVEL / 2))


def _mean_interval(per_seed: Sequence[FloatArray]) -> tuple[float, float, float]:
    """Mean of per-round values with its 95% interval (t over seeds, or normal over rounds)."""
    if len(per_seed) >= 2:
        return _t_interval([float(a.mean()) for a in per_seed])
    a = per_seed[0]
    m = float(a.mean())
    if a.shape[0] < 2:
        return m, math.nan, math.nan
    half = _z() * float(a.std(ddof=1)) / math.sqrt(a.shape[0])
    return m, m - half, m + half


def paired_uplift(a: Sequence[FloatArray], c: Sequence[FloatArray]) -> dict[str, Any]:
    """Uplift of ``a`` over ``c`` from paired per-round values, one array per seed (module
    docstring: t over seeds when there are two or more, else per-round normal)."""
    if len(a) >= 2:
        ma = np.array([float(x.mean()) for x in a])
        mc = np.array([float(x.mean()) for x in c])
        diff, dlo, dhi = _t_interval(ma - mc)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel_s = (ma - mc) / mc
        rel, rlo, rhi = _t_interval(rel_s) if np.all(np.isfinite(rel_s)) else (math.nan,) * 3
        method = f"t-interval over {len(a)} seeds"
    else:
        x, y = a[0], c[0]
        d = x - y
        n = d.shape[0]
        diff = float(d.mean())
        mc_ = float(y.mean())
        z = _z()
        if n >= 2:
            half = z * float(d.std(ddof=1)) / math.sqrt(n)
            dlo, dhi = diff - half, diff + half
        else:
            dlo = dhi = math.nan
        if mc_ > 0 and n >= 2:
            rel = diff / mc_
            # delta method for mean(d) / mean(c): influence terms (d_t - rel * c_t) / mean(c)
            infl = (d - rel * y) / mc_
            half = z * float(infl.std(ddof=1)) / math.sqrt(n)
            rlo, rhi = rel - half, rel + half
        else:
            rel = rlo = rhi = math.nan
        method = "paired per-round normal interval (1 seed; ignores autocorrelation)"
    # The verdict follows the interval the reader sees (the relative one), falling back to the
    # absolute one when the relative one is undefined (a control with zero reward).
    lo, hi = (rlo, rhi) if math.isfinite(rlo) and math.isfinite(rhi) else (dlo, dhi)
    significant = bool(math.isfinite(lo) and math.isfinite(hi) and (lo > 0 or hi < 0))
    return {
        "uplift": rel,
        "ci_low": rlo,
        "ci_high": rhi,
        "difference": diff,
        "difference_ci_low": dlo,
        "difference_ci_high": dhi,
        "significant": significant,
        "interval": method,
    }


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
    _, lo, hi = _mean_interval([s.arms[arm.label].reward for s in seeds])
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
    return out


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
    out["offered_share"] = float(
        np.mean([np.isfinite(s.best_new[int(s.added_at or 0) :]).mean() for s in seeds])
    )
    policies: dict[str, Any] = {}
    for arm in result.arms:
        shares, reach, hours, explore, missed, post_regret, blocks_all = [], [], [], [], [], [], []
        for s, f in zip(seeds, fair, strict=True):
            a = int(s.added_at or 0)
            tr = s.arms[arm.label]
            chose = tr.chose_new[a:]
            shares.append(float(chose.mean()))
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
    seeds = [s for s in result.seeds if s.drift_at is not None and s.drift_at >= block]
    out: dict[str, Any] = {
        "kind": drift.kind,
        "at_days": drift.at_days,
        "strength": drift.strength,
        "block": block,
        "recovery_level": level,
    }
    if not seeds:
        out["note"] = "the drift starts too early or after the last round; nothing to compare"
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
_CURVE_COLUMNS = (
    "policy",
    "role",
    "round",
    "cumulative_reward",
    "cumulative_expected_reward",
    "cumulative_oracle_reward",
    "cumulative_regret",
    "average_reward",
)


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


def _csv_field(value: str) -> str:
    if any(ch in value for ch in ',"\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def _curves_csv(result: SimulationResult, data: dict[str, dict[str, FloatArray]]) -> str:
    lines = [",".join(_CURVE_COLUMNS)]
    roles = {a.label: a.role for a in result.arms}
    for label, cols in data.items():
        for i in range(cols["round"].shape[0]):
            row = [_csv_field(label), roles[label], str(int(cols["round"][i]))]
            row += [f"{float(cols[c][i]):.6g}" for c in _CURVE_COLUMNS[3:]]
            lines.append(",".join(row))
    return "\n".join(lines) + "\n"


# -- writing ----------------------------------------------------------------------------------
def dumps(summary: dict[str, Any]) -> str:
    """``summary.json`` text: strict JSON, fixed key order, two-space indent, final newline."""
    return json.dumps(summary, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_outputs(result: SimulationResult, summary: dict[str, Any], directory: Path) -> list[str]:
    """Write every output file into ``directory`` (which must exist); returns the file names."""
    directory = Path(directory)
    (directory / "summary.json").write_text(dumps(summary), encoding="utf-8")
    data = curves(result)
    (directory / "curves.csv").write_text(_curves_csv(result, data), encoding="utf-8")
    (directory / "timings.json").write_text(
        json.dumps(timings(result), indent=2) + "\n", encoding="utf-8"
    )
    from .plots import plot_all

    return ["summary.json", "curves.csv", "timings.json", *plot_all(summary, data, directory)]


def check_output_paths(
    out: str | os.PathLike[str] | None, log: str | os.PathLike[str] | None
) -> None:
    """Fail before a run that could not write its outputs: a missing parent folder, an ``--out``
    directory holding files other than a previous report, an existing ``--log`` file."""
    if out is not None:
        p = Path(out)
        if not p.parent.resolve().is_dir():
            raise NotFoundError.for_field("--out", str(out), "is in a folder that does not exist")
        if p.exists():
            if not p.is_dir():
                raise ConflictError.for_field("--out", str(out), "exists and is not a directory")
            foreign = sorted(c.name for c in p.iterdir() if c.name not in OUTPUT_FILES)
            if foreign:
                raise ConflictError.for_field(
                    "--out",
                    str(out),
                    f"holds files that are not a simulation report ({foreign[:3]}); "
                    "choose an empty or new directory",
                )
    if log is not None:
        q = Path(log)
        if not q.parent.resolve().is_dir():
            raise NotFoundError.for_field("--log", str(log), "is in a folder that does not exist")
        if q.exists():
            raise ConflictError.for_field(
                "--log", str(log), "already exists; remove it or choose another file"
            )


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary directory next to ``target``; on success it replaces ``target``
    (a previous report there is removed), on failure it is deleted and ``target`` is untouched."""
    dest = Path(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent.resolve()))
    try:
        yield tmp
        old: Path | None = None
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent.resolve()))
            old.rmdir()
            dest.rename(old)
        tmp.rename(dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def atomic_log(target: str | os.PathLike[str]) -> Iterator[EventLog]:
    """Yield an :class:`EventLog` written to a temporary file next to ``target`` and renamed to
    ``target`` when the block succeeds; deleted (with its WAL files) when it fails."""
    dest = Path(target)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.partial-", dir=dest.parent.resolve())
    os.close(fd)
    os.unlink(name)
    tmp = Path(name)
    log = EventLog(tmp, hmac_key=SIMULATION_HMAC_KEY, synchronous="OFF")
    try:
        yield log
        log.close()
        if dest.exists():
            raise ConflictError.for_field("--log", str(target), "appeared during the run")
        tmp.rename(dest)
    except BaseException:
        log.close()
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(tmp) + suffix).unlink(missing_ok=True)
        raise


# -- the terminal -----------------------------------------------------------------------------
def _pct(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x * 100:+.1f}%"


def _sign(u: dict[str, Any]) -> float:
    """Direction of an uplift: the relative one when defined, else the absolute difference."""
    rel = u.get("uplift")
    return float(rel) if rel is not None and math.isfinite(rel) else float(u["difference"])


def _join(names: Sequence[str]) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _interval(rec: dict[str, Any]) -> str:
    return f"95% CI {_pct(rec['ci_low'])}..{_pct(rec['ci_high'])}"


def headline(summary: dict[str, Any]) -> list[str]:
    """The sentences a newcomer reads first: who won, by how much, how sure we are."""
    pols = summary["policies"]
    winner = summary.get("winner")
    if winner is None:
        return []
    rec = next(p for p in pols if p["policy"] == winner)
    controls = [p for p in pols if p["role"] == "control"]
    if not rec["uplift"]:
        return [f"{winner}: {rec['mean_reward']:.4f} reward per decision (no control to compare)."]
    ups = rec["uplift"]
    wins = [c for c, u in ups.items() if u["significant"] and _sign(u) > 0]
    losses = [c for c, u in ups.items() if u["significant"] and _sign(u) < 0]
    ties = [c for c in ups if c not in wins and c not in losses]
    if len(wins) == len(ups):
        lead = f"{winner} won"
    else:
        clauses = []
        if wins:
            clauses.append(f"{winner} beat {_join(wins)}")
        if losses:
            clauses.append(f"{winner if not wins else 'it'} lost to {_join(losses)}")
        if ties:
            who = winner if not clauses else "no"
            tie = f"significant difference from {_join(ties)}"
            clauses.append(f"{who} {tie}" if who == "no" else f"{who} showed no {tie}")
        lead = "; ".join(clauses)
    parts = [f"{_pct(u['uplift'])} over {c} ({_interval(u)})" for c, u in ups.items()]
    lines = [f"{lead}. Uplift in expected reward per decision: " + ", ".join(parts) + "."]
    best_control = max(controls, key=lambda p: p["expected_reward"]) if controls else None
    if best_control is not None and rec["role"] == "policy":
        lines.append(
            f"It reached {rec['expected_reward'] / summary['oracle_reward'] * 100:.0f}% of the "
            f"oracle's expected reward (best control: "
            f"{best_control['expected_reward'] / summary['oracle_reward'] * 100:.0f}%)."
        )
    lines.append(f"How sure: {summary['interval']}.")
    return lines


def render(summary: dict[str, Any], console: Console, timing: dict[str, Any] | None = None) -> None:
    """Print the newcomer tables, the headline and the cold-start / drift / replay summaries."""
    rounds = summary["rounds"]
    n_seeds = len(summary["seeds"])
    table = Table(
        title=(
            f"Simulation '{summary['scenario']}': {rounds:,} decisions x {n_seeds} "
            f"seed{'s' if n_seeds > 1 else ''} (means over seeds)"
        ),
        title_justify="left",
    )
    table.add_column("policy")
    table.add_column("reward", justify="right")
    table.add_column("CTR", justify="right")
    table.add_column("orders", justify="right")
    table.add_column("revenue", justify="right")
    table.add_column("regret", justify="right")
    if timing is not None:
        table.add_column("decisions/s", justify="right")
    for p in summary["policies"]:
        name = p["policy"] + (" (control)" if p["role"] == "control" else "")
        if p["policy"] == summary.get("winner"):
            name = f"[bold]{name}[/bold]"
        row = [
            name,
            f"{p['mean_reward']:.4f}",
            f"{p['ctr'] * 100:.2f}%",
            f"{p['order_rate'] * 100:.2f}%",
            f"{p['revenue_per_decision']:.2f}",
            f"{p['regret_per_decision']:.4f}",
        ]
        if timing is not None:
            dps = timing["engines"].get(p["policy"], {}).get("decisions_per_second")
            row.append("" if dps is None else f"{dps:,.0f}")
        table.add_row(*row)
    console.print(table)
    console.print(
        "[dim]Per decision: reward, clicks (CTR), orders, revenue (CNY) and regret (expected "
        "reward lost against the oracle).[/dim]"
    )
    up = Table(
        title="Uplift in expected reward per decision over each control", title_justify="left"
    )
    up.add_column("policy")
    up.add_column("over")
    up.add_column("uplift", justify="right")
    up.add_column("95% CI", justify="right")
    up.add_column("verdict")
    rows = 0
    for p in summary["policies"]:
        if p["role"] != "policy":
            continue
        for c, u in p["uplift"].items():
            if not u["significant"]:
                verdict = "not significant"
            else:
                verdict = "[green]better[/green]" if _sign(u) > 0 else "[red]worse[/red]"
            up.add_row(
                p["policy"],
                c,
                _pct(u["uplift"]),
                f"{_pct(u['ci_low'])} .. {_pct(u['ci_high'])}",
                verdict,
            )
            rows += 1
    if rows:
        console.print(up)
    for line in headline(summary):
        console.print(line)
    rw = summary["reward"]
    console.print(
        f"[dim]Reward = {rw['click']:g} per click + {rw['order']:g} per order + "
        f"{rw['value_weight']:g} per CNY of order value. The oracle knows every user's true click "
        f"and order probabilities ({summary['oracle_reward']:.4f} per decision). Every policy saw "
        "the same users and the same random outcomes (paired comparison).[/dim]"
    )
    late = [p for p in summary["policies"] if p["late_events"] > 0]
    if late:
        shares = ", ".join(f"{p['policy']} {p['late_order_share'] * 100:.0f}%" for p in late)
        console.print(
            f"Orders that arrived after the attribution window (late: counted as revenue, never "
            f"learned): {shares}."
        )
    _render_cold_start(summary, console)
    _render_drift(summary, console)
    _render_replay(summary, console)


def _fmt(x: float | None, spec: str = ".4f") -> str:
    return "n/a" if x is None else format(x, spec)


def _share(x: float | None) -> str:
    """A share of the oracle's reward in whole percent (undefined shares are ``None`` in the
    summary: NaN does not survive the JSON rounding)."""
    return _fmt(None if x is None else x * 100, ".0f") + "%"


def _render_cold_start(summary: dict[str, Any], console: Console) -> None:
    cold = summary.get("cold_start", {})
    nu = cold.get("new_users")
    if nu is not None and "policies" in nu:
        t = Table(
            title=(
                f"New users (no profile on either platform): their first {nu['first_k']} "
                f"decisions, {nu['decisions_scored']:,} scored"
            ),
            title_justify="left",
        )
        t.add_column("policy")
        t.add_column("first-k reward", justify="right")
        t.add_column("share of oracle", justify="right")
        t.add_column("established users", justify="right")
        for p, r in nu["policies"].items():
            t.add_row(
                p,
                _fmt(r["first_k_reward"]),
                _share(r["share_of_oracle"]),
                _fmt(r["established_users_reward"]),
            )
        console.print(t)
        console.print(
            f"[dim]Oracle on the same decisions: {nu['oracle_first_k_reward']:.4f}.[/dim]"
        )
    nb = cold.get("new_bundles")
    if nb is not None and "policies" in nb:
        t = Table(
            title=(
                f"New bundles: {nb['new_bundles']} added at round {nb['added_at_round']:,}; fair "
                f"share (how often one of them is the best offer) {nb['fair_share'] * 100:.1f}%"
            ),
            title_justify="left",
        )
        t.add_column("policy")
        t.add_column("share chosen", justify="right")
        t.add_column("rounds to fair share", justify="right")
        t.add_column("exploration cost", justify="right")
        t.add_column("missed gain", justify="right")
        for p, r in nb["policies"].items():
            reach = r["rounds_to_fair_share"]
            t.add_row(
                p,
                f"{r['share'] * 100:.1f}%",
                "not reached" if reach is None else f"{reach:,.0f}",
                f"{r['exploration_cost']:.1f}",
                f"{r['missed_gain']:.1f}",
            )
        console.print(t)
        console.print(
            f"[dim]Fair share reached: first block of {nb['block']} rounds with at least "
            f"{nb['tolerance'] * 100:.0f}% of it. Exploration cost: expected reward lost choosing "
            "a new bundle worse than the best old one; missed gain: reward a better new bundle "
            "would have added.[/dim]"
        )


def _render_drift(summary: dict[str, Any], console: Console) -> None:
    dr = summary.get("drift")
    if dr is None or "policies" not in dr:
        return
    t = Table(
        title=(
            f"Preference drift ({dr['kind']}, strength {dr['strength']:g}) at round "
            f"{dr['drift_at_round']:,}: share of the oracle's expected reward"
        ),
        title_justify="left",
    )
    t.add_column("policy")
    t.add_column("before", justify="right")
    t.add_column("lowest after", justify="right")
    t.add_column("at the end", justify="right")
    t.add_column(f"rounds to {dr['recovery_level'] * 100:.0f}% of before", justify="right")
    for p, r in dr["policies"].items():
        rec = r["rounds_to_recover"]
        t.add_row(
            p,
            _share(r["pre_drift_share_of_oracle"]),
            _share(r["lowest_share_after_drift"]),
            _share(r["final_share_of_oracle"]),
            "not recovered" if rec is None else f"{rec:,.0f}",
        )
    console.print(t)


def _render_replay(summary: dict[str, Any], console: Console) -> None:
    rep = summary.get("replay")
    if rep is None:
        return
    t = Table(
        title=f"Replay of a uniform-random log (Li et al. 2011) vs the simulator's truth: {rep['policy']}",
        title_justify="left",
    )
    t.add_column("seed", justify="right")
    t.add_column("logged", justify="right")
    t.add_column("matched", justify="right")
    t.add_column("replay estimate [95% CI]", justify="right")
    t.add_column("true value", justify="right")
    t.add_column("inside CI", justify="center")
    for s in rep["seeds"]:
        t.add_row(
            str(s["seed"]),
            f"{s['logged']:,}",
            f"{s['matched']:,}",
            f"{s['estimate']:.4f} [{_fmt(s['ci_low'])}, {_fmt(s['ci_high'])}]",
            f"{s['truth']:.4f}",
            "yes" if s["covered"] else "no",
        )
    console.print(t)
    console.print(
        f"[dim]{rep['method']}. Truth inside the replay CI for {rep['covered']} of "
        f"{len(rep['seeds'])} seeds.[/dim]"
    )
