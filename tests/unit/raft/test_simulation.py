"""The deterministic simulation: many seeds must hold every invariant, and planted bugs must not.

CI runs 100 seeds x 1,000 steps (cluster sizes 3, 5, 7 in turn, each seed with its own fault
mix). The long run is `python -m bench.raft_sim --seeds 10000`. A failure prints its seed and
the command that replays it.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from actors.raft.types import PLANTED_BUGS
from tests.harness.raft_sim import (
    RaftSimulation,
    first_failure,
    options_for_seed,
    reproduce_command,
    run_seed,
)

CI_SEEDS = 100
CI_STEPS = 1000
# Planted-bug hunts run shorter seeds: a seed's first N steps do not depend on its length.
BUG_STEPS = 400
BUG_SEED_LIMIT = 300


def test_ci_seeds_hold_every_invariant() -> None:
    started = time.perf_counter()
    failures = []
    totals: dict[str, int] = {}
    for seed in range(CI_SEEDS):
        result = run_seed(seed, CI_STEPS)
        for name, count in result.stats.items():
            totals[name] = totals.get(name, 0) + count
        if not result.ok:
            failures.append(result.violation)
    elapsed = time.perf_counter() - started
    print(
        f"\n{CI_SEEDS} seeds x {CI_STEPS} steps: {len(failures)} violations, "
        f"{CI_SEEDS / elapsed:.1f} seeds/s ({elapsed:.1f} s); elections={totals.get('elections')}"
        f" crashes={totals.get('crashes')} writes_ok={totals.get('write_ok')}"
        f" reads_ok={totals.get('read_ok')} snapshots_installed="
        f"{totals.get('snapshots_installed')} conf_changes="
        f"{sum(v for k, v in totals.items() if k.startswith('conf_') and k != 'conf_change_refused')}"
    )
    assert not failures, "\n\n".join(failures[:5])
    # The run must actually exercise what it claims to.
    for needed in (
        "elections",
        "crashes",
        "write_ok",
        "read_ok",
        "compactions",
        "snapshots_installed",
        "conf_add_learner",
        "conf_promote",
        "conf_remove",
        "fault_transfer",
        "write_info",
    ):
        assert totals.get(needed, 0) > 0, f"no {needed} in {CI_SEEDS} seeds"


def test_a_seed_replays_bit_for_bit() -> None:
    first = run_seed(4, 300)
    again = run_seed(4, 300)
    assert first.history == again.history and first.stats == again.stats
    assert first.history, "the seed should have produced client operations"


def test_a_violation_names_its_seed_and_how_to_replay_it() -> None:
    options = dataclasses.replace(
        options_for_seed(14, BUG_STEPS), planted_bugs=frozenset({"read_index_before_noop"})
    )
    result = RaftSimulation(14, options).run()
    assert result.violation is not None
    assert result.violation.startswith("seed 14 ")
    assert reproduce_command(14, options) in result.violation


@pytest.mark.parametrize("bug", sorted(PLANTED_BUGS))
def test_planted_bug_is_caught(bug: str) -> None:
    seeds_run, failure = first_failure(range(BUG_SEED_LIMIT), BUG_STEPS, frozenset({bug}))
    assert failure is not None, f"{bug} survived {seeds_run} seeds"
    print(f"\nplanted bug {bug!r} caught after {seeds_run} seeds: {failure.violation}")


def test_linearizability_checker_catches_stale_reads_on_its_own() -> None:
    pytest.importorskip("actors.linearizability")
    for seed in range(BUG_SEED_LIMIT):
        options = dataclasses.replace(
            options_for_seed(seed, BUG_STEPS),
            planted_bugs=frozenset({"read_index_before_noop"}),
            check_stale_reads=False,
        )
        result = RaftSimulation(seed, options).run()
        if result.violation is not None:
            assert "not linearizable" in result.violation, result.violation
            print(f"\nlinearizability checker caught the stale read after {seed + 1} seeds")
            return
    pytest.fail("the history checker never caught read_index_before_noop")


# Seeds of a long run (2,000 steps) where a learner added late catches up one entry per round trip
# (max_entries_per_msg=1, max_inflight=1): they converge 300 and 460 ticks after healing, which a fixed
# 300-tick liveness budget reported as "no convergence".
SLOW_CATCH_UP_SEEDS = (7000214, 7000361)


@pytest.mark.parametrize("seed", SLOW_CATCH_UP_SEEDS)
def test_a_slow_but_progressing_catch_up_is_live(seed: int) -> None:
    result = run_seed(seed, 2000)
    assert result.ok, result.violation
    # it really needed more than the old fixed budget of 300 ticks (ticks 0..299)
    assert result.stats["liveness_ticks"] >= 300


class _LeaderNeverSendsAfterHealing(RaftSimulation):
    """Planted liveness bug: once the network is healed, nothing a leader sends arrives (appends,
    heartbeats, snapshots). Elections still happen; no entry can replicate."""

    dropped = 0

    def _send(self, msg: Any) -> None:
        if not self.faults_on:
            node = self.nodes.get(msg.sender)
            if node is not None and node.core is not None and node.core.role == "leader":
                self.dropped += 1
                return
        super()._send(msg)


def test_a_leader_that_never_sends_fails_liveness_for_lack_of_progress() -> None:
    for seed in range(20):
        sim = _LeaderNeverSendsAfterHealing(seed, options_for_seed(seed, 200))
        result = sim.run()
        if sim.dropped == 0:
            continue  # no leader after healing in this seed: the bug never acted
        # the planted fault really acted, and the liveness check caught it as a stall, not a timeout
        assert result.violation is not None, f"seed {seed}: a leader that never sends passed"
        assert "liveness: no progress for 300 ticks" in result.violation, result.violation
        return
    pytest.fail("no seed elected a leader after healing")


def test_the_liveness_cap_is_sized_from_the_lag() -> None:
    # no allowance per entry of lag: the slow catch-up that passes above now hits the cap, which says so
    options = dataclasses.replace(options_for_seed(7000361, 2000), liveness_ticks_per_entry=0)
    result = RaftSimulation(7000361, options).run()
    assert result.violation is not None
    assert "liveness: no convergence 330 ticks after healing (the cap for a lag of" in result.violation
