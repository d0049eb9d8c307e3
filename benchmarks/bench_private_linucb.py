"""The cost of privacy in learning: ``dp_linucb`` at epsilon 1 / 4 / 16 next to LinUCB.

    python benchmarks/bench_private_linucb.py [--rounds 25000] [--seeds 3] [--batch 100]

Every policy runs in the baseline scenario's world (``simulations/baseline.toml``: 3 cities,
12 deals x 5 courses, 2,000 users), on the same seeds, users and random outcomes (the
simulator's paired design), against the uniform and popularity controls. Reported per policy:
the share of the oracle's expected reward (mean over seeds, with the range over seeds).

The non-private peers are LinUCB at its default (``alpha="auto"``) and LinUCB with the fixed
``alpha`` the private policy uses (``"auto"`` reads the unprivatised reward spread). The private
policy is given ``horizon = rounds``, ``dp_delta = 1e-6``, the context bound ``x_bound`` set to
the 95th percentile of the context norms measured on a first seed by a probe (so about 5% of
contexts are clipped, reported), and ``reward_bound = 3`` (a click and an order; order value
beyond it is clipped).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from typing import Any, ClassVar  # noqa: E402

import numpy as np  # noqa: E402

from bandit_engine.policies import register_policy  # noqa: E402
from bandit_engine.policies.baselines import UniformRandom  # noqa: E402
from bandit_engine.simulation.driver import simulate  # noqa: E402
from bandit_engine.simulation.policy_spec import PolicySpec  # noqa: E402
from bandit_engine.simulation.scenario import default_scenario  # noqa: E402


class _NormProbe(UniformRandom):
    """Uniform random that records the norm of every context it sees."""

    name: ClassVar[str] = "norm_probe"
    norms: ClassVar[list[float]] = []
    dims: ClassVar[set[int]] = set()

    def choose(self, x: Any, arms: Sequence[str], arm_features: Any, mask: Any = None) -> Any:
        _NormProbe.norms.append(float(np.linalg.norm(x)))
        _NormProbe.dims.add(len(x))
        return super().choose(x, arms, arm_features, mask)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=25_000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 4.0, 16.0])
    args = ap.parse_args()

    base = default_scenario()
    register_policy("norm_probe", _NormProbe)
    probe = base.with_overrides(
        rounds=min(args.rounds, 5000),
        seeds=1,
        policies=[PolicySpec.create("norm_probe")],
        controls=[],
    )
    simulate(probe)
    norms = np.array(_NormProbe.norms)
    x_bound = float(np.quantile(norms, 0.95))
    (d,) = _NormProbe.dims
    print(
        f"context norms over {norms.size} decisions: median {np.median(norms):.2f}, "
        f"95th percentile {x_bound:.2f}, max {norms.max():.2f} -> x_bound = {x_bound:.2f}; "
        f"d = {d}"
    )

    policies = [
        PolicySpec.create("linucb", label="LinUCB (alpha auto)"),
        PolicySpec.create("linucb", {"alpha": args.alpha}, label=f"LinUCB (alpha {args.alpha})"),
    ]
    for eps in args.epsilons:
        policies.append(
            PolicySpec.create(
                "dp_linucb",
                {
                    "dp_epsilon": eps,
                    "dp_delta": 1e-6,
                    "horizon": args.rounds,
                    "batch": args.batch,
                    "alpha": args.alpha,
                    "x_bound": round(x_bound, 3),
                    "reward_bound": 3.0,
                },
                label=f"dp_linucb eps={eps:g}",
            )
        )
    controls = [PolicySpec.create("uniform"), PolicySpec.create("popularity", {"epsilon": 0.05})]
    sc = base.with_overrides(
        rounds=args.rounds, seeds=args.seeds, policies=policies, controls=controls
    )
    t0 = time.perf_counter()
    result = simulate(sc)
    elapsed = time.perf_counter() - t0
    print(f"{args.rounds} rounds x {args.seeds} seeds, batch {args.batch}: {elapsed:.0f} s")
    print(f"{'policy':28s} share of oracle (mean, [min, max] over seeds)")
    for arm in result.arms:
        shares = [float(s.arms[arm.label].expected.sum() / s.oracle.sum()) for s in result.seeds]
        print(f"{arm.label:28s} {np.mean(shares):6.1%}  [{min(shares):.1%}, {max(shares):.1%}]")
    from bandit_engine.policies.private_linucb import (
        gaussian_noise_sd,
        noise_shift,
        tree_levels,
    )

    m = tree_levels(args.rounds, args.batch)
    for eps in args.epsilons:
        sd = gaussian_noise_sd(eps, 1e-6, m, x_bound, 3.0)
        print(
            f"eps={eps:g}: m={m} levels, noise sd {sd:.1f} per entry, "
            f"shift 2*Upsilon {2 * noise_shift(sd, m, d, -(-args.rounds // args.batch), 0.05):.0f}"
        )


if __name__ == "__main__":
    main()
