"""The Open Bandit Pipeline paper's protocol on the Open Bandit Dataset sample.

Saito, Aihara, Matsutani, Narita, "Open Bandit Dataset and Pipeline: Towards Realistic and
Reproducible Off-Policy Evaluation", NeurIPS 2021 Datasets and Benchmarks (arXiv 2008.07146):
estimate the value (click rate) of the Bernoulli Thompson sampling (BTS) policy from the logs of
the uniformly random policy, and compare with BTS's on-policy click rate in its own logs, which
ran during the same week. Then evaluate some of the engine's own policies on the random logs.

Usage::

    python examples/obd_protocol.py [DATA_FOLDER] [--campaign all|men|women] [--seed S]

DATA_FOLDER holds ``random/`` and ``bts/`` (default: ``../shared/data/obd`` relative to the
repository, when it exists).

What is honestly computable from the sample
-------------------------------------------
Off-policy estimation needs BTS's probability of every item at every position on every random-log
row. The paper computes it by Monte Carlo from BTS's posterior; the sample does not ship that
posterior, only the logged propensity of the item BTS actually showed, on the BTS rows. BTS here
is context-free (its probabilities depend on item and position, not on the user), but they change
over the week as the policy is updated: the same (item, position) is logged with propensities from
0.005 to 0.6. So we evaluate the *time-averaged* BTS policy ``pi_bar(a | l)``, estimated from the
BTS log: on the BTS rows at position ``l``, ``P(a_i = a) = pi(a | l, t_i)``, hence
``E[sum_{i: a_i = a} 1 / pscore_i] = n_l`` and the ratio
``pi_bar(a | l) ~ n_{a,l} / sum_{i: a_i = a, l_i = l} 1 / pscore_i`` (the harmonic mean of the
logged propensities) is consistent for the time average. It uses the logged propensities, so it is
far less noisy than the item frequencies ``n_{a,l} / n_l`` (shown as a sensitivity check). Before
normalisation these estimates sum to about 1 per position (printed): a check of the approximation.
Items never shown at a position get probability 0. Limitation: the on-policy click rate of the
real (time-varying) BTS and the value of its time average differ by the covariance between BTS's
changes and the items' click rates over the week; we cannot estimate that term from the sample.

With about 40 clicks per 10,000 rows, every interval is wide: the comparison can show agreement
within the noise, not a precise error figure.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bandit_engine.errors import BanditError, DataError
from bandit_engine.evaluation.datasets import ObdData, load_obd
from bandit_engine.evaluation.dispatch import evaluate_action_dist, evaluate_policy
from bandit_engine.evaluation.policy_log import policy_log_from_obd
from bandit_engine.evaluation.policy_run import fit_policy
from bandit_engine.evaluation.report import format_table
from bandit_engine.evaluation.results import PolicyEvaluation
from bandit_engine.policies import EpsilonGreedy, LinUCB, UniformRandom

__all__ = ["DEFAULT_FOLDER", "bts_action_table", "main", "run_protocol"]

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FOLDER = REPO.parent / "shared" / "data" / "obd"
OPE_ESTIMATORS = ("ips", "snips", "dm", "dr", "sndr", "switch_dr")
ENGINE_ESTIMATORS = ("ips", "snips", "dr")


def bts_action_table(bts: ObdData, *, method: str = "harmonic") -> tuple[np.ndarray, np.ndarray]:
    """BTS's time-averaged distribution ``(K, L)`` over items per position, and the per-position
    sums before normalisation.

    ``method="harmonic"``: ``n_{a,l} / sum 1/pscore`` over the BTS rows with item ``a`` at
    position ``l`` (module docstring); ``"frequency"``: ``n_{a,l} / n_l``.
    """
    K, L = bts.n_actions, bts.n_positions
    counts = np.zeros((K, L))
    np.add.at(counts, (bts.action, bts.position), 1.0)
    if method == "frequency":
        raw = counts / counts.sum(axis=0, keepdims=True)
    elif method == "harmonic":
        inv = np.zeros((K, L))
        np.add.at(inv, (bts.action, bts.position), 1.0 / bts.pscore)
        raw = np.divide(counts, inv, out=np.zeros((K, L)), where=inv > 0)
    else:
        raise ValueError(f"method must be 'harmonic' or 'frequency', got {method!r}")
    sums = raw.sum(axis=0)
    return raw / sums, sums


def _clicks(n: int) -> str:
    return f"{n} click{'s' * (n != 1)}"


def _ci_text(low: float, high: float) -> str:
    return f"[{low:.4f}, {high:.4f}]"


def _on_policy(reward: np.ndarray) -> dict[str, float]:
    n = reward.shape[0]
    mean = float(reward.mean())
    se = float(reward.std(ddof=1) / math.sqrt(n))
    return {"value": mean, "std_error": se, "ci_low": mean - 1.96 * se, "ci_high": mean + 1.96 * se}


def run_protocol(
    folder: str | Path,
    *,
    campaign: str = "all",
    seed: int = 0,
    max_rows: int | None = None,
    engine_policies: bool = True,
) -> dict[str, Any]:
    """Run the protocol; returns every number that :func:`main` prints (plain data).

    Keys: ``campaign``, ``n_random``, ``n_bts``, ``clicks_random``, ``clicks_bts``,
    ``bts_on_policy`` and ``random_on_policy`` (value, se, CI), ``table_sums`` (per-position sums
    of the raw harmonic estimates), ``bts_ope`` (the :class:`PolicyEvaluation` of BTS on the random
    log), ``comparison`` (per estimator: estimate, relative error, difference to the on-policy
    value with its CI and whether it covers 0), ``true_uplift`` (on-policy BTS minus random, with
    CI), ``frequency_ips`` (sensitivity check), ``engine`` (per engine policy: its
    :class:`PolicyEvaluation` on the second half and its online-replay one on the whole log).
    """
    rnd = load_obd(folder, behavior="random", campaign=campaign, max_rows=max_rows)  # type: ignore[arg-type]
    bts = load_obd(folder, behavior="bts", campaign=campaign, max_rows=max_rows)  # type: ignore[arg-type]
    if rnd.n_actions != bts.n_actions:
        raise DataError("the random and BTS logs list different items", field="folder")
    table, sums = bts_action_table(bts)
    L = table.shape[1]
    if rnd.n_positions > L:
        raise DataError(
            f"the random log has {rnd.n_positions} positions, the BTS log {L}", field="folder"
        )
    n = rnd.n_rows
    dist = np.broadcast_to(table[None, :, :], (n, *table.shape))
    common: dict[str, Any] = {
        "reward": rnd.reward,
        "action": rnd.action,
        "pscore": rnd.pscore,
        "position": rnd.position,
        "n_candidates": np.full(n, rnd.n_actions),
        "seed": seed,
    }
    ope = evaluate_action_dist(
        **common,
        action_dist=dist,
        context=rnd.context,
        action_context=rnd.action_context,
        estimators=OPE_ESTIMATORS,
        policy="BTS (time-averaged, estimated from the BTS log's propensities)",
    )
    truth = _on_policy(bts.reward)
    random_value = _on_policy(rnd.reward)
    comparison: dict[str, dict[str, float | bool]] = {}
    for name, est in ope.estimates.items():
        diff = est.value - truth["value"]
        se = math.hypot(est.std_error, truth["std_error"])  # independent samples
        comparison[name] = {
            "estimate": est.value,
            "relative_error": abs(diff) / truth["value"] if truth["value"] > 0 else math.nan,
            "difference": diff,
            "difference_ci_low": diff - 1.96 * se,
            "difference_ci_high": diff + 1.96 * se,
            "consistent": bool(abs(diff) <= 1.96 * se),
        }
    up = truth["value"] - random_value["value"]
    up_se = math.hypot(truth["std_error"], random_value["std_error"])
    freq_table, _ = bts_action_table(bts, method="frequency")
    freq = evaluate_action_dist(
        **common,
        action_dist=np.broadcast_to(freq_table[None, :, :], (n, *freq_table.shape)),
        estimators=("ips",),
    )
    result: dict[str, Any] = {
        "campaign": campaign,
        "n_random": n,
        "n_bts": bts.n_rows,
        "clicks_random": int(rnd.reward.sum()),
        "clicks_bts": int(bts.reward.sum()),
        "bts_on_policy": truth,
        "random_on_policy": random_value,
        "table_sums": sums.tolist(),
        "bts_ope": ope,
        "comparison": comparison,
        "true_uplift": {"value": up, "ci_low": up - 1.96 * up_se, "ci_high": up + 1.96 * up_se},
        "frequency_ips": freq.estimates["ips"],
        "engine": {},
    }
    if engine_policies:
        result["engine"] = _engine_policies(rnd, seed)
    return result


def _engine_policies(rnd: ObdData, seed: int) -> dict[str, dict[str, PolicyEvaluation]]:
    """Fit on the first half of the random log (in time order), evaluate frozen on the second
    half; and online replay over the whole log."""
    log = policy_log_from_obd(rnd)
    train, test = log.split(0.5)
    assert train is not None
    policies = {
        "uniform": UniformRandom(seed=seed),
        "epsilon_greedy": EpsilonGreedy(epsilon=0.1, seed=seed),
        "linucb": LinUCB(alpha=0.5, epsilon=0.1, seed=seed),
    }
    out: dict[str, dict[str, PolicyEvaluation]] = {}
    for name, policy in policies.items():
        fitted = fit_policy(policy, train)
        out[name] = {
            "frozen": evaluate_policy(fitted, test, estimators=ENGINE_ESTIMATORS, seed=seed),
            "online": evaluate_policy(policy, log, estimators=("online_replay",), seed=seed),
        }
    return out


def format_outcome(result: dict[str, Any]) -> str:
    """The printed report."""
    t, r = result["bts_on_policy"], result["random_on_policy"]
    lines = [
        f"Open Bandit Dataset sample, campaign {result['campaign']!r}: "
        f"{result['n_random']} random rows ({_clicks(result['clicks_random'])}), "
        f"{result['n_bts']} BTS rows ({_clicks(result['clicks_bts'])})",
        "",
        "1. Ground truth: the BTS policy's on-policy click rate in its own log",
        f"   BTS    {t['value']:.5f}  95% CI {_ci_text(t['ci_low'], t['ci_high'])}",
        f"   random {r['value']:.5f}  95% CI {_ci_text(r['ci_low'], r['ci_high'])}",
        "   raw harmonic-mean estimates of BTS's distribution sum to "
        + ", ".join(f"{s:.3f}" for s in result["table_sums"])
        + " per position before normalising (1 if the context-free, time-averaged view were exact)",
        "",
        "2. Off-policy estimates of BTS's click rate from the random log",
        f"   {'estimator':<10}{'estimate':>9}  {'95% CI':<19}{'rel. error':>11}"
        f"  {'estimate - truth (95% CI)':<30}{'consistent':>10}",
    ]
    ope: PolicyEvaluation = result["bts_ope"]
    for name, c in result["comparison"].items():
        est = ope.estimates[name]
        lines.append(
            f"   {name:<10}{c['estimate']:>9.5f}  {_ci_text(est.ci_low, est.ci_high):<19}"
            f"{c['relative_error']:>11.2f}  {c['difference']:+.5f} "
            f"{_ci_text(c['difference_ci_low'], c['difference_ci_high']):<21}"
            f"{'yes' if c['consistent'] else 'no':>10}"
        )
    fi = result["frequency_ips"]
    lines.append(
        f"   sensitivity: IPS with BTS's item frequencies instead: {fi.value:.5f} "
        f"{_ci_text(fi.ci_low, fi.ci_high)}"
    )
    tu = result["true_uplift"]
    lines.append("")
    lines.append("3. Uplift of BTS over the random policy")
    lines.append(
        f"   on-policy (two logs, independent): {tu['value']:+.5f}  95% CI "
        f"{_ci_text(tu['ci_low'], tu['ci_high'])}"
    )
    for name, upl in ope.uplifts.items():
        lines.append(
            f"   estimated from the random log by {name:<9} {upl.value:+.5f}  95% CI "
            f"{_ci_text(upl.ci_low, upl.ci_high)}"
        )
    if ope.warnings:
        lines.append("   warnings:")
        lines.extend(f"   - {w}" for w in ope.warnings)
    if result["engine"]:
        lines.append("")
        lines.append(
            "4. Engine policies on the random log (items '0'..'79' as arms, OBD user features as "
            "context): fitted on the first half, evaluated frozen on the second half; and "
            "online replay (Li et al. 2011) over the whole log"
        )
        for name, evs in result["engine"].items():
            lines.append("")
            lines.append(f"--- {name} (frozen) ---")
            where = {"path": f"random log, second half ({result['campaign']})"}
            lines.append(format_table(evs["frozen"], log=where).rstrip())
            online = evs["online"]
            if "online_replay" in online.estimates:
                e, u = online.estimates["online_replay"], online.uplifts["online_replay"]
                lines.append(
                    f"online replay: {e.value:.5f} {_ci_text(e.ci_low, e.ci_high)} on {e.n} "
                    f"matched rows; uplift {u.value:+.5f} {_ci_text(u.ci_low, u.ci_high)}"
                )
            for w in online.warnings:
                lines.append(f"  - {w}")
    lines.append("")
    lines.append(
        "Outcome: about 40 clicks per 10,000 rows, so every interval above is wide; 'consistent' "
        "means the estimate and BTS's on-policy click rate agree within that noise, not that the "
        "estimator is accurate to the printed digits."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "folder",
        nargs="?",
        default=None,
        help=f"OBD folder with random/ and bts/ (default {DEFAULT_FOLDER} if it exists)",
    )
    parser.add_argument("--campaign", default="all", choices=("all", "men", "women"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-engine", action="store_true", help="Skip the engine policies (faster)."
    )
    args = parser.parse_args(argv)
    folder = Path(args.folder) if args.folder is not None else DEFAULT_FOLDER
    if not (folder / "random").is_dir() or not (folder / "bts").is_dir():
        hint = "" if args.folder is not None else " (pass the OBD folder as the first argument)"
        print(
            f"error: {folder} is not an Open Bandit Dataset folder with random/ and bts/{hint}",
            file=sys.stderr,
        )
        return 4
    started = time.perf_counter()
    try:
        result = run_protocol(
            folder, campaign=args.campaign, seed=args.seed, engine_policies=not args.no_engine
        )
    except BanditError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 6 if isinstance(exc, DataError) else 3
    print(format_outcome(result), end="")
    print(f"({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
