"""How much can any policy learn about a new user in 20 decisions of `simulations/new_users.toml`?

    python benchmarks/bench_new_user_ceiling.py [--users 300] [--repeats 20]

Issue 8 asks that new users' share of the oracle over their decisions 11-20 be at least 1.5x their
share over decisions 1-5. A new user has no profile, so the engine knows neither their city nor
their tastes; the world (simulation/response.py) penalises a deal outside the user's city by
``foreign_city_penalty`` in both logits, and a new user's personal taste terms are small (no
profile-listed habits). This benchmark computes what an idealised learner would reach, one that
knows everything the world could teach it about the population:

* for every city, the exact mean expected reward of every bundle over that city's new users (what
  a perfectly learned population model would predict for "a new user of city c");
* for a new user, a posterior over their city, updated after every decision with the exact click
  likelihood of the bundle shown (a click on a bundle of city c is strong evidence; a non-click
  weak);
* two ways to choose: greedy on the posterior expected reward, and Thompson sampling over cities
  (sample a city from the posterior, play its best bundle).

It then reports each learner's share of the oracle per decision index and the ratio
share(11-20) / share(1-5), next to what "knowing the city from the first decision" and the
global most popular bundle would give. Nothing here is the engine: it bounds what the engine can
do on this scenario, whatever its model.
"""

from __future__ import annotations

import argparse

import numpy as np

from bandit_engine.simulation.scenario import load_scenario
from bandit_engine.simulation.world import World


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--users", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--scenario", default="simulations/new_users.toml")
    args = ap.parse_args()
    sc = load_scenario(args.scenario)
    world = World.generate(sc.world, seed=0)
    rng = np.random.default_rng(5)
    members = world.add_new_users(args.users, rng)
    t = sc.world.start_time + 3 * 86400.0
    everything = np.arange(world.n_bundles)
    deals = world.deals.set_index("deal_id")
    b_deal = world.bundles["deal_id"].to_numpy()
    valid = (deals.loc[b_deal, "valid_from"].to_numpy() <= t) & (
        t < deals.loc[b_deal, "valid_to"].to_numpy()
    )
    R = np.array([world.expected_reward(int(m), everything, t, sc.rewards) for m in members])
    PC = np.array([world.true_rates(int(m), everything, t)[0] for m in members])
    city_names = world.truth["city"].to_numpy()[members]
    cities, city = np.unique(city_names, return_inverse=True)
    oracle = np.array([R[i, world.eligible(int(m), t)].max() for i, m in enumerate(members)])
    n_city = cities.shape[0]
    Rc = np.stack([np.where(valid, R[city == c].mean(0), -np.inf) for c in range(n_city)])
    Pc = np.stack([PC[city == c].mean(0) for c in range(n_city)])
    prior = np.bincount(city, minlength=n_city) / city.shape[0]
    best_of_city = Rc.argmax(axis=1)
    known_city = np.mean([R[i, best_of_city[c]] / oracle[i] for i, c in enumerate(city)])
    popular = int(np.where(valid, R.mean(0), -np.inf).argmax())
    print(f"{args.users} new users of {args.scenario}, {world.n_bundles} bundles, {n_city} cities")
    print(f"  global most popular bundle: {np.mean(R[:, popular] / oracle):.1%} of the oracle")
    print(f"  the best bundle of the user's true city, from decision 1: {known_city:.1%}")
    sim = np.random.default_rng(1)
    R_safe = np.where(np.isfinite(Rc), Rc, -1e9)
    for rule in ("greedy", "thompson"):
        curve = np.zeros(20)
        for _ in range(args.repeats):
            for i in range(args.users):
                post = prior.copy()
                for k in range(20):
                    if rule == "greedy":
                        b = int(np.argmax(post @ R_safe))
                    else:
                        b = int(best_of_city[sim.choice(n_city, p=post)])
                    curve[k] += R[i, b] / oracle[i]
                    click = sim.random() < PC[i, b]
                    post = post * (Pc[:, b] if click else 1.0 - Pc[:, b])
                    post /= post.sum()
        curve /= args.repeats * args.users
        first, mid, late = curve[:5].mean(), curve[5:10].mean(), curve[10:].mean()
        print(
            f"  ideal city learner, {rule}: decisions 1-5 {first:.1%}, 6-10 {mid:.1%}, "
            f"11-20 {late:.1%}; ratio 11-20 / 1-5 = {late / first:.2f}x"
        )


if __name__ == "__main__":
    main()
