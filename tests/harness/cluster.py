"""A real cluster on loopback with a fault-injection proxy on every directed peer link (Jepsen's "net").

Each node is a `garrison run TOPOLOGY --node NAME` process. Every node gets its OWN topology file, equal to
the others except for the peer addresses of the other nodes: node X dials node Y at the port of the proxy
``(X, Y)``, which forwards to Y's real peer port (the one Y's own file gives it to listen on). Since every
node dials every peer on a connection of its own (supervisors/peer/links.py), each direction of each pair
of nodes crosses exactly one proxy, so ``partition(a, b)`` can cut any set of links without root, and the
fault really lands on the TLS bytes the nodes exchange (each proxy counts what it dropped).

Nemesis helpers: :meth:`Cluster.partition`, :meth:`heal`, :meth:`kill`, :meth:`pause` / :meth:`resume`,
:meth:`restart`; :meth:`leader` asks the nodes' HTTP API. Every process started is stopped by PID (the
launcher, then every process of the node's session) in :meth:`stop`. Node logs (JSON lines) go to
``<workdir>/logs/<node>.<n>.log`` for a post-mortem.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import yaml

from actors.raft.node_keys import load_or_create_signing_key, public_key_b64
from supervisors.certs import ensure_cluster_certs
from supervisors.thespian_env import free_loopback_ports, free_peer_and_api_ports, processes_in_session
from tests.harness.fault_proxy import FaultProxy

REPO = Path(__file__).resolve().parents[2]
GATEWAYS = ("gw-1", "gw-2", "gw-3")
SINK_FILE = "incidents.jsonl"  # each gateway's file sink, relative to its data_dir
# port 1 on loopback: nothing listens, every attempt is refused at once (a retryable failure)
STUCK_SINK = {"kind": "webhook", "name": "stuck", "url": "http://127.0.0.1:1/incidents", "timeout": 0.5}


class ClusterError(AssertionError):
    """The cluster did not reach a state a test waits for; the message carries the nodes' log tails."""


def gateway_tree(
    name: str,
    everyone: list[str],
    snapshot_every: int,
    consume_readings: bool = False,
    intensity: int = 50,  # the nemesis restarts children far faster than production intensities expect
    dispatch_batch: int | None = None,  # the dispatcher's items per batch (its default: 100)
    stuck_sink: bool = False,  # a second sink, a webhook nobody listens on: it never delivers
) -> dict[str, Any]:
    """config/city.yaml's gateway: Raft replica (cluster mode, publishing), peer gateway, CRDT, dispatch."""
    return {
        "id": "root",
        "strategy": "one_for_one",
        "intensity": intensity,
        "period": 10,
        "children": [
            {
                "id": "incident-log",
                "actor": "actors.raft.replica.RaftReplicaActor",
                "args": {"cluster": True, "publish": True, "snapshot_every": snapshot_every},
                "backoff": {"min": 0.3, "max": 2},
            },
            {
                "id": "peer",
                "actor": "supervisors.peer.shell.PeerGatewayActor",
                "args": {"replica": "root/incident-log"},
                "backoff": {"min": 0.2, "max": 2},
            },
            {
                "id": "exposure",
                "actor": "actors.crdt.replica.CrdtReplicaActor",
                "args": {
                    "replica": name,
                    "peers": everyone,
                    "consume_readings": consume_readings,
                    "gossip_interval": 0.3,
                },
            },
            {
                "id": "dispatch",
                "actor": "actors.dispatch.actor.DispatcherActor",
                "args": {
                    "cluster": True,
                    "sinks": [{"kind": "file", "path": SINK_FILE}, *([STUCK_SINK] if stuck_sink else [])],
                    **({"batch": dispatch_batch} if dispatch_batch is not None else {}),
                    # the stuck sink retries for the whole test instead of dead-lettering its head
                    **({"max_attempts": 1000, "backoff": {"base": 0.2, "cap": 1}} if stuck_sink else {}),
                },
            },
        ],
    }


