"""``bandit simulate --from-log`` on the Open Bandit Dataset sample: the issue-16 target.

    python benchmarks/bench_from_log.py [--obd ../shared/data/obd] [--seeds 5]

For each logging policy of the sample (``random``, ``bts``; campaign ``all``, 10,000 rows, 80
items) it fits the semi-synthetic world (a logistic reward model cross-fitted on 5 folds, its
penalty chosen by held-out log-loss), runs LinUCB, epsilon-greedy, the logged actions and uniform
on it, and prints:

* the target: the world's value of the logging policy (its expected reward on the logged
  actions) against the log's own on-policy 95% interval (the logged mean reward);
* the calibration on held-out rows (Brier and log-loss against a held-out constant, the top
  and bottom deciles);
* each arm's simulated value and its paired uplift over ``logged`` and ``uniform``;
* the time to fit and to run.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from bandit_engine.evaluation.evaluate_log import read_policy_log  # noqa: E402
from bandit_engine.simulation.from_log import (  # noqa: E402
    from_log_arms,
    simulate_from_log,
    summarize_from_log,
)
from bandit_engine.simulation.logged_world import fit_logged_world  # noqa: E402
from bandit_engine.simulation.policy_spec import parse_policy_spec  # noqa: E402

__all__ = ["main"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--obd", default=str(Path(__file__).parent.parent.parent / "shared/data/obd"))
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    if not Path(args.obd).is_dir():
        raise SystemExit(f"no OBD sample at {args.obd} (pass --obd FOLDER)")
    arms = from_log_arms([parse_policy_spec("linucb"), parse_policy_spec("epsilon_greedy")], None)
    for behavior in ("random", "bts"):
        t0 = time.perf_counter()
        plog, info = read_policy_log(args.obd, obd_behavior=behavior)
        world = fit_logged_world(plog)
        t1 = time.perf_counter()
        result = simulate_from_log(world, arms, seeds=args.seeds, log_info=info)
        s = summarize_from_log(result)
        t2 = time.perf_counter()
        cal, chk = s["calibration"], s["logging_policy_check"]
        print(f"== OBD {behavior}/all: {plog.n_rows:,} rows, {plog.n_actions} arms")
        print(
            f"world: {world.reward_model}; held-out loss by alpha: "
            + ", ".join(f"{a:g}: {v:.6f}" for a, v in world.alpha_losses.items())
        )
        print(
            f"TARGET logging policy: simulated {chk['simulated_value']:.6f}, on-policy "
            f"{chk['on_policy_value']:.6f} [{chk['on_policy_ci_low']:.6f}, "
            f"{chk['on_policy_ci_high']:.6f}] -> {'inside' if chk['within_ci'] else 'OUTSIDE'}"
        )
        print(
            f"calibration: Brier {cal['brier']:.6f} vs constant {cal['brier_constant']:.6f} "
            f"(skill {cal['brier_skill']:+.4%}); log-loss {cal['log_loss']:.6f} vs "
            f"{cal['log_loss_constant']:.6f}"
        )
        lo, hi = cal["deciles"][0], cal["deciles"][-1]
        print(
            f"  bottom decile predicted {lo['predicted']:.5f} observed {lo['observed']:.5f}; "
            f"top decile predicted {hi['predicted']:.5f} observed {hi['observed']:.5f}"
        )
        for p in s["policies"]:
            ups = ", ".join(
                f"{c} {u['uplift']:+.2%} [{u['ci_low']:+.2%}, {u['ci_high']:+.2%}]"
                for c, u in p["uplift"].items()
            )
            print(
                f"  {p['policy']:<15} expected {p['expected_reward']:.6f} "
                f"({p['share_of_oracle']:.0%} of oracle)  {ups}"
            )
        print(f"fit {t1 - t0:.1f} s, {args.seeds} seeds x {len(arms)} arms {t2 - t1:.1f} s")


if __name__ == "__main__":
    main()
