"""Apprentice mode on the simulator: no decision worse than the rule's before the switch, and the
learner's uplift over the rule after it, with a 95% interval over seeds.

Per seed, two engines on the demo world see the same users, times and outcome draws
(:mod:`bandit_engine.simulation.apprentice_run`): one serves the rule ``fixed_rule`` on
``deal.discount`` with ``epsilon`` exploration, the other runs apprentice mode with the same rule
and a ``linucb`` learner, checking the switch rule (:class:`SwitchThresholds` defaults) every 250
decisions. If the rule has not switched by ``--force-at``, the switch is told there (as an
operator would with ``POST /v1/admin/apprentice/switch``). Reported:

* before the switch: the share of decisions where the apprentice served exactly the rule's
  bundle (must be 100%) and the two engines' mean true expected reward (must be equal);
* the switch: when, told or decided, and the switch rule's figures at that point;
* after the switch: the uplift of the learner over the rule in true expected reward per
  decision, per seed and as a mean with a t interval over seeds (paired on the same draws).

    python benchmarks/bench_apprentice.py --seeds 3 --rounds 40000 --force-at 30000

The switch test and why it needs support: :mod:`bandit_engine.evaluation.apprentice`. A run where
the rule's traffic supports the learner (a rule exploring everything, a better learner):

    python benchmarks/bench_apprentice.py --seeds 3 --rounds 20000 --force-at 20000 \
        --epsilon 1.0 --rule-column course.price \
        --learner fixed_rule:column=deal.discount,epsilon=0.1
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from scipy import stats
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from bandit_engine.demo import demo_world
from bandit_engine.simulation.apprentice_run import run_apprentice

START = 1_799_971_200.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=40_000)
    ap.add_argument("--force-at", type=int, default=30_000)
    ap.add_argument("--epsilon", type=float, default=0.2, help="the rule's exploration")
    ap.add_argument(
        "--learner",
        default="linucb",
        help="a policy name or 'name:key=value,...' (e.g. fixed_rule:column=deal.discount,epsilon=0.1)",
    )
    ap.add_argument("--rule-column", default="deal.discount", help="the rule's ranking column")
    args = ap.parse_args()
    name, _, rest = args.learner.partition(":")
    params: dict[str, object] = {}
    for part in filter(None, rest.split(",")):
        key, _, raw = part.partition("=")
        try:
            params[key] = float(raw)
        except ValueError:
            params[key] = raw
    learner = {"name": name, "params": params}
    threadpool_limits(limits=1, user_api="blas")
    uplifts = []
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        world = demo_world(seed=seed, start_time=START)
        run = run_apprentice(
            world,
            rounds=args.rounds,
            seed=seed,
            rule_epsilon=args.epsilon,
            rule_column=args.rule_column,
            learner=learner,
            force_at=args.force_at,
        )
        s = run.switch_at if run.switch_at is not None else args.rounds
        same = float(np.mean(run.served[:s] == run.rule[:s]))
        pre_a, pre_r = run.apprentice_value[:s].mean(), run.rule_value[:s].mean()
        post_a = run.apprentice_value[s:].mean() if s < args.rounds else math.nan
        post_r = run.rule_value[s:].mean() if s < args.rounds else math.nan
        uplift = post_a / post_r - 1.0
        uplifts.append(uplift)
        st = run.status_at_switch
        how = "told" if run.forced else "switch rule"
        print(
            f"seed {seed}: before the switch {s} decisions, same bundle as the rule "
            f"{100 * same:.1f}%, expected reward {pre_a:.4f} vs rule {pre_r:.4f}; "
            f"switch at {run.switch_at} ({how})"
        )
        if st is not None:
            print(
                f"    at the switch: agreement {st.agreement:.3f}, rule value {st.rule_value:.4f}, "
                f"learner {st.learner_value:.4f} [{st.learner_ci_low:.4f}, "
                f"{st.learner_ci_high:.4f}], learner - rule {st.difference:+.4f} (one-sided "
                f"lower bound {st.difference_ci_low:+.4f}), ESS {st.ess:.0f} over "
                f"{st.evaluated} decisions: {st.reason}"
            )
        print(
            f"    after the switch: expected reward {post_a:.4f} vs rule {post_r:.4f}, "
            f"uplift {100 * uplift:+.1f}% ({time.perf_counter() - t0:.0f} s)"
        )
    u = np.asarray(uplifts)
    if len(u) > 1:
        half = stats.t.ppf(0.975, len(u) - 1) * u.std(ddof=1) / math.sqrt(len(u))
        print(
            f"uplift of the learner over the rule after the switch: {100 * u.mean():+.1f}% "
            f"(95% CI {100 * (u.mean() - half):+.1f}..{100 * (u.mean() + half):+.1f}, "
            f"{len(u)} seeds)"
        )


if __name__ == "__main__":
    main()
