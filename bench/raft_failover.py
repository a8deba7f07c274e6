"""Leader failover in simulation, after the Raft paper's Figure 16 protocol.

    python -m bench.raft_failover --trials 1000 [--no-pre-vote] [--timeouts 150-155]

Ongaro & Ousterhout (ATC'14) §9.3: five servers, broadcast time about 15 ms; the leader is
crashed uniformly at random within its heartbeat interval (half the minimum election timeout);
with election timeouts of 150-155 ms the median time to elect a new leader was 287 ms.

Here: 5 replicas of RaftCore in the deterministic simulation (1 tick = 1 simulated ms), one-way
network delay uniform in `--delay` (default 6-9 ms: a ~15 ms round trip), a Ready persisted
`--fsync` ms after it is produced (default 0), no loss. Each trial elects a leader,
commits a write, waits a uniformly random point of a heartbeat interval, crashes the leader, and
measures (simulated ms from the crash) the time until a new leader exists and until a write
proposed to it as soon as it exists is committed. Differences from the paper's setup: all logs
are equal when the leader dies (the paper varied log lengths), and pre-vote (thesis §9.6, on in
our configuration; `--no-pre-vote` for the paper's algorithm) adds a round trip per election.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

from tests.harness.raft_sim import RaftSimulation, SimNode, SimOptions, encode_write

PAPER_MEDIAN_MS = 287.0


def _options(
    low: int, high: int, pre_vote: bool, delay: tuple[int, int], fsync: tuple[int, int]
) -> SimOptions:
    return SimOptions(
        nodes=5,
        steps=0,
        tick_ms=1,
        election_ticks=low,
        election_ticks_max=high + 1,
        heartbeat_ticks=low // 2,
        pre_vote=pre_vote,
        min_delay_ms=delay[0],
        max_delay_ms=delay[1],
        drop_rate=0.0,
        duplicate_rate=0.0,
        slow_rate=0.0,
        min_fsync_ms=fsync[0],
        max_fsync_ms=fsync[1],
        fault_rate=0.0,
        clients=0,
        spare_nodes=0,
        wire_codec=False,
        check_linearizability=False,
    )


def _leader(sim: RaftSimulation, newer_than: int = -1) -> SimNode | None:
    node = sim.current_leader()
    if node is None or node.core is None or node.core.term <= newer_than:
        return None
    return node


def _commit_one_write(sim: RaftSimulation, after: int, limit_ms: int) -> tuple[int, int] | None:
    """Propose to the leader as soon as one (of a term > `after`) exists; return (ms until that
    leader existed, ms until the write committed), counted from now."""
    start = sim.now
    leader_at = None
    pending: tuple[SimNode, int, int] | None = None  # node, term, index
    seq = 0
    while sim.now - start < limit_ms:
        leader = _leader(sim, after)
        if leader is not None and leader.core is not None:
            core = leader.core
            if leader_at is None:
                leader_at = sim.now - start
            if pending is None or pending[0] is not leader or pending[1] != core.term:
                seq += 1
                core.propose(encode_write(f"bench-{seq}", "k", seq))
                sim.after_core(leader)
                pending = (leader, core.term, core.last_index)
            elif core.commit_index >= pending[2]:
                return leader_at, sim.now - start
        sim.step()
    return None


def run_trial(
    seed: int,
    low: int,
    high: int,
    pre_vote: bool,
    delay: tuple[int, int] = (6, 9),
    fsync: tuple[int, int] = (0, 0),
) -> tuple[int, int]:
    sim = RaftSimulation(seed, _options(low, high, pre_vote, delay, fsync))
    warm = _commit_one_write(sim, -1, 20 * high)
    if warm is None:
        raise RuntimeError(f"trial {seed}: no stable leader to start from")
    # Crash at a uniformly random point of the leader's heartbeat interval.
    for _ in range(random.Random(seed).randrange(low // 2) + 2 * low):
        sim.step()
    old = sim.current_leader()
    if old is None or old.core is None:
        raise RuntimeError(f"trial {seed}: leader lost before the crash")
    old_term = old.core.term
    sim.crash(old)
    result = _commit_one_write(sim, old_term, 100 * high)
    if result is None:
        raise RuntimeError(f"trial {seed}: no new leader within {100 * high} ms")
    return result


def _percentile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--timeouts", default="150-155", help="election timeout range in ms")
    parser.add_argument("--no-pre-vote", action="store_true", help="the paper's algorithm")
    parser.add_argument("--delay", default="1-2", help="one-way network delay range in ms")
    parser.add_argument("--fsync", default="5-6", help="time to persist a Ready, range in ms")
    parser.add_argument("--start", type=int, default=0, help="first trial seed")
    args = parser.parse_args(argv)
    low, high = (int(x) for x in args.timeouts.split("-"))
    delay = tuple(int(x) for x in args.delay.split("-"))
    fsync = tuple(int(x) for x in args.fsync.split("-"))
    pre_vote = not args.no_pre_vote

    started = time.perf_counter()
    to_leader: list[int] = []
    to_write: list[int] = []
    for seed in range(args.start, args.start + args.trials):
        leader_ms, write_ms = run_trial(seed, low, high, pre_vote, delay, fsync)  # type: ignore[arg-type]
        to_leader.append(leader_ms)
        to_write.append(write_ms)
    elapsed = time.perf_counter() - started

    print(
        f"Figure 16 protocol: 5 replicas, timeouts {low}-{high} ms, heartbeat {low // 2} ms, "
        f"one-way delay {args.delay} ms, fsync {args.fsync} ms, pre-vote "
        f"{'on' if pre_vote else 'off'}, {args.trials} trials "
        f"({elapsed:.1f} s wall)"
    )
    for name, values in (("new leader", to_leader), ("first committed write", to_write)):
        p50 = statistics.median(values)
        print(
            f"  time to {name:<22} p50 {p50:6.1f} ms  p99 {_percentile(values, 0.99):6.1f} ms  "
            f"max {max(values):4d} ms  (p50 / paper's {PAPER_MEDIAN_MS:.0f} ms median = "
            f"{p50 / PAPER_MEDIAN_MS:.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
