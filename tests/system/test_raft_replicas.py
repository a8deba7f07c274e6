"""Raft replica actors on a real node: replication, leader SIGKILL, restart from LMDB, signatures."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from actors.eventlog import EventLog
from actors.raft.codec import decode_hard_state
from actors.streams import COMMITTED_INCIDENTS, PROPOSED_INCIDENTS, READINGS
from models.readings import readings_in
from tests.fixture_raft import malformed_entries
from tests.system.nodes import LiveNode, supervisor, worker, write_topology
from tests.system.test_pipeline import STEPS, _check_exactly_once

pytestmark = pytest.mark.system

REPLICAS = ("gw1", "gw2", "gw3")


def cluster_tree(extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    replicas = [
        worker(
            r,
            actor="actors.raft.replica.RaftReplicaActor",
            args={"peers": list(REPLICAS), "publish": r == "gw1"},
        )
        for r in REPLICAS
    ]
    return supervisor(
        "root",
        [
            worker(
                "sensors",
                actor="actors.pipeline.sensor.SimulatedSensorActor",
                args={"seed": 7, "speedup": 600, "max_steps": STEPS},
            ),
            worker("inference", actor="actors.pipeline.inference.InferenceActor"),
            supervisor("raft", replicas + (extra or []), intensity=20, period=10),
        ],
        intensity=20,
        period=10,
    )


def _read(data_dir: Path) -> tuple[list[dict[str, Any]], dict[str, list[int]], dict[str, Any]]:
    log = EventLog(data_dir / "eventlog")
    try:
        committed = [r.payload for r in log.read(COMMITTED_INCIDENTS)]
        applied = {r: sorted(log.values_with_prefix(f"raft/{r}/applied/").values()) for r in REPLICAS}
        extra = {
            "drained": log.get_value("inference/root/inference", {}).get("offset") == log.last_seq(READINGS)
            # the sensors are done, not just momentarily caught up with (a record is a block of readings)
            and len(readings_in(r.payload for r in log.read(READINGS))) == STEPS * 20
            and log.get_value("offset/raft/gw1", 0) == log.last_seq(PROPOSED_INCIDENTS),
            "hard_states": {
                r: decode_hard_state(log.get_value(f"raft/{r}/hs"))
                for r in REPLICAS
                if log.get_value(f"raft/{r}/hs")
            },
            "rejected": {
                r: {k.rsplit("/", 1)[1]: v for k, v in log.values_with_prefix(f"raft/{r}/rejected/").items()}
                for r in REPLICAS
            },
        }
        return committed, applied, extra
    finally:
        log.close()


def _wait(data_dir: Path, predicate: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate(*_read(data_dir)):
            return
        time.sleep(0.3)
    raise AssertionError(f"condition not reached in {timeout}s: {_read(data_dir)}")


def _leader(node: LiveNode) -> str:
    roles = node.named("raft_role", role="leader")
    assert roles, "no leader elected"
    return roles[-1]["replica"]


def test_three_replicas_survive_leader_sigkill_and_apply_each_incident_once(tmp_path: Path) -> None:
    topo = write_topology(tmp_path, cluster_tree())
    node = LiveNode(topo)
    try:
        node.wait_for("raft_role", role="leader", timeout=30)
        node.wait_for("incident_committed", replica="gw1", timeout=60)
        leader = _leader(node)
        term_before = node.named("raft_role", role="leader")[-1]["term"]
        os.kill(node.pid_of("root/raft", leader), signal.SIGKILL)
        node.wait_for("child_lost", supervisor="root/raft", child=leader)
        node.wait_for("child_restarted", supervisor="root/raft", child=leader)
        new_leaders = node.wait_for("raft_role", role="leader", count=2, timeout=30)
        assert new_leaders[-1]["term"] > term_before

        def settled(committed: list, applied: dict, extra: dict) -> bool:
            counts = {len(v) for v in applied.values()}
            return extra["drained"] and len(counts) == 1 and counts.pop() == len(committed) > 0

        _wait(tmp_path / "data", settled, timeout=90)
    finally:
        assert node.stop() == 0
    committed, applied, extra = _read(tmp_path / "data")
    _check_exactly_once(committed)
    # every replica applied the same incidents at the same raft indexes (state machine safety)
    assert applied["gw1"] == applied["gw2"] == applied["gw3"]
    # the restarted replica recovered its term and vote from LMDB: no replica is behind the leader's term
    terms = {r: hs.term for r, hs in extra["hard_states"].items()}
    assert min(terms.values()) >= term_before


def test_entries_with_bad_signatures_are_rejected_identically_on_every_replica(tmp_path: Path) -> None:
    forger = worker(
        "forger",
        actor="tests.fixture_actors.ForgedProposer",
        args={"target": "gw2", "after": 3.0},  # after the first election, even under load
    )
    topo = write_topology(tmp_path, cluster_tree(extra=[forger]))
    node = LiveNode(topo)
    try:
        node.wait_for("forged_entries_sent", timeout=30)
        node.wait_for("entry_rejected", count=6, timeout=30)
    finally:
        assert node.stop() == 0
    _, _, extra = _read(tmp_path / "data")
    rejected = extra["rejected"]
    assert len(rejected["gw1"]) == 2
    assert rejected["gw1"] == rejected["gw2"] == rejected["gw3"]
    reasons = sorted(rejected["gw1"].values())
    assert "signature does not verify" in reasons[0] or "signature does not verify" in reasons[1]
    assert any("'mallory', which has no trusted key" in r for r in reasons)
    committed, _, _ = _read(tmp_path / "data")
    assert not any(c["incident"]["incident_id"] in ("forged-1", "stranger-1") for c in committed)


def test_a_replica_behind_the_compacted_log_catches_up_from_the_leaders_snapshot(tmp_path: Path) -> None:
    tree = cluster_tree()
    for replica in tree["children"][2]["children"]:
        replica["args"]["snapshot_every"] = 2
    node = LiveNode(write_topology(tmp_path, tree))
    try:
        node.wait_for("child_started", supervisor="root/raft", child="gw3", timeout=30)
        gw3 = node.pid_of("root/raft", "gw3")
        os.kill(gw3, signal.SIGSTOP)  # gw3 falls behind while the others commit and compact
        try:
            node.wait_until(  # one incident_committed line per applied batch: count its incident_ids
                lambda: (
                    sum(len(e["incident_ids"]) for e in node.named("incident_committed", replica="gw1")) >= 4
                ),
                90,
                "4 incidents committed on gw1",
            )
        finally:
            os.kill(gw3, signal.SIGCONT)
        installed = node.wait_for("raft_snapshot_installed", replica="gw3", timeout=30)[0]
        assert installed.get("pieces", 0) >= 1, "installed from one message, not read from the leader's file"

        def settled(committed: list, applied: dict, extra: dict) -> bool:
            return (
                extra["drained"]
                and applied["gw3"] == applied["gw1"] == applied["gw2"]
                and len(committed) == 4
            )

        _wait(tmp_path / "data", settled, timeout=60)
    finally:
        assert node.stop() == 0
    _, applied, _ = _read(tmp_path / "data")
    assert applied["gw1"] == applied["gw2"] == applied["gw3"]


def test_malformed_committed_entries_are_rejected_at_every_boot_and_the_node_stays_up(tmp_path: Path) -> None:
    """A committed entry without a signature, with a string signature, a list as ``node``, ... is replayed
    at every boot; before, it crashed every replica on every start and the node exited for good."""
    replicas = [
        worker(
            r,
            actor="actors.raft.replica.RaftReplicaActor",
            args={"peers": list(REPLICAS), "publish": r == "gw1"},
        )
        for r in REPLICAS
    ]
    proposer = worker("proposer", actor="tests.fixture_raft.MalformedProposer", args={"target": "gw2"})
    raft = supervisor("raft", [*replicas, proposer], intensity=3, period=10)
    node = LiveNode(write_topology(tmp_path, supervisor("root", [raft], intensity=3, period=10)))
    malformed = len(malformed_entries("n", Ed25519PrivateKey.generate()))
    try:
        sent = node.wait_for("malformed_entries_sent", timeout=60)[0]
        assert sent["count"] == malformed
        # the valid incident proposed after them is applied by every replica ...
        for r in REPLICAS:
            node.wait_for("incident_committed", replica=r, incident_id="valid-after-malformed", timeout=30)
        first = node.wait_for("entry_rejected", count=malformed * len(REPLICAS), timeout=10)
    finally:
        assert node.stop() == 0
    assert not node.named("child_crashed") and not node.named("child_lost")
    # ... and each malformed entry really was committed: it sits in the durable Raft log of every replica
    # below the commit index, and was rejected there (no-op) with the same reason on every replica
    _, applied, extra = _read(tmp_path / "data")
    rejected = extra["rejected"]
    assert len(rejected["gw1"]) == malformed
    assert rejected["gw1"] == rejected["gw2"] == rejected["gw3"]
    commit = min(hs.commit for hs in extra["hard_states"].values())
    assert all(int(index) < commit for index in rejected["gw1"])
    valid_index = applied["gw1"]
    assert valid_index == applied["gw2"] == applied["gw3"] and len(valid_index) == 1
    assert all(int(index) < valid_index[0] for index in rejected["gw1"])
    reasons = sorted(rejected["gw1"].values())
    for expected in (
        "sig is missing",
        "sig is str",
        "node is a list",
        "no 'timestamp'",
        "not a map",
        "not msgpack",
    ):
        assert any(expected in why for why in reasons), (expected, reasons)
    logged = {(e["replica"], e["index"], e["reason"]) for e in first}
    assert logged == {(r, int(i), why) for r in REPLICAS for i, why in rejected[r].items()}
    assert all(isinstance(e["term"], int) and e["term"] >= 1 for e in first)

    # a restart replays the committed log: every replica rejects the same entries again, and keeps running
    node = LiveNode(write_topology(tmp_path, supervisor("root", [supervisor("raft", replicas)], intensity=3)))
    try:
        again = node.wait_for("entry_rejected", count=malformed * len(REPLICAS), timeout=60)
        node.wait_for("raft_role", role="leader", timeout=30)
        time.sleep(2)  # before, the node exited within a second of every start
        assert node.proc.poll() is None
        assert not node.named("child_crashed") and not node.named("child_lost")
    finally:
        assert node.stop() == 0
    replayed = {(e["replica"], e["index"], e["reason"]) for e in again}
    assert replayed == {(r, int(i), why) for r in REPLICAS for i, why in rejected[r].items()}
    # the valid incident is applied once, not again on replay
    assert not node.named("incident_committed", incident_id="valid-after-malformed")
    _, applied_after, _ = _read(tmp_path / "data")
    assert applied_after == applied
