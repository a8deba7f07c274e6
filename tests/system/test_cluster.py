"""A real cluster on loopback: separate node processes joined only by their peer gateways (mTLS links).

Each test starts its nodes as `garrison run TOPOLOGY --node NAME` processes and stops them by PID (and the
node's session). Every fault is first checked to have happened (the process is gone, the link is down)
before survival is asserted.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from actors.eventlog import EventLog
from actors.raft.node_keys import load_or_create_signing_key, public_key_b64
from actors.streams import COMMITTED_INCIDENTS, PROPOSED_INCIDENTS
from supervisors.certs import ensure_cluster_certs
from supervisors.thespian_env import free_loopback_ports, free_peer_and_api_ports, processes_in_session
from tests.harness.cluster import edge_tree as harness_edge_tree
from tests.harness.cluster import gateway_tree as harness_gateway_tree
from tests.system.nodes import REPO

pytestmark = [pytest.mark.system, pytest.mark.timeout(240)]

GATEWAYS = ("gw-1", "gw-2", "gw-3")


def gateway_tree(name: str, everyone: list[str], snapshot_every: int = 1000) -> dict[str, Any]:
    return harness_gateway_tree(name, everyone, snapshot_every, intensity=20)


def edge_tree(name: str, everyone: list[str], sensing: bool = False) -> dict[str, Any]:
    return harness_edge_tree(name, everyone, intensity=20, sensing=sensing)


class Cluster:
    """A topology of gateways (+ edges) written under ``tmp_path``, with certificates and trusted keys."""

    def __init__(
        self,
        tmp_path: Path,
        gateways: tuple[str, ...] = GATEWAYS,
        edges: tuple[str, ...] = (),
        snapshot_every: int = 1000,
        sensing_edges: bool = False,  # edges run city.yaml's simulated sensors and inference
    ) -> None:
        self.tmp = tmp_path
        self.names = [*gateways, *edges]
        self.roles = {**dict.fromkeys(gateways, "gateway"), **dict.fromkeys(edges, "edge")}
        self.ports, self.api_ports = free_peer_and_api_ports(self.names)
        keys = {}
        for name in self.names:
            keys[name] = public_key_b64(load_or_create_signing_key(self.data_dir(name), name))
        ensure_cluster_certs(tmp_path / "certs", self.names)
        nodes = [
            {
                "name": name,
                "role": self.roles[name],
                "peer": f"127.0.0.1:{self.ports[name]}",
                "api": f"127.0.0.1:{self.api_ports[name]}",
                "data_dir": str(self.data_dir(name)),
                "tree": (
                    gateway_tree(name, self.names, snapshot_every)
                    if self.roles[name] == "gateway"
                    else edge_tree(name, self.names, sensing=sensing_edges)
                ),
            }
            for name in self.names
        ]
        cluster = {
            "certs_dir": "certs",
            "raft_members": list(gateways),
            "trusted_keys": keys,
            "heartbeat_ms": 100,
        }
        self.topology = tmp_path / "cluster.yaml"
        self.topology.write_text(yaml.safe_dump({"nodes": nodes, "cluster": cluster}))
        self.nodes: dict[str, ClusterNode] = {}
        self.logs: dict[str, EventLog] = {}

    def data_dir(self, name: str) -> Path:
        return self.tmp / "data" / name

    def start(self, name: str, topology: Path | None = None) -> ClusterNode:
        node = ClusterNode(topology or self.topology, name)
        self.nodes[name] = node
        return node

    def stop_all(self) -> None:
        for node in self.nodes.values():
            node.kill_whole_node()
        for log in self.logs.values():
            log.close()

    def log(self, name: str) -> EventLog:
        """The node's event log, opened once by this test process (LMDB allows one handle per process),
        read and appended next to the live node."""
        if name not in self.logs:
            self.logs[name] = EventLog(self.data_dir(name) / "eventlog")
        return self.logs[name]

    def committed(self, name: str) -> list[dict[str, Any]]:
        """The node's published log: ``incidents/committed`` records."""
        return [r.payload for r in self.log(name).read(COMMITTED_INCIDENTS)]

    def propose(self, name: str, incidents: list[dict[str, Any]]) -> None:
        """Durably append incidents to a node's ``incidents/proposed`` (what its inference would do)."""
        self.log(name).append(PROPOSED_INCIDENTS, incidents)

    def value(self, name: str, key: str) -> Any:
        return self.log(name).get_value(key)

    def status(self, name: str) -> dict[str, Any] | None:
        """The node's ``GET /v1/status`` (served by its peer gateway), None while it does not answer."""
        answer = self.get(name, "/v1/status")
        return answer[1] if answer is not None and answer[0] == 200 else None

    def get(self, name: str, path: str) -> tuple[int, dict[str, Any]] | None:
        """(HTTP status, JSON body) of a GET on the node's API; None while it does not answer."""
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.api_ports[name]}{path}", timeout=2) as r:
                return r.status, dict(json.loads(r.read()))
        except urllib.error.HTTPError as exc:
            return exc.code, dict(json.loads(exc.read() or b"{}"))
        except OSError:
            return None