def edge_tree(name: str, everyone: list[str], intensity: int = 50, sensing: bool = False) -> dict[str, Any]:
    """config/city.yaml's edge: no Raft replica, a peer gateway and a CRDT replica; with ``sensing``, also
    its simulated sensors and inference (as shipped), whose detections go to ``incidents/proposed``."""
    senses = [
        {
            "id": "sensors",
            "actor": "actors.pipeline.sensor.SimulatedSensorActor",
            "args": {"sensors": ["S1", "S2", "S3"], "seed": 7, "speedup": 300},
        },
        {
            "id": "inference",
            "actor": "actors.pipeline.inference.InferenceActor",
            "args": {"threshold": 0.85},
            "backoff": {"min": 0.2, "max": 10},
        },
    ]
    return {
        "id": "root",
        "strategy": "one_for_one",
        "intensity": intensity,
        "period": 10,
        "children": [
            *(senses if sensing else []),
            {
                "id": "peer",
                "actor": "supervisors.peer.shell.PeerGatewayActor",
                "args": {"replica": None},
                "backoff": {"min": 0.2, "max": 2},
            },
            {
                "id": "exposure",
                "actor": "actors.crdt.replica.CrdtReplicaActor",
                "args": {"replica": name, "peers": everyone, "gossip_interval": 0.3},
            },
        ],
    }


def _pid_state(pid: int) -> str | None:
    """The kernel's one-letter state of ``pid`` (T: stopped, Z: zombie); None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def pid_alive(pid: int) -> bool:
    return _pid_state(pid) not in (None, "Z")


class Node:
    """One node process; its stderr (structlog JSON lines) goes to a file, read back on demand."""

    def __init__(self, cluster: Cluster, name: str, generation: int) -> None:
        self.name = name
        self.log_path = cluster.workdir / "logs" / f"{name}.{generation}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "supervisors.cli", "run", str(cluster.topology_of(name)), "--node", name]
        with open(self.log_path, "wb") as err:
            self.proc = subprocess.Popen(
                [*cmd, "--log-format", "json", "--duration", "900"],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
        self.paused = False

    def events(self, name: str | None = None, **match: Any) -> list[dict[str, Any]]:
        out = []
        with contextlib.suppress(FileNotFoundError), open(self.log_path, errors="replace") as f:
            for line in f:
                if not line.startswith("{"):
                    continue
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line being written right now
                if (name is None or event.get("event") == name) and all(
                    event.get(k) == v for k, v in match.items()
                ):
                    out.append(event)
        return out

    def tail(self, lines: int = 20) -> str:
        with contextlib.suppress(FileNotFoundError):
            return "".join(self.log_path.read_text(errors="replace").splitlines(True)[-lines:])
        return ""

    def pids(self) -> list[int]:
        """The launcher and every process of the node's session (the Thespian admin's, which its actors and
        the peer gateway inherit)."""
        pids = [self.proc.pid] if self.proc.poll() is None else []
        for started in self.events("node_started"):
            if started.get("session"):
                pids += [p for p in processes_in_session(int(started["session"])) if p not in pids]
        return pids

    def signal_all(self, sig: int) -> list[int]:
        hit = []
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
                hit.append(pid)
        return hit

    def wait_started(self, timeout: float = 30.0) -> bool:
        """Until the node logged ``node_started`` (its session is known) or its launcher exited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.events("node_started") or self.proc.poll() is not None:
                return bool(self.events("node_started"))
            time.sleep(0.05)
        return False

    def kill(self) -> list[int]:
        """SIGKILL the launcher and its whole session; returns the pids that were signalled. A node still
        starting is first given time to say which session is its own, so none of its processes is missed."""
        if self.proc.poll() is None and not self.paused:
            self.wait_started()
        pids = self.pids()  # SIGKILL ends a stopped (paused) process too
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        for _ in range(50):  # anything its session forked meanwhile
            if not (left := [p for p in self.pids() if pid_alive(p)]):
                break
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        self.paused = False
        return pids


