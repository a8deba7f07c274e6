"""`garrison raft ...` on a real 3-gateway cluster: separate node processes joined by their peer gateways.

Each command runs as its own `python -m supervisors.cli raft ...` process against a node's control socket
(named by `--topology` + `--node`), as on-call would run it. Effects are checked on the nodes themselves:
their replicas' status, their logged roles, and the incidents committed in their event logs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from tests.system import test_cluster
from tests.system.nodes import REPO
from tests.system.test_cluster import (
    GATEWAYS,
    Cluster,
    agreed_leader,
    incident,
    incident_ids,
    wait_until,
)

pytestmark = [pytest.mark.system, pytest.mark.timeout(240)]
cluster = test_cluster.cluster  # the fixture: gateways started under tmp_path, stopped by PID


def garrison_raft(c: Cluster, node: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "supervisors.cli", "raft", *args, "--topology", str(c.topology)]
    return subprocess.run(
        [*cmd, "--node", node],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def raft_status(c: Cluster, node: str) -> dict[str, Any]:
    run = garrison_raft(c, node, "status", "--json")
    assert run.returncode == 0, run.stderr
    status: dict[str, Any] = json.loads(run.stdout)
    return status


def test_transfer_leader_from_the_cli_hands_leadership_to_the_named_node(cluster: Any) -> None:
    c = cluster.make()
    nodes = [c.start(n) for n in GATEWAYS]
    leader = wait_until(lambda: agreed_leader(c, list(GATEWAYS)), 60, "one agreed leader", nodes)
    target, bystander = [n for n in GATEWAYS if n != leader]
    before = raft_status(c, leader)
    assert before["role"] == "leader" and sorted(before["voters"]) == sorted(GATEWAYS), before

    # asked on a follower that is neither: the command finds the leader's node through the topology
    run = garrison_raft(c, bystander, "transfer-leader", target)
    assert run.returncode == 0, f"stdout {run.stdout!r} stderr {run.stderr!r}"
    assert f"asking the leader {leader}" in run.stderr
    assert f"{target} leads now" in run.stdout
    now = raft_status(c, target)
    assert now["role"] == "leader" and now["term"] > before["term"], now
    wait_until(
        lambda: agreed_leader(c, list(GATEWAYS)) == target, 30, f"every node following {target}", nodes
    )
    text = garrison_raft(c, bystander, "status")
    assert text.returncode == 0 and f"{bystander}: follower" in text.stdout, text.stdout + text.stderr
    assert f"leader {target}" in text.stdout and "voters gw-1, gw-2, gw-3; learners -" in text.stdout
    assert [e for e in c.nodes[leader].named("leadership_transfer_started") if e.get("to") == target]

    # the cluster still commits under the new leader
    c.propose(bystander, [incident("after-transfer", bystander)])
    wait_until(
        lambda: all("after-transfer" in incident_ids(c.committed(n)) for n in GATEWAYS),
        30,
        "a write committed under the new leader",
        nodes,
    )
    # refusals name what to do and change nothing
    refused = garrison_raft(c, target, "transfer-leader", "gw-nowhere")
    assert refused.returncode == 5 and "not a voter" in refused.stderr, refused.stderr
    outsider = garrison_raft(c, target, "add-member", "gw-nowhere", "--wait", "2")
    assert outsider.returncode == 5 and "cluster.raft_members" in outsider.stderr, outsider.stderr
    assert raft_status(c, target)["voters"] == now["voters"]


def test_remove_member_then_add_it_back_from_the_cli(cluster: Any) -> None:
    c = cluster.make()
    nodes = [c.start(n) for n in GATEWAYS]
    leader = wait_until(lambda: agreed_leader(c, list(GATEWAYS)), 60, "one agreed leader", nodes)
    member = next(n for n in GATEWAYS if n != leader)

    run = garrison_raft(c, leader, "remove-member", member)
    assert run.returncode == 0, f"stdout {run.stdout!r} stderr {run.stderr!r}"
    after = raft_status(c, leader)
    assert member not in after["voters"] + after["learners"] and len(after["voters"]) == 2, after
    # it is really out: what commits now is not sent to it
    c.propose(leader, [incident("while-removed", leader)])
    rest = [n for n in GATEWAYS if n != member]
    wait_until(
        lambda: all("while-removed" in incident_ids(c.committed(n)) for n in rest),
        30,
        "a write committed by the two remaining voters",
        nodes,
    )
    assert "while-removed" not in incident_ids(c.committed(member)), "the removed member still got entries"

    run = garrison_raft(c, leader, "add-member", member, "--wait", "30")
    assert run.returncode == 0, f"stdout {run.stdout!r} stderr {run.stderr!r}"
    assert f"{member} added as a learner" in run.stdout and f"{member} is a voter" in run.stdout
    back = raft_status(c, leader)
    assert sorted(back["voters"]) == sorted(GATEWAYS) and back["learners"] == [], back
    wait_until(
        lambda: "while-removed" in incident_ids(c.committed(member)),
        30,
        "the re-added member catching up",
        nodes,
    )
    logs = {n: [(r["raft_index"], r["incident"]) for r in c.committed(n)] for n in GATEWAYS}
    assert logs[leader] == logs[member], "the re-added member's log differs from the leader's"
