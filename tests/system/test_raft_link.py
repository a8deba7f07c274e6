"""The Raft lane between a replica and its own gateway process (actors/raft/gateway_link.py), on a real
3-node cluster: Raft frames cross the direct socket, not the gateway shell; a SIGKILLed gateway is
replaced, the replica falls back to the shell, reconnects to the new gateway and commits go on."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from supervisors.client import ControlError, connect
from tests.harness.cluster import Cluster, incident, pid_alive

pytestmark = [pytest.mark.system, pytest.mark.timeout(240)]

REPLICA = "root/incident-log"


def link(c: Cluster, name: str) -> dict[str, Any] | None:
    """The replica's ``gateway_link`` status, read over the node's control socket."""
    try:
        with connect(data_dir=c.data_dir(name), timeout=3.0) as client:
            reply = client.ask(REPLICA, {"op": "raft_status"}, timeout=3.0)
    except (ControlError, OSError):
        return None
    return reply.get("gateway_link") if isinstance(reply, dict) else None


def acknowledged(c: Cluster, name: str, iid: str) -> bool:
    """POST ``iid`` to ``name``: True once it is committed (201, or 200 for a repeat)."""
    try:
        code, _ = c.post(name, "/v1/incidents", incident(iid, name), timeout=20)
    except OSError:  # not listening yet, or the outcome is unknown: a retry is safe
        return False
    assert code in (200, 201, 503, 504), code
    return code in (200, 201)


def committed_everywhere(c: Cluster, iid: str) -> bool:
    logs = [c.log(n) for n in c.names]
    return all(log is not None and iid in [i for _, i in log] for log in logs)


def test_raft_crosses_the_direct_socket_and_survives_a_gateway_sigkill(tmp_path: Path) -> None:
    with Cluster(tmp_path) as c:
        c.start()
        c.wait_leader(90)
        before = {
            n: c.wait(lambda n=n: (s := link(c, n)) and s["connected"] and s, 30, f"{n}'s link")
            for n in c.names
        }
        c.wait(lambda: acknowledged(c, "gw-2", "over-the-link"), 60, "a write on gw-2 acknowledged")
        c.wait(lambda: committed_everywhere(c, "over-the-link"), 30, "the incident on every node")
        # the traffic really went through the sockets: every replica sent and received frames on its own
        after = {n: link(c, n) for n in c.names}
        for n in c.names:
            assert after[n] is not None and after[n]["received"] > before[n]["received"], (n, after[n])
            assert after[n]["sent"] > before[n]["sent"], (n, after[n])

        victim = c.nodes["gw-3"]
        gateway_pid = int(victim.events("peer_gateway_started")[-1]["pid"])
        os.kill(gateway_pid, signal.SIGKILL)
        c.wait(lambda: not pid_alive(gateway_pid), 10, "the gateway process to die")
        c.wait(
            lambda: victim.events("raft_link_closed", replica="gw-3"),
            30,
            "the replica to see its link closed",
        )
        c.wait(
            lambda: [e for e in victim.events("peer_gateway_started") if int(e["pid"]) != gateway_pid],
            30,
            "a new gateway process",
        )
        again = c.wait(
            lambda: (s := link(c, "gw-3")) and s["connects"] >= 2 and s["connected"] and s, 30, "a new link"
        )
        assert len(victim.events("raft_replica_started")) == 1, "the replica was restarted too"
        # the new gateway's API may answer 503 (no leader seen yet) or not listen yet: retry, it is safe
        c.wait(lambda: acknowledged(c, "gw-3", "after-gateway-kill"), 60, "a write on gw-3 acknowledged")
        c.wait(lambda: committed_everywhere(c, "after-gateway-kill"), 30, "that write on every node")
        last = link(c, "gw-3")
        assert last is not None and last["received"] > again["received"], last