class ClusterNode:
    """One node process (`garrison run TOPOLOGY --node NAME`), its JSON log lines collected."""

    def __init__(self, topology: Path, name: str) -> None:
        self.name = name
        cmd = [sys.executable, "-m", "supervisors.cli", "run", str(topology), "--node", name]
        self.proc = subprocess.Popen(
            [*cmd, "--log-format", "json", "--duration", "600"],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        self.events: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.session_id: int | None = None

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._lock:
                self.lines.append(line)
                if line.startswith("{"):
                    with contextlib.suppress(json.JSONDecodeError):
                        event = json.loads(line)
                        self.events.append(event)
                        if event.get("event") == "node_started":
                            self.session_id = event.get("session")

    def named(self, event: str, **match: Any) -> list[dict[str, Any]]:
        with self._lock:
            return [
                e
                for e in self.events
                if e.get("event") == event and all(e.get(k) == v for k, v in match.items())
            ]

    def kill_whole_node(self) -> None:
        """SIGKILL the launcher and every process of its session (the gateway dies with its shell)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.session_id:
            for pid in processes_in_session(int(self.session_id)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._reader.join(timeout=5)


def wait_until(condition: Callable[[], Any], timeout: float, what: str, nodes: list[ClusterNode]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    tails = "\n".join(f"--- {n.name}\n{''.join(n.lines[-25:])}" for n in nodes)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tails}")


def incident(iid: str, source: str = "gw-1") -> dict[str, Any]:
    return {
        "incident_id": iid,
        "timestamp": 1_700_000_000.0,
        "type": "gas_leak",
        "source_node": source,
        "confidence": 0.97,
        "payload": {"pollutant": "co"},
        "sensor": "S1",
    }


def leaders(cluster: Cluster, names: list[str]) -> dict[str, str | None]:
    """Each node's last logged view of the leader: {node: leader}."""
    view = {}
    for name in names:
        roles = cluster.nodes[name].named("raft_role")
        view[name] = roles[-1].get("leader") if roles else None
    return view


def agreed_leader(cluster: Cluster, names: list[str]) -> str | None:
    view = leaders(cluster, names)
    first = view[names[0]]
    return first if first is not None and all(v == first for v in view.values()) else None


def incident_ids(records: list[dict[str, Any]]) -> list[str]:
    return [r["incident"]["incident_id"] for r in records]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    made: list[Cluster] = []

    def make(**kwargs: Any) -> Cluster:
        c = Cluster(tmp_path, **kwargs)
        made.append(c)
        return c

    holder = type("Factory", (), {"make": staticmethod(make)})
    yield holder  # type: ignore[misc]
    for c in made:
        c.stop_all()


def test_three_gateways_elect_one_leader_and_replicate_identically(cluster: Any) -> None:
    c = cluster.make()
    nodes = [c.start(n) for n in GATEWAYS]
    leader = wait_until(lambda: agreed_leader(c, list(GATEWAYS)), 60, "one agreed leader", nodes)
    # proposals on every node (each node's replica proposes its own incidents/proposed through the leader)
    for i, name in enumerate(GATEWAYS):
        c.propose(name, [incident(f"{name}-{k}", name) for k in range(3 * i, 3 * i + 3)])
    expected = {f"{name}-{k}" for i, name in enumerate(GATEWAYS) for k in range(3 * i, 3 * i + 3)}
    wait_until(
        lambda: all(set(incident_ids(c.committed(n))) == expected for n in GATEWAYS),
        60,
        "every incident committed on every node",
        nodes,
    )
    logs = {n: [(r["raft_index"], r["incident"]) for r in c.committed(n)] for n in GATEWAYS}
    assert logs["gw-1"] == logs["gw-2"] == logs["gw-3"], "the committed logs differ between nodes"
    assert len(logs["gw-1"]) == len(expected), "an incident was committed twice"
    # the links really carried it: each node's gateway started and its peers are Raft members over mTLS
    for node in nodes:
        assert node.named("peer_gateway_started"), f"{node.name}: no peer gateway"
    assert leader in GATEWAYS


def process_state(pid: int) -> str | None:
    """The kernel's one-letter state of ``pid`` (R, S, T for stopped, Z for zombie); None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def pid_alive(pid: int) -> bool:
    return process_state(pid) not in (None, "Z")  # a zombie is dead too


def test_leader_node_sigkill_elects_a_new_leader_and_writes_resume(cluster: Any) -> None:
    c = cluster.make()
    nodes = {n: c.start(n) for n in GATEWAYS}
    leader = wait_until(
        lambda: agreed_leader(c, list(GATEWAYS)), 60, "one agreed leader", list(nodes.values())
    )
    c.propose(leader, [incident("before-kill", leader)])
    wait_until(
        lambda: all("before-kill" in incident_ids(c.committed(n)) for n in GATEWAYS),
        30,
        "the first incident committed everywhere",
        list(nodes.values()),
    )
    launcher = nodes[leader].proc.pid
    nodes[leader].kill_whole_node()
    assert not pid_alive(launcher), "the leader's node is still running"
    survivors = [n for n in GATEWAYS if n != leader]
    new = wait_until(
        lambda: (lead := agreed_leader(c, survivors)) not in (None, leader) and lead,
        60,
        "a new leader among the survivors",
        [nodes[n] for n in survivors],
    )
    assert new in survivors
    c.propose(survivors[0], [incident("after-kill", survivors[0])])
    wait_until(
        lambda: all("after-kill" in incident_ids(c.committed(n)) for n in survivors),
        30,
        "a write committed after the kill",
        [nodes[n] for n in survivors],
    )
    assert [(r["raft_index"], r["incident"]) for r in c.committed(survivors[0])] == [
        (r["raft_index"], r["incident"]) for r in c.committed(survivors[1])
    ]


def test_gateway_process_sigkill_is_reported_and_restarted_while_raft_runs_on(cluster: Any) -> None:
    c = cluster.make()
    nodes = {n: c.start(n) for n in GATEWAYS}
    wait_until(lambda: agreed_leader(c, list(GATEWAYS)), 60, "one agreed leader", list(nodes.values()))
    victim = nodes["gw-2"]
    started = wait_until(lambda: victim.named("peer_gateway_started"), 30, "gw-2's gateway", [victim])
    gateway_pid = int(started[-1]["pid"])
    replica_starts = len(victim.named("raft_replica_started"))
    os.kill(gateway_pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(gateway_pid), 10, "the gateway process to die", [victim])
    failed = wait_until(
        lambda: victim.named("child_failed", child="peer") or victim.named("child_crashed", child="peer"),
        30,
        "the gateway's death reported by its supervisor",
        [victim],
    )
    assert "GatewayExited" in json.dumps(failed[-1]) or "SIGKILL" in json.dumps(failed[-1])
    restarted = wait_until(
        lambda: [e for e in victim.named("peer_gateway_started") if int(e["pid"]) != gateway_pid],
        30,
        "a new gateway process",
        [victim],
    )
    assert pid_alive(int(restarted[-1]["pid"]))
    assert len(victim.named("raft_replica_started")) == replica_starts, "the replica was restarted too"
    c.propose("gw-2", [incident("through-new-gateway", "gw-2")])
    wait_until(
        lambda: all("through-new-gateway" in incident_ids(c.committed(n)) for n in GATEWAYS),
        30,
        "an incident proposed on gw-2 committed everywhere after the gateway restart",
        list(nodes.values()),
    )


FORWARD_OFFSET = "peer-gateway/forward_offset"


def port_refuses(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_edge_cut_off_keeps_sensing_and_a_durable_backlog_and_delivers_it_exactly_once(cluster: Any) -> None:
    """The edge runs its real sensors and inference, as shipped: with no gateway up it goes on sensing and
    detecting, its detections (and 5 incidents the test appends as well) wait in its own log, and once the
    gateways are up every one of them is committed exactly once."""
    c = cluster.make(edges=("edge-1",), sensing_edges=True)
    edge = c.start("edge-1")
    wait_until(lambda: edge.named("peer_gateway_started"), 30, "the edge's gateway", [edge])
    offline = [incident(f"offline-{k}", "edge-1") for k in range(5)]
    c.propose("edge-1", offline)
    planted = {i["incident_id"] for i in offline}

    def detections() -> list[str]:
        ids = [r.payload["incident_id"] for r in c.log("edge-1").read(PROPOSED_INCIDENTS)]
        return [i for i in ids if i not in planted]

    detected_offline = wait_until(
        detections, 90, "a detection of the edge's own inference while offline", [edge]
    )
    readings_before = c.log("edge-1").last_seq("readings")
    time.sleep(1.5)  # several forward rounds with nobody to forward to, and more readings
    # the cut really happened: no gateway listens, and the edge advanced nothing
    assert all(port_refuses(c.ports[g]) for g in GATEWAYS), "a gateway port answers"
    assert not edge.named("forward_target"), "the edge found a gateway to forward to"
    assert int(c.value("edge-1", FORWARD_OFFSET) or 0) == 0, "the backlog was advanced with no gateway up"
    # it keeps sensing while cut off: new readings, and its detections wait in the backlog
    assert c.log("edge-1").last_seq("readings") > readings_before, "the edge stopped sensing while cut off"
    assert edge.named("detection"), "the edge's inference logged no detection"
    waiting = 5 + len(detected_offline)
    assert [e for e in edge.named("edge_backlog") if int(e["backlog"]) >= 5], "the backlog went unreported"
    status = wait_until(lambda: c.status("edge-1"), 30, "the edge's status API", [edge])
    assert status["edge_backlog"] >= waiting, status
    assert all(p["state"] != "up" for p in status["peers"].values()), status["peers"]
    code, ready = c.get("edge-1", "/readyz") or (0, {})
    assert code == 503 and ready["ready"] is False and ready["reason"], (code, ready)
    gateways = [c.start(g) for g in GATEWAYS]
    everyone = [edge, *gateways]
    wait_until(lambda: agreed_leader(c, list(GATEWAYS)), 60, "one agreed leader", everyone)
    online = [incident(f"online-{k}", "edge-1") for k in range(5)]
    c.propose("edge-1", online)
    expected = {i["incident_id"] for i in offline + online} | set(detections())
    wait_until(
        lambda: all(expected <= set(incident_ids(c.committed(g))) for g in GATEWAYS),
        60,
        "the edge's backlog, its detections and new incidents committed on every gateway",
        everyone,
    )
    wait_until(lambda: (c.get("edge-1", "/readyz") or (0,))[0] == 200, 30, "the edge ready", [edge])
    wait_until(lambda: (c.status("edge-1") or {}).get("edge_backlog") == 0, 30, "the backlog drained", [edge])
    for g in GATEWAYS:
        ids = incident_ids(c.committed(g))
        assert len(ids) == len(set(ids)), f"{g}: an edge incident committed twice: {ids}"
        assert set(ids) <= expected | set(detections()), f"{g}: committed what the edge never proposed"
    assert edge.named("forward_target"), "the edge never logged whom it forwarded to"


def exposure_of(c: Cluster, name: str) -> dict[str, int]:
    from actors.crdt.codec import decode
    from actors.crdt.exposure import Exposure

    saved = c.value(name, f"crdt/{name}") or {}
    return decode(saved["state"], Exposure).value() if "state" in saved else {}


def reading(k: int, value: float) -> dict[str, Any]:
    return {"sensor": "S1", "pollutant": "co", "ts": 1_700_000_000.0 + k, "value": value, "unit": "ppm"}


def test_exposure_counters_converge_on_every_node_after_a_partition_heals(cluster: Any) -> None:
    """The edge reaches the gateways, and they reach it, only through fault proxies: the gateways' file
    advertises the edge at its proxy, and the edge's own copy of the topology (same nodes, certificates
    and keys) advertises each gateway at its proxy. Blackholing all three cuts the edge off both ways
    while every process keeps running (pausing a process instead could freeze the node's LMDB writer)."""
    from tests.harness.fault_proxy import FaultProxy

    c = cluster.make(gateways=("gw-1", "gw-2"), edges=("edge-1",))
    # drawn apart from the nodes' ports, which are not bound yet (see tests/harness/cluster.py)
    listen = free_loopback_ports(len(c.names), avoid={*c.ports.values(), *c.api_ports.values()})
    proxies = {
        n: FaultProxy(("127.0.0.1", c.ports[n]), listen_port=port).start()
        for n, port in zip(c.names, listen, strict=True)
    }
    try:
        city = yaml.safe_load(c.topology.read_text())
        edge_view = yaml.safe_load(c.topology.read_text())
        for node, mine in zip(city["nodes"], edge_view["nodes"], strict=True):
            if node["name"] == "edge-1":
                node["peer"] = f"127.0.0.1:{proxies['edge-1'].port}"  # how the gateways dial the edge
            else:
                mine["peer"] = f"127.0.0.1:{proxies[node['name']].port}"  # how the edge dials them
        c.topology.write_text(yaml.safe_dump(city))
        edge_file = c.tmp / "edge-view.yaml"  # next to the main file: same relative certs_dir
        edge_file.write_text(yaml.safe_dump(edge_view))
        nodes = {n: c.start(n, edge_file if n == "edge-1" else None) for n in c.names}
        everyone = list(nodes.values())
        log = c.log("edge-1")
        log.append("readings", [reading(k, 1.0) for k in range(10)])
        first = wait_until(
            lambda: (v := exposure_of(c, "edge-1")) and all(exposure_of(c, n) == v for n in c.names) and v,
            60,
            "the first readings counted on every node",
            everyone,
        )
        for proxy in proxies.values():
            proxy.blackhole()
        dropped = {n: sum(p.dropped.values()) for n, p in proxies.items()}
        log.append("readings", [reading(k, 2.0) for k in range(10, 20)])
        cut = wait_until(
            lambda: exposure_of(c, "edge-1") != first and exposure_of(c, "edge-1"),
            30,
            "the edge counting",
            everyone,
        )
        # the cut really hit traffic both ways: bytes to and from the edge were discarded
        wait_until(
            lambda: all(sum(p.dropped.values()) > dropped[n] for n, p in proxies.items()),
            30,
            "gossip and heartbeats dropped by every proxy",
            everyone,
        )
        time.sleep(1.5)  # several gossip rounds
        assert exposure_of(c, "gw-1") == first and exposure_of(c, "gw-2") == first, "gossip crossed the cut"
        for proxy in proxies.values():
            proxy.heal()
            proxy.cut()  # reset the blackholed connections: the links redial through the healed proxies
        wait_until(
            lambda: all(exposure_of(c, n) == exposure_of(c, "edge-1") for n in c.names),
            60,
            "every node converged to the same exposure after the heal",
            everyone,
        )
        assert exposure_of(c, "gw-1") == exposure_of(c, "edge-1") == exposure_of(c, "gw-2")
        assert exposure_of(c, "gw-1")["co"] >= cut["co"] > first["co"]
    finally:
        for proxy in proxies.values():
            proxy.stop()


def dispatched(c: Cluster, name: str) -> list[str]:
    """Incident ids in the node's file sink, in delivery order."""
    path = c.data_dir(name) / "incidents.jsonl"
    if not path.exists():
        return []
    return [json.loads(line)["incident"]["incident_id"] for line in path.read_text().splitlines() if line]


def test_committed_incidents_are_dispatched_once_cluster_wide_and_a_new_leader_resumes(cluster: Any) -> None:
    c = cluster.make()
    nodes = {n: c.start(n) for n in GATEWAYS}
    leader = wait_until(
        lambda: agreed_leader(c, list(GATEWAYS)), 60, "one agreed leader", list(nodes.values())
    )
    first = [incident(f"first-{k}", leader) for k in range(6)]
    c.propose(leader, first)
    wait_until(
        lambda: sorted(dispatched(c, leader)) == sorted(i["incident_id"] for i in first),
        60,
        "the leader's dispatcher delivering the first batch",
        list(nodes.values()),
    )
    # its progress is in the replicated log: every replica applied the mark
    wait_until(
        lambda: all(int(c.value(n, f"raft/{n}/dispatched") or 0) >= len(first) for n in GATEWAYS),
        30,
        "the dispatch mark applied on every replica",
        list(nodes.values()),
    )
    followers = [n for n in GATEWAYS if n != leader]
    assert all(dispatched(c, n) == [] for n in followers), "a follower's dispatcher delivered"
    nodes[leader].kill_whole_node()
    assert not pid_alive(nodes[leader].proc.pid)
    new = wait_until(
        lambda: (lead := agreed_leader(c, followers)) not in (None, leader) and lead,
        60,
        "a new leader among the survivors",
        [nodes[n] for n in followers],
    )
    second = [incident(f"second-{k}", new) for k in range(4)]
    c.propose(new, second)
    wait_until(
        lambda: sorted(dispatched(c, new)) == sorted(i["incident_id"] for i in second),
        60,
        "the new leader's dispatcher delivering what came after the mark",
        [nodes[n] for n in followers],
    )
    everywhere = [iid for n in GATEWAYS for iid in dispatched(c, n)]
    assert sorted(everywhere) == sorted(i["incident_id"] for i in first + second), "not once cluster-wide"


def test_a_node_down_past_the_log_retention_catches_up_by_a_chunked_snapshot(cluster: Any) -> None:
    c = cluster.make(snapshot_every=4)
    nodes = {n: c.start(n) for n in GATEWAYS}
    wait_until(lambda: agreed_leader(c, list(GATEWAYS)), 60, "one agreed leader", list(nodes.values()))
    session = nodes["gw-3"].session_id
    nodes["gw-3"].kill_whole_node()
    assert session and not pid_alive(nodes["gw-3"].proc.pid)
    wait_until(lambda: not processes_in_session(int(session)), 10, "every gw-3 process gone", [nodes["gw-3"]])
    # what gw-3 holds now; the entries after it are what it will need
    entries = c.log("gw-3").values_with_prefix("raft/gw-3/e/")
    needed = max((int(k.rsplit("/", 1)[1]) for k in entries), default=0) + 1
    # big incidents: the snapshot (every applied incident) is well over one 256 KiB raft frame, so it
    # crosses on the snapshot lane in chunks
    big = [{**incident(f"big-{k}", "gw-1"), "payload": {"blob": f"{k}" * 40_000}} for k in range(12)]
    c.propose("gw-1", big)
    expected = [i["incident_id"] for i in big]
    wait_until(
        lambda: all(sorted(incident_ids(c.committed(n))) == sorted(expected) for n in ("gw-1", "gw-2")),
        60,
        "the big incidents committed on the majority",
        [nodes["gw-1"], nodes["gw-2"]],
    )
    # the entries the down node lacks are compacted away on both: only a snapshot can bring it back
    wait_until(
        lambda: all(
            c.value(n, f"raft/{n}/snap") is not None and c.value(n, f"raft/{n}/e/{needed:020d}") is None
            for n in ("gw-1", "gw-2")
        ),
        30,
        f"entry {needed} compacted into a snapshot on the majority",
        [nodes["gw-1"], nodes["gw-2"]],
    )
    c.logs.pop("gw-3").close()  # gw-3's launcher takes its data dir's lock; our reader handle stays fine
    back = c.start("gw-3")
    wait_until(lambda: back.named("raft_snapshot_installed"), 60, "gw-3 installing a snapshot", [back])
    wait_until(
        lambda: sorted(incident_ids(c.committed("gw-3"))) == sorted(expected),
        60,
        "gw-3 caught up",
        [back],
    )
    logs = {n: [(r["raft_index"], r["incident"]) for r in c.committed(n)] for n in GATEWAYS}
    assert logs["gw-1"] == logs["gw-2"] and sorted(map(str, logs["gw-3"])) == sorted(map(str, logs["gw-1"]))


def shipped_city(tmp_path: Path) -> Path:
    """config/city.yaml as shipped, with only its addresses (free loopback ports) and directories (under
    ``tmp_path``) changed, so that the test runs next to anything else on the machine."""
    city = yaml.safe_load((REPO / "config" / "city.yaml").read_text())
    # every port in one draw: a draw per node could give a node's API the port another node's peer
    # listener got (each was free when drawn), which garrison up then refused as a duplicate address
    peer_ports, api_ports = free_peer_and_api_ports([node["name"] for node in city["nodes"]])
    for node in city["nodes"]:
        node["peer"] = f"127.0.0.1:{peer_ports[node['name']]}"
        node["api"] = f"127.0.0.1:{api_ports[node['name']]}"
        node["data_dir"] = str(tmp_path / "data" / node["name"])
    city["cluster"]["certs_dir"] = "certs"  # relative to the copy: created by `garrison up`
    path = tmp_path / "city.yaml"
    path.write_text(yaml.safe_dump(city))
    return path


def test_the_shipped_city_runs_as_one_cluster_under_garrison_up(tmp_path: Path) -> None:
    from supervisors.process_tree import descendants

    topology = shipped_city(tmp_path)
    up = subprocess.Popen(
        [sys.executable, "-m", "supervisors.cli", "up", str(topology), "--log-format", "json"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    events: list[dict[str, Any]] = []
    other: list[str] = []  # lines that are not JSON events (a traceback of `garrison up` itself)

    def read() -> None:
        assert up.stderr is not None
        for line in up.stderr:
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                other.append(line.rstrip())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    logs: dict[str, EventLog] = {}

    def log(name: str) -> EventLog:
        if name not in logs:
            logs[name] = EventLog(tmp_path / "data" / name / "eventlog")
        return logs[name]

    def named(event: str, **match: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in list(events)
            if e.get("event") == event and all(e.get(k) == v for k, v in match.items())
        ]

    def wait(condition: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if result := condition():
                return result
            time.sleep(0.2)
        tail = [e for e in events if e.get("level") in ("warning", "error")][-15:]
        seen = Counter(
            f"{e.get('node')}:{e.get('event')}" for e in events
        )  # what did happen, for a diagnosis
        raise AssertionError(
            f"timed out after {timeout}s waiting for {what}; warnings: {tail}; events: {seen}; "
            f"`garrison up` exit code: {up.poll()}; other output: {other[-30:]}"
        )

    gateways = ("gw-1", "gw-2", "gw-3")
    try:
        wait(lambda: len(named("peer_gateway_started")) >= 5, 90, "five peer gateways")
        assert named("node_keys_published"), "garrison up did not publish the nodes' keys"
        leader = wait(
            lambda: (
                (ls := {n: [e for e in named("raft_role", node=n)] for n in gateways})
                and all(ls.values())
                and len({ls[n][-1].get("leader") for n in gateways}) == 1
                and ls["gw-1"][-1].get("leader")
            ),
            90,
            "one agreed leader",
        )
        # a detection on an edge node (what its inference appends), forwarded, committed, dispatched once
        log("edge-2").append(PROPOSED_INCIDENTS, [incident("city-edge-2", "edge-2")])
        wait(
            lambda: all(
                "city-edge-2" in incident_ids([r.payload for r in log(g).read(COMMITTED_INCIDENTS)])
                for g in gateways
            ),
            90,
            "the edge's detection committed on every gateway",
        )
        wait(lambda: named("incident_dispatched", incident_id="city-edge-2"), 30, "the detection dispatched")
        time.sleep(1.0)  # room for a wrong second delivery to show
        delivered = named("incident_dispatched", incident_id="city-edge-2")
        assert [e["node"] for e in delivered] == [leader], delivered
        _check_city_api(topology, gateways, named, wait)
    finally:
        for handle in logs.values():
            handle.close()
        up.send_signal(signal.SIGTERM)
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            for pid in [up.pid, *descendants(up.pid)]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            up.wait()
        reader.join(timeout=5)
    assert named("up_stopped"), "garrison up did not stop cleanly"


def _http(address: str, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://{address}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=20) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _metric_samples(text: str, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        tuple(sorted(s.labels.items())): s.value
        for f in text_string_to_metric_families(text)
        if f.name == family
        for s in f.samples
    }


def _check_city_api(
    topology: Path,
    gateways: tuple[str, ...],
    named: Callable[..., list[dict[str, Any]]],
    wait: Callable[[Callable[[], Any], float, str], Any],
) -> None:
    """What an operator reads off the shipped city's API: each gateway's backlog back to 0 once what it was
    given is committed; an edge's status and scrapes asking nothing of a Raft replica it does not run (each
    such ask was a durable dead letter); every edge's inference latency in /metrics."""
    api = {n["name"]: n["api"] for n in yaml.safe_load(topology.read_text())["nodes"]}
    for g in gateways:  # something in every gateway's incidents/proposed
        code, text = _http(api[g], "POST", "/v1/incidents", incident(f"city-api-{g}", g))
        assert code == 201, (g, code, text)
    for g in gateways:
        wait(
            lambda g=g: json.loads(_http(api[g], "GET", "/v1/status")[1])["incidents_committed"] >= 4,
            30,
            f"all four incidents applied on {g}",
        )
        # back to 0, and the metric says the same: waited for, not read once, because the edges' live
        # detections keep arriving (one forwarded to this gateway a moment before is a backlog of 1 until
        # it is applied, which failed CI once)
        wait(
            lambda g=g: (
                json.loads(_http(api[g], "GET", "/v1/status")[1])["edge_backlog"] == 0
                and _metric_samples(_http(api[g], "GET", "/metrics")[1], "garrison_edge_backlog") == {(): 0}
            ),
            30,
            f"{g}'s backlog back to 0 in /v1/status and /metrics",
        )
    for _ in range(3):
        code, text = _http(api["edge-1"], "GET", "/v1/status")
        assert code == 200, text
        status = json.loads(text)
        assert status["raft"] is None and status["raft_error"] is None and status["replica"] is None, status
        assert _http(api["edge-1"], "GET", "/metrics")[0] == 200
    assert not named("message_dead_lettered", node="edge-1"), named("message_dead_lettered", node="edge-1")
    where = ["--topology", str(topology), "--node", "edge-1", "--replica", "root/incident-log"]
    asked = subprocess.run(  # on-call asking an edge for the replica gateways run
        [sys.executable, "-m", "supervisors.cli", "raft", "status", *where],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert asked.returncode == 3 and "runs no Raft replica" in asked.stderr, asked
    for edge in ("edge-1", "edge-2"):  # their simulated sensors feed their inference all the time
        latency = wait(
            lambda e=edge: _metric_samples(
                _http(api[e], "GET", "/metrics")[1], "garrison_inference_latency_seconds"
            ),
            60,
            f"{edge}'s inference latency in /metrics",
        )
        assert set(latency) == {
            (("actor", "root/inference"), ("quantile", q)) for q in ("0.5", "0.9", "0.99")
        }
        assert all(0 < seconds < 10 for seconds in latency.values()), latency


def test_a_taken_peer_port_is_logged_and_waited_for_without_a_crash_loop(cluster: Any) -> None:
    import socket

    c = cluster.make()
    squatter = socket.create_server(("127.0.0.1", c.ports["gw-3"]))  # not TLS, never accepts
    try:
        nodes = {n: c.start(n) for n in GATEWAYS}
        gw3 = nodes["gw-3"]
        failed = wait_until(
            lambda: gw3.named("peer_listen_failed"), 60, "gw-3's gateway finding its port taken", [gw3]
        )
        assert "Address already in use" in failed[0]["reason"]
        wait_until(
            lambda: agreed_leader(c, ["gw-1", "gw-2"]), 60, "a leader of the two others", list(nodes.values())
        )
        assert not gw3.named("child_crashed", child="peer"), "the gateway crash-looped instead of waiting"
        assert gw3.named("raft_replica_started"), "gw-3's replica is not running"
    finally:
        squatter.close()
    c.propose("gw-1", [incident("after-the-port-freed", "gw-1")])
    wait_until(
        lambda: "after-the-port-freed" in incident_ids(c.committed("gw-3")),
        60,
        "gw-3 joining once its port is free",
        list(nodes.values()),
    )


def test_a_sigkilled_replica_is_restarted_and_rejoins_through_the_gateway(cluster: Any) -> None:
    c = cluster.make()
    nodes = {n: c.start(n) for n in GATEWAYS}
    wait_until(lambda: agreed_leader(c, list(GATEWAYS)), 60, "one agreed leader", list(nodes.values()))
    victim = nodes["gw-1"]
    started = victim.named("child_started", child="incident-log")
    pid = int(started[-1]["pid"])
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid), 10, "the replica process to die", [victim])
    wait_until(
        lambda: victim.named("child_restarted", child="incident-log"), 30, "the replica restarted", [victim]
    )
    c.propose("gw-1", [incident("after-replica-kill", "gw-1")])  # proposed by the restarted replica
    wait_until(
        lambda: all("after-replica-kill" in incident_ids(c.committed(n)) for n in GATEWAYS),
        60,
        "a proposal of the restarted replica committed everywhere",
        list(nodes.values()),
    )
    assert len(victim.named("peer_gateway_started")) == 1, "the gateway was restarted with the replica"
