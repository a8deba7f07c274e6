"""Long run of the deterministic Raft simulation: many seeds, violations counted, seeds/s.

    python -m bench.raft_sim --seeds 10000 --steps 1000 [--start 0] [--jobs 2]
    python -m bench.raft_sim --seed 117 --steps 1000 --bug commit_previous_term   # replay one

Each seed draws its cluster size (3, 5, 7) and its fault mix from the seed itself
(tests/harness/raft_sim.py `options_for_seed`), so a failing seed replays bit for bit from the
command printed with it.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from actors.raft.types import PLANTED_BUGS
from tests.harness.raft_sim import SimResult, run_seed


def _run(args: tuple[int, int, frozenset[str]]) -> SimResult:
    seed, steps, bugs = args
    result = run_seed(seed, steps, bugs)
    # the history is large and not needed by the parent
    return SimResult(result.seed, result.nodes, result.steps, result.violation, result.stats, [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=1000, help="number of seeds to run")
    parser.add_argument("--start", type=int, default=0, help="first seed")
    parser.add_argument("--seed", type=int, help="replay this one seed and print its result")
    parser.add_argument("--steps", type=int, default=1000, help="steps (ticks) per seed")
    parser.add_argument(
        "--bug",
        action="append",
        default=[],
        choices=sorted(PLANTED_BUGS),
        help="TEST-ONLY: plant a known Raft bug (repeatable)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--max-failures", type=int, default=5, help="failures to print in full")
    args = parser.parse_args(argv)
    bugs = frozenset(args.bug)

    if args.seed is not None:
        result = run_seed(args.seed, args.steps, bugs)
        print(f"seed {args.seed}: {result.nodes} nodes, {args.steps} steps, stats {result.stats}")
        print(result.violation or "no violation")
        return 1 if result.violation else 0

    seeds = range(args.start, args.start + args.seeds)
    work = [(seed, args.steps, bugs) for seed in seeds]
    started = time.perf_counter()
    failures: list[SimResult] = []
    totals: dict[str, int] = {}
    with ProcessPoolExecutor(args.jobs) if args.jobs > 1 else _Inline() as pool:
        for done, result in enumerate(pool.map(_run, work, chunksize=8), start=1):
            for name, count in result.stats.items():
                totals[name] = totals.get(name, 0) + count
            if result.violation:
                failures.append(result)
                if len(failures) <= args.max_failures:
                    print(result.violation, flush=True)
            if done % 500 == 0:
                rate = done / (time.perf_counter() - started)
                print(f"... {done} seeds, {len(failures)} violations, {rate:.1f} seeds/s", flush=True)
    elapsed = time.perf_counter() - started
    print(
        f"seeds {args.start}..{args.start + args.seeds - 1} x {args.steps} steps"
        f"{' with planted ' + ','.join(sorted(bugs)) if bugs else ''}: "
        f"{len(failures)} violations, {args.seeds / elapsed:.2f} seeds/s "
        f"({elapsed:.1f} s, {args.jobs} job(s))"
    )
    if failures:
        print("failing seeds:", ", ".join(str(f.seed) for f in failures[:50]))
    print("totals:", ", ".join(f"{k}={v}" for k, v in sorted(totals.items())))
    return 1 if failures else 0


class _Inline:
    """A stand-in for a process pool that runs in this process (for --jobs 1)."""

    def __enter__(self) -> _Inline:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map(self, fn, items, chunksize=1):  # type: ignore[no-untyped-def]
        return map(fn, items)


if __name__ == "__main__":
    sys.exit(main())
