"""Bytes per logged decision, event and learned row in PostgreSQL (issue 12's sizing guide).

Logs ``--decisions`` demo decisions (one click event for every second one) through a decision
server's code path into a new schema, lets a learner close and learn them, then reads
``pg_total_relation_size`` (table + TOAST + indexes) after ``VACUUM ANALYZE`` and prints bytes per
row for each table, and the size of a published model version. The schema is dropped afterwards.

Usage::

    python benchmarks/pg_row_sizes.py --db postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import uuid

__all__ = ["main"]

T0 = 1_700_000_000.0  # the demo world's start: its deals are valid then


def main(argv: list[str] | None = None) -> int:
    import psycopg

    from bandit_engine.demo import demo_engine
    from bandit_engine.service.decider import DecisionService
    from bandit_engine.service.learner import Learner
    from bandit_engine.store import open_log
    from bandit_engine.store.lease import open_lease

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--db", default="postgresql://postgres@127.0.0.1:5432/test")
    p.add_argument("--decisions", type=int, default=3000)
    p.add_argument("--policy", action="append", default=None)
    args = p.parse_args(argv)
    for policy in args.policy or ["linucb", "pair_ucb"]:
        schema = f"sizes_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.db, autocommit=True) as c:
            c.execute(f"CREATE SCHEMA {schema}")
        url = f"{args.db}{'&' if '?' in args.db else '?'}options=-csearch_path%3D{schema}"
        try:

            def base(policy: str = policy) -> object:
                return demo_engine(seed=0, policy=policy, start_time=1_700_000_000.0)

            log = open_log(url, hmac_key=b"sizing-key-0123456789abcdef012345")
            engine = base()
            engine.clock = lambda: T0  # type: ignore[attr-defined]
            server = DecisionService(engine, log, version=0)  # type: ignore[arg-type]
            n = n_events = 0
            with log.transaction():
                for i in range(1, args.decisions + 1):
                    try:
                        d = server.decide(f"U{i % 3000 + 1:06d}")
                    except Exception:  # a user with no eligible bundle now
                        continue
                    n += 1
                    if n % 2 == 0:
                        server.report(d.decision_id, "click", event_id="e")
                        n_events += 1
            learner_log = open_log(url, hmac_key=None)
            learner = Learner(
                base,  # type: ignore[arg-type]
                learner_log,
                open_lease(learner_log),
                grace=0.0,
                clock=lambda: T0 + 10 * 86_400.0,  # every window closed
            )
            learner.try_lead()
            learner.step()
            version = learner.publish(force=True)
            with psycopg.connect(url, autocommit=True) as c:
                c.execute("VACUUM ANALYZE")
                sizes = dict(
                    c.execute(
                        "SELECT relname, pg_total_relation_size(relid) FROM pg_statio_user_tables"
                        " WHERE schemaname = %s",
                        (schema,),
                    ).fetchall()
                )
                state = c.execute(
                    "SELECT octet_length(state) FROM model_versions WHERE version = %s", (version,)
                ).fetchone()
            learned = log.counts()["learned"]
            print(
                f"{policy}: {n} decisions ({sizes['decisions'] / n:.0f} B each), "
                f"{n_events} events ({sizes['events'] / max(n_events, 1):.0f} B each), "
                f"{learned} learned rows ({sizes['learned'] / max(learned, 1):.0f} B each), "
                f"profiles {sizes['profiles'] / 1e6:.2f} MB; a model version "
                f"{(state[0] if state else 0) / 1e6:.2f} MB after learning them"
            )
            learner_log.close()
            log.close()
        finally:
            with psycopg.connect(args.db, autocommit=True) as c:
                c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