class Cluster:
    """N gateway nodes (Raft members) on loopback, plus optional edge nodes (no Raft replica; they forward
    their proposals), each peer link behind its own :class:`FaultProxy`. ``names`` are the gateways (what
    the leader, convergence and Jepsen helpers look at); ``everyone`` adds the edges."""

    def __init__(
        self,
        workdir: Path,
        gateways: tuple[str, ...] = GATEWAYS,
        *,
        edges: tuple[str, ...] = (),
        snapshot_every: int = 1000,
        heartbeat_ms: int = 100,
        seed: int = 0,
        consume_readings: bool = False,
        dispatch_batch: int | None = None,
        stuck_sink: bool = False,
    ) -> None:
        self.workdir = workdir
        self.dispatch_batch = dispatch_batch
        self.stuck_sink = stuck_sink
        self.names = list(gateways)
        self.edges = list(edges)
        self.everyone = [*self.names, *self.edges]
        self.snapshot_every = snapshot_every
        self.consume_readings = consume_readings  # each gateway's CRDT counts its node's `readings`
        self.ports, self.api_ports = free_peer_and_api_ports(self.everyone)  # the real peer ports
        links = [
            (i, src, j, dst)
            for i, src in enumerate(self.everyone)
            for j, dst in enumerate(self.everyone)
            if src != dst
        ]
        # the proxies' ports are drawn apart from the nodes' (not bound until the nodes start): a proxy
        # binding port 0 was once given a node's drawn peer port, and that node never listened
        listen = free_loopback_ports(len(links), avoid={*self.ports.values(), *self.api_ports.values()})
        self.proxies: dict[tuple[str, str], FaultProxy] = {}
        for (i, src, j, dst), port in zip(links, listen, strict=True):
            proxy = FaultProxy(("127.0.0.1", self.ports[dst]), listen_port=port, seed=seed * 100 + i * 10 + j)
            self.proxies[(src, dst)] = proxy.start()
        self.cut: set[tuple[str, str]] = set()  # directed links blackholed now
        self.slowed: set[tuple[str, str]] = set()  # directed links delayed now
        self.nodes: dict[str, Node] = {}
        self.generations: dict[str, int] = dict.fromkeys(self.everyone, 0)
        self.keys = {
            n: public_key_b64(load_or_create_signing_key(self.data_dir(n), n)) for n in self.everyone
        }
        ensure_cluster_certs(workdir / "certs", self.everyone)
        for name in self.everyone:
            self._write_topology(name, heartbeat_ms)

    # -- files ----------------------------------------------------------------------------------------

    def data_dir(self, name: str) -> Path:
        return self.workdir / "data" / name

    def topology_of(self, name: str) -> Path:
        return self.workdir / f"topology.{name}.yaml"

    def _write_topology(self, me: str, heartbeat_ms: int) -> None:
        def peer_port(node: str) -> int:
            return self.ports[node] if node == me else self.proxies[(me, node)].port

        nodes = [
            {
                "name": n,
                "role": "edge" if n in self.edges else "gateway",
                "peer": f"127.0.0.1:{peer_port(n)}",
                "api": f"127.0.0.1:{self.api_ports[n]}",
                "data_dir": str(self.data_dir(n)),
                "tree": (
                    edge_tree(n, self.everyone)
                    if n in self.edges
                    else gateway_tree(
                        n,
                        self.everyone,
                        self.snapshot_every,
                        self.consume_readings,
                        dispatch_batch=self.dispatch_batch,
                        stuck_sink=self.stuck_sink,
                    )
                ),
            }
            for n in self.everyone
        ]
        cluster = {
            "certs_dir": str(self.workdir / "certs"),
            "raft_members": self.names,
            "trusted_keys": self.keys,
            "heartbeat_ms": heartbeat_ms,
        }
        self.topology_of(me).write_text(yaml.safe_dump({"nodes": nodes, "cluster": cluster}))

    # -- life cycle -----------------------------------------------------------------------------------

    def start(self, names: Iterable[str] | None = None) -> Cluster:
        for name in names or self.everyone:
            self.generations[name] += 1
            self.nodes[name] = Node(self, name, self.generations[name])
        return self

    def stop(self) -> None:
        """Stop every node by PID (launcher + session) and every proxy; safe to call twice."""
        for node in self.nodes.values():
            node.kill()
        for proxy in self.proxies.values():
            proxy.stop()
        self.proxies.clear()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the nemesis ----------------------------------------------------------------------------------

    def partition(self, a: Iterable[str], b: Iterable[str]) -> list[tuple[str, str]]:
        """Blackhole every link between the sets ``a`` and ``b``, both directions; returns the links cut."""
        links = [(x, y) for x in a for y in b] + [(y, x) for x in a for y in b]
        for link in links:
            self.proxies[link].blackhole("both")
            self.cut.add(link)
        return links

    def isolate(self, name: str) -> list[tuple[str, str]]:
        return self.partition([name], [n for n in self.names if n != name])

    def links_of(self, name: str) -> list[tuple[str, str]]:
        """Every directed link from ``name`` to another node, then every one to it (edges included)."""
        others = [n for n in self.everyone if n != name]
        return [(name, n) for n in others] + [(n, name) for n in others]

    def slow(self, name: str, ms: float, jitter_ms: float) -> list[tuple[str, str]]:
        """Delay every byte to and from ``name`` by ``ms`` (+- ``jitter_ms``, order kept) until :meth:`heal`;
        returns the links slowed."""
        links = self.links_of(name)
        for link in links:
            self.proxies[link].delay(ms, jitter_ms)
            self.slowed.add(link)
        return links

    def heal(self) -> None:
        """Forward every link again; links that were blackholed are reset (their TLS streams lost bytes),
        so the nodes redial at once instead of waiting for a corrupt record. Slowed links lost nothing:
        they go on at full speed."""
        for link in sorted(self.cut):
            proxy = self.proxies[link]
            proxy.heal()
            proxy.cut()
        self.cut.clear()
        for link in sorted(self.slowed):
            self.proxies[link].heal()
        self.slowed.clear()

    def dropped(self, links: Iterable[tuple[str, str]]) -> int:
        """Bytes the proxies of ``links`` threw away: proof that a partition really hit traffic."""
        return sum(sum(self.proxies[link].dropped.values()) for link in links)

    def delayed(self, links: Iterable[tuple[str, str]]) -> int:
        """Bytes the proxies of ``links`` held back: proof that a delay really hit traffic."""
        return sum(sum(self.proxies[link].delayed.values()) for link in links)

    def kill(self, name: str) -> list[int]:
        """SIGKILL the whole node; returns its pids after checking every one of them is gone."""
        node = self.nodes[name]
        pids = node.kill()
        deadline = time.monotonic() + 10
        while (alive := [p for p in pids if pid_alive(p)]) and time.monotonic() < deadline:
            time.sleep(0.05)
        if alive:
            raise ClusterError(f"{name}: processes {alive} outlived SIGKILL")
        return pids

    def restart(self, name: str) -> Node:
        """Start ``name`` again on its data_dir (after :meth:`kill`)."""
        if self.nodes[name].proc.poll() is None:
            raise ClusterError(f"{name} is still running: kill it first")
        self.start([name])
        return self.nodes[name]

    def pause(self, name: str) -> list[int]:
        """SIGSTOP every process of the node; returns the pids, each seen in state T."""
        node = self.nodes[name]
        if not node.wait_started():
            raise ClusterError(f"{name} never logged node_started: cannot pause what is not running")
        pids = node.signal_all(signal.SIGSTOP)
        node.paused = True
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if all(_pid_state(p) in ("T", "t", None) for p in pids):
                return pids
            time.sleep(0.02)
        raise ClusterError(f"{name}: not every process stopped: {[(p, _pid_state(p)) for p in pids]}")

    def resume(self, name: str) -> None:
        node = self.nodes[name]
        node.signal_all(signal.SIGCONT)
        node.paused = False

    # -- the API --------------------------------------------------------------------------------------

    def url(self, name: str, path: str) -> str:
        return f"http://127.0.0.1:{self.api_ports[name]}{path}"

    def get(
        self, name: str, path: str, timeout: float = 3.0, refused: int = 0
    ) -> tuple[int, dict[str, Any] | None]:
        """(status, JSON body) of a GET; (0, None) when the node does not answer, (``refused``, None) when
        nothing listens on its port (the request reached no node)."""
        try:
            with urllib.request.urlopen(self.url(name, path), timeout=timeout) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            with contextlib.suppress(ValueError):
                return e.code, json.loads(e.read())
            return e.code, None
        except urllib.error.URLError as e:
            return (refused if isinstance(e.reason, ConnectionRefusedError) else 0), None
        except (OSError, ValueError):
            return 0, None

    def post(self, name: str, path: str, body: dict[str, Any], timeout: float) -> tuple[int, dict[str, Any]]:
        """(status, JSON body) of a POST; raises ConnectionRefusedError when nothing listens (the request
        reached no node) and another OSError (a timeout, a reset) when the outcome is unknown."""
        req = urllib.request.Request(
            self.url(name, path),
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            try:
                return e.code, json.loads(e.read())
            except ValueError:
                return e.code, {}
        except urllib.error.URLError as e:  # urllib wraps the socket error: unwrap a refused connect
            if isinstance(e.reason, ConnectionRefusedError):
                raise e.reason from None
            raise

    def status(self, name: str) -> dict[str, Any] | None:
        code, body = self.get(name, "/v1/status")
        return body if code == 200 else None

    def leader(self, among: Iterable[str] | None = None) -> str | None:
        """The leader a majority of ``among`` (default: running, unpaused nodes) names, if that node itself
        says it leads; else None."""
        names = [n for n in (among or self.names) if n in self.nodes and not self.nodes[n].paused]
        views: dict[str, str | None] = {}
        for n in names:
            raft = (self.status(n) or {}).get("raft") or {}
            views[n] = raft.get("leader") if raft.get("role") in ("leader", "follower") else None
        for candidate in {v for v in views.values() if v}:
            votes = sum(1 for v in views.values() if v == candidate)
            if votes * 2 > len(self.names) and views.get(candidate) == candidate:
                return candidate
        return None

    def log(self, name: str) -> list[tuple[int, str]] | None:
        """The node's committed log as (index, incident_id), read locally through its API (None: no answer)."""
        out: list[tuple[int, str]] = []
        after = 0
        while True:
            code, body = self.get(name, f"/v1/incidents?after={after}&limit=10000&consistency=local")
            if code != 200 or body is None:
                return None
            out += [(int(r["index"]), r["incident"]["incident_id"]) for r in body["incidents"]]
            if body.get("next_after") is None:
                return out
            after = int(body["next_after"])

    def dispatched(self, name: str) -> list[str]:
        """Incident ids in the node's file sink, in delivery order."""
        path = self.data_dir(name) / SINK_FILE
        if not path.exists():
            return []
        lines = path.read_text().splitlines()
        return [json.loads(line)["incident"]["incident_id"] for line in lines if line.strip()]

    # -- waiting --------------------------------------------------------------------------------------

    def wait(self, condition: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = condition()
            if result:
                return result
            time.sleep(0.2)
        tails = "\n".join(f"--- {n}\n{node.tail()}" for n, node in self.nodes.items())
        raise ClusterError(f"timed out after {timeout}s waiting for {what}\n{tails}")

    def wait_leader(self, timeout: float = 60, among: Iterable[str] | None = None) -> str:
        among = list(among) if among is not None else None
        leader: str = self.wait(lambda: self.leader(among), timeout, "one agreed leader")
        return leader

    def wait_converged(self, timeout: float = 60) -> list[tuple[int, str]]:
        """Wait until every node answers and all committed logs are identical; returns that log."""

        def same() -> list[tuple[int, str]] | None:
            logs = [self.log(n) for n in self.names]
            if any(log is None for log in logs) or any(log != logs[0] for log in logs):
                return None
            return logs[0] or [(0, "")]  # an empty log is converged too

        log: list[tuple[int, str]] = self.wait(same, timeout, "identical committed logs on every node")
        return [] if log == [(0, "")] else log


def incident(iid: str, source: str = "gw-1") -> dict[str, Any]:
    """A valid incident record (the seed schema)."""
    return {
        "incident_id": iid,
        "timestamp": 1_700_000_000.0,
        "type": "gas_leak",
        "source_node": source,
        "confidence": 0.97,
        "payload": {"pollutant": "co"},
        "sensor": "S1",
    }
