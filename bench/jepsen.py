"""Jepsen-style runs against a real 3-gateway cluster, as many seeds as you like.

    python -m bench.jepsen [--seeds N] [--seed FIRST] [--seconds S] [--clients K] [--edges E] [--keep]

Each seed starts three gateway nodes (`garrison run`) with a fault proxy on every directed peer link,
and E edge nodes (no Raft replica: they forward), runs K clients (POST incidents against a random node,
edges included; linearizable reads of the whole log against a random gateway) while a
seeded nemesis partitions, SIGKILLs/restarts, SIGSTOPs/SIGCONTs and slows nodes, then heals and checks: the
history with `garrison check-history --model log`, identical final logs, no incident twice, no
acknowledged incident lost, no incident answered 4xx/503 in the log (tests/harness/jepsen.py).
Each seed prints its number first (`--seed N --seeds 1` reruns it), its faults and verdicts, then one JSON
line. Exit code 1 when any seed failed; a failed seed's workdir (history, node logs) is always kept.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

from tests.harness.cluster import ClusterError
from tests.harness.jepsen import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=10, help="how many seeds to run")
    parser.add_argument("--seed", type=int, default=None, help="first seed (default: random, printed)")
    parser.add_argument("--seconds", type=float, default=60.0, help="nemesis + clients time per seed")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients")
    parser.add_argument("--edges", type=int, default=1, help="edge nodes (clients append through them)")
    parser.add_argument("--keep", action="store_true", help="keep every workdir, not only failed ones")
    args = parser.parse_args(argv)
    first = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1_000_000)
    failed = []
    for seed in range(first, first + args.seeds):
        workdir = Path(tempfile.mkdtemp(prefix=f"jepsen-{seed}-"))
        try:
            edges = tuple(f"edge-{i + 1}" for i in range(args.edges))
            report = run(workdir, seed, args.seconds, args.clients, edges=edges)
            ok, summary = report.ok, report.summary()
            verdicts, outcomes = report.verdicts, dict(report.outcomes)
        except ClusterError as exc:
            ok, summary, verdicts, outcomes = (
                False,
                f"seed {seed}: FAILED\n{exc}",
                {"cluster": str(exc)[:500]},
                {},
            )
        print(summary, flush=True)
        print(
            json.dumps(
                {"seed": seed, "ok": ok, "verdicts": verdicts, "outcomes": outcomes, "workdir": str(workdir)}
            )
        )
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        if not ok:
            failed.append(seed)
    print(f"{args.seeds - len(failed)}/{args.seeds} seeds passed" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
