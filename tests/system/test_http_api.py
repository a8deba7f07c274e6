"""The node's HTTP API on a real node: a real launcher, a one-member Raft incident log in LMDB, the API
process (``python -m supervisors.peer.api``) on a free loopback port, real HTTP clients.

Every answer is checked against the node's event log itself (opened read-only-ish next to the live node),
not only against what the API says: a 201 means the incident is in ``incidents/committed`` at that index.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from actors import committed_index
from actors.eventlog import EventLog
from actors.streams import COMMITTED_INCIDENTS, PROPOSED_INCIDENTS
from supervisors.peer.api import MAX_BODY_BYTES
from supervisors.peer.metrics import FAMILIES
from supervisors.thespian_env import free_loopback_port
from tests.system.nodes import REPO, LiveNode, supervisor, worker

pytestmark = pytest.mark.system

REPLICA = "root/incident-log"


class Api:
    """The API process, stopped by its PID."""

    def __init__(self, topology: Path, node: str, port: int, extra: list[str] | None = None) -> None:
        cmd = [sys.executable, "-m", "supervisors.peer.api", "--topology", str(topology), "--node", node]
        cmd += extra or []
        self.log_path = topology.parent / "api.log"
        self.log_file = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=self.log_file,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        self.url = f"http://127.0.0.1:{port}"

    def wait_live(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the API process exited: {self.log_path.read_text()}"
            try:
                if httpx.get(self.url + "/livez", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError(f"the API did not answer /livez in {timeout}s: {self.log_path.read_text()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            code = self.proc.wait()
        self.log_file.close()
        return code

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out


class Cluster:
    def __init__(self, node: LiveNode, api: Api, data_dir: Path) -> None:
        self.node, self.api, self.data_dir = node, api, data_dir
        self.http = httpx.Client(base_url=api.url, timeout=30)

    def committed(self) -> list[dict[str, Any]]:
        log = EventLog(self.data_dir / "eventlog")
        try:
            return [r.payload for r in log.read(COMMITTED_INCIDENTS)]
        finally:
            log.close()


def incident(iid: str, **over: Any) -> dict[str, Any]:
    return {
        "incident_id": iid,
        "timestamp": 1_760_000_000.5,
        "type": "no2_leak",
        "source_node": "client",
        "sensor": "s-1",
        "confidence": 0.93,
        "payload": {"value": 412.0, "unit": "ug/m3", "location": {"lat": 45.1, "lon": 7.6}},
        **over,
    }


def write_node(
    tmp: Path, replica_args: dict[str, Any], extra_children: list[dict[str, Any]] | None = None
) -> tuple[Path, int]:
    """A one-node topology: a Raft replica (and nothing else) and an api address on a free loopback port."""
    port = free_loopback_port()
    replica = worker("incident-log", actor="actors.raft.replica.RaftReplicaActor", args=replica_args)
    tree = supervisor("root", [replica, *(extra_children or [])], intensity=20, period=10)
    topo = tmp / "topology.yaml"
    node_doc = {"name": "api-node", "data_dir": str(tmp / "data"), "api": f"127.0.0.1:{port}", "tree": tree}
    topo.write_text(yaml.safe_dump({"nodes": [node_doc]}))
    return topo, port


@contextlib.contextmanager
def running(
    tmp: Path,
    replica_args: dict[str, Any],
    api_args: list[str] | None = None,
    leader: bool = True,
    extra_children: list[dict[str, Any]] | None = None,
) -> Iterator[Cluster]:
    topo, port = write_node(tmp, replica_args, extra_children)
    node = LiveNode(topo)
    api = None
    try:
        if leader:
            node.wait_for("raft_role", role="leader", timeout=30)
        else:
            node.wait_for("raft_replica_started", timeout=30)
        api = Api(topo, "api-node", port, api_args)
        api.wait_live()
        yield Cluster(node, api, tmp / "data")
    finally:
        if api is not None:
            assert api.stop() == 0
        assert node.stop() == 0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running(tmp_path_factory.mktemp("http_api"), {"publish": True}) as c:  # a one-member Raft log
        yield c


def test_post_commits_then_the_same_id_answers_200_with_the_original_index(cluster: Cluster) -> None:
    first = cluster.http.post("/v1/incidents", json=incident("dup-1"))
    assert first.status_code == 201, first.text
    index = first.json()["index"]
    # really committed, at that index, in the node's own log
    at = {r["index"]: r["incident"] for r in cluster.committed()}
    assert at[index]["incident_id"] == "dup-1"
    assert at[index]["payload"]["location"] == {"lat": 45.1, "lon": 7.6}
    again = cluster.http.post("/v1/incidents", json=incident("dup-1", confidence=0.5))
    assert again.status_code == 200, again.text
    assert again.json()["index"] == index
    assert [r["incident"]["incident_id"] for r in cluster.committed()].count("dup-1") == 1
    # an absent sensor is accepted and stored as "" (every consumer of the log reads one)
    no_sensor = {k: v for k, v in incident("no-sensor-1").items() if k != "sensor"}
    answer = cluster.http.post("/v1/incidents", json=no_sensor)
    assert answer.status_code == 201, answer.text
    assert {r["index"]: r["incident"] for r in cluster.committed()}[answer.json()["index"]]["sensor"] == ""


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (json.dumps({k: v for k, v in incident("bad-1").items() if k != "type"}), "`type`"),
        (json.dumps(incident("bad-2", confidence="high")), "$.confidence"),
        (json.dumps(incident("bad-3", timestamp=True)), "$.timestamp"),
        (json.dumps(incident("bad-4")).replace("0.93", "NaN"), "$.confidence"),
        (json.dumps(incident("bad-5", payload={"v": 1})).replace('"v": 1', '"v": Infinity'), "$.payload.v"),
        (json.dumps(incident("bad-6", extra=1)), "`extra`"),
        (json.dumps(incident("x" * 300)), "$.incident_id"),
        (json.dumps(incident("a/b")), "$.incident_id"),
        (json.dumps(incident("bad-7", payload={"blob": "x" * (MAX_BODY_BYTES + 10)})), "more than"),
        ("{not json", "not JSON"),
        ("[1, 2]", "expected an object"),
    ],
)
def test_a_bad_body_is_400_naming_what_is_wrong_and_nothing_is_proposed(
    cluster: Cluster, body: str, named: str
) -> None:
    log = EventLog(cluster.data_dir / "eventlog")
    try:
        before = log.last_seq(PROPOSED_INCIDENTS)
        answer = cluster.http.post(
            "/v1/incidents", content=body, headers={"Content-Type": "application/json"}
        )
        after = log.last_seq(PROPOSED_INCIDENTS)
    finally:
        log.close()
    assert answer.status_code == 400, answer.text
    assert named in answer.json()["error"]
    assert after == before  # refused at the door: nothing reached the log


def test_get_pages_with_after_limit_and_next_after(cluster: Cluster) -> None:
    for i in range(5):
        assert cluster.http.post("/v1/incidents", json=incident(f"page-{i}")).status_code == 201
    committed = cluster.committed()
    head = committed[-1]["index"]
    seen: list[dict[str, Any]] = []
    after: int | None = 0
    pages = 0
    while after is not None:
        page = cluster.http.get("/v1/incidents", params={"after": after, "limit": 2}).json()
        assert page["commit_index"] >= head
        assert len(page["incidents"]) <= 2
        seen += page["incidents"]
        after = page["next_after"]
        pages += 1
    assert pages == (head + 1) // 2
    # every committed incident exactly once, in log order, as the node's own log has them
    assert [r["index"] for r in seen] == [r["index"] for r in committed] == list(range(1, head + 1))
    assert [r["incident"] for r in seen] == [r["incident"] for r in committed]
    assert cluster.http.get("/v1/incidents", params={"after": head}).json() == {
        "incidents": [],
        "commit_index": head,
        "next_after": None,
    }
    for params in (
        {"after": -1},
        {"limit": 0},
        {"limit": 10_001},
        {"after": "x"},
        {"consistency": "eventual"},
    ):
        assert cluster.http.get("/v1/incidents", params=params).status_code == 400


def test_linearizable_read_goes_through_read_index_and_sees_every_acknowledged_write(
    cluster: Cluster,
) -> None:
    answer = cluster.http.post("/v1/incidents", json=incident("lin-1"))
    assert answer.status_code == 201
    page = cluster.http.get(
        "/v1/incidents", params={"after": answer.json()["index"] - 1, "consistency": "linearizable"}
    )
    assert page.status_code == 200, page.text
    assert page.json()["incidents"][0]["incident"]["incident_id"] == "lin-1"
    reads = _metric(cluster, "garrison_reads", consistency="linearizable", outcome="ok")
    assert reads >= 1


def test_livez_readyz_and_status(cluster: Cluster) -> None:
    assert cluster.http.get("/livez").json() == {"live": True}
    ready = cluster.http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True, ready.text
    status = cluster.http.get("/v1/status").json()
    assert status["node"] == "api-node"
    launcher = cluster.node.wait_for("node_started")[0]
    assert status["pid"] == cluster.node.proc.pid  # the launcher: killing its tree takes the node down
    assert launcher["session"]  # (and it is the process the node's session hangs from)
    raft = status["raft"]
    assert raft["role"] == "leader" and raft["leader"] and raft["term"] >= 1
    assert raft["applied"] == raft["commit"] >= 1
    assert status["peers"] == {}
    children = {c["id"]: c for c in status["tree"]["children"]}
    assert children["incident-log"]["status"] == "running"
    assert children["incident-log"]["restarts_total"] == 0
    assert status["edge_backlog"] == 0
    assert status["incidents_committed"] == len(cluster.committed())


def _scrape(cluster: Cluster) -> dict[str, Any]:
    text = cluster.http.get("/metrics").text
    return {f.name: f for f in text_string_to_metric_families(text)}


def _metric(cluster: Cluster, family: str, **labels: str) -> float:
    for sample in _scrape(cluster)[family].samples:
        if sample.name.endswith("_total") and all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    raise AssertionError(f"no {family} sample with {labels}")


def test_metrics_parse_and_hold_the_named_families(cluster: Cluster) -> None:
    # an incident whose reading was ingested just now (as the MQTT bridge stamps it): ingest -> committed
    ingested = incident("metrics-1", payload={"ingested_at": time.time()})
    assert cluster.http.post("/v1/incidents", json=ingested).status_code == 201
    families = _scrape(cluster)
    assert set(FAMILIES) <= set(families), set(FAMILIES) - set(families)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples
    }
    assert samples[("garrison_proposals_total", (("outcome", "committed"),))] >= 1
    assert samples[("garrison_raft_role", (("role", "leader"),))] == 1
    assert samples[("garrison_raft_apply_lag", ())] == 0
    assert samples[("garrison_incidents_committed", ())] == len(cluster.committed())
    assert samples[("garrison_restarts_total", (("child", "root/incident-log"), ("reason", "none")))] == 0
    assert samples[("garrison_edge_backlog", ())] == 0
    assert 0 <= samples[("garrison_ingest_to_commit_seconds", (("quantile", "0.5"),))] < 60


def test_a_burst_of_16_concurrent_clients_commits_every_incident_exactly_once(cluster: Cluster) -> None:
    ids = [f"burst-{c}-{i}" for c in range(16) for i in range(8)]

    async def client(session: aiohttp.ClientSession, mine: list[str]) -> list[tuple[str, int, int]]:
        out = []
        for iid in mine:
            async with session.post(cluster.api.url + "/v1/incidents", json=incident(iid)) as resp:
                out.append((iid, resp.status, (await resp.json())["index"]))
        return out

    async def burst() -> list[tuple[str, int, int]]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            # each client also re-sends another client's first id: concurrent duplicates are answered once
            parts = [client(session, [*ids[c * 8 : (c + 1) * 8], ids[(c + 1) % 16 * 8]]) for c in range(16)]
            return [r for part in await asyncio.gather(*parts) for r in part]

    answers = asyncio.run(burst())
    assert {status for _, status, _ in answers} <= {200, 201}
    index_of: dict[str, int] = {}
    for iid, _status, index in answers:
        assert index_of.setdefault(iid, index) == index  # every answer for one id names the same index
    assert sum(1 for _, status, _ in answers if status == 201) == len(ids)  # exactly one 201 per id
    committed = [r for r in cluster.committed() if r["incident"]["incident_id"].startswith("burst-")]
    assert sorted(r["incident"]["incident_id"] for r in committed) == sorted(ids)  # once each, none lost
    assert {r["incident"]["incident_id"]: r["index"] for r in committed} == index_of


def _proposed(data_dir: Path) -> list[str]:
    log = EventLog(data_dir / "eventlog")
    try:
        return [r.payload["incident_id"] for r in log.read(PROPOSED_INCIDENTS)]
    finally:
        log.close()


def test_without_a_leader_a_post_is_503_with_retry_after_and_definitely_not_appended(tmp_path: Path) -> None:
    # a replica of a three-member group whose two peers do not exist: it can never be elected
    args = {"publish": True, "peers": ["incident-log", "ghost-a", "ghost-b"]}
    with running(tmp_path, args, leader=False) as c:
        status = c.http.get("/v1/status").json()
        assert status["raft"]["leader"] is None and status["raft"]["role"] != "leader"  # the fault is real
        assert not c.node.named("raft_role", role="leader")
        answer = c.http.post("/v1/incidents", json=incident("no-leader-1"))
        assert answer.status_code == 503, answer.text
        assert int(answer.headers["Retry-After"]) >= 1
        assert answer.json()["appended"] is False
        assert "no Raft leader" in answer.json()["error"]
        assert "no-leader-1" not in _proposed(c.data_dir)  # 503 means it was not appended: checked on disk
        ready = c.http.get("/readyz")
        assert ready.status_code == 503 and "no Raft leader" in ready.json()["reason"]
        read = c.http.get("/v1/incidents", params={"consistency": "linearizable"})
        assert read.status_code == 503  # never a possibly stale answer
        assert c.http.get("/v1/incidents").status_code == 200  # a local read still answers


def test_a_paused_replica_makes_a_post_504_and_the_retry_with_the_same_id_is_safe(tmp_path: Path) -> None:
    # the leader seen by the first POST is trusted for 60 s, so the second is appended without asking the
    # (then paused) replica: its outcome is unknown, which is what 504 says
    api_args = ["--commit-timeout", "2", "--leader-cache", "60"]
    with running(tmp_path, {"publish": True}, api_args) as c:
        assert c.http.post("/v1/incidents", json=incident("before-pause")).status_code == 201
        replica = c.node.pid_of("root", "incident-log")
        os.kill(replica, signal.SIGSTOP)
        try:
            c.node.wait_until(lambda: _proc_state(replica) == "T", 10, "the replica stopped")  # really paused
            answer = c.http.post("/v1/incidents", json=incident("paused-1"))
            assert answer.status_code == 504, answer.text
            assert "retry with the same incident_id" in answer.json()["error"]
            assert "paused-1" in _proposed(c.data_dir)  # appended durably...
            assert "paused-1" not in [r["incident"]["incident_id"] for r in c.committed()]  # ...not committed
        finally:
            os.kill(replica, signal.SIGCONT)
        c.node.wait_until(
            lambda: "paused-1" in [r["incident"]["incident_id"] for r in c.committed()],
            30,
            "paused-1 committed",
        )
        retry = c.http.post("/v1/incidents", json=incident("paused-1"))
        assert retry.status_code == 200, retry.text
        ids = [r["incident"]["incident_id"] for r in c.committed()]
        assert ids.count("paused-1") == 1
        assert retry.json()["index"] == next(
            r["index"] for r in c.committed() if r["incident"]["incident_id"] == "paused-1"
        )
        assert _metric(c, "garrison_proposals", outcome="timeout") == 1


def test_a_log_from_before_the_committed_index_is_indexed_and_repeats_keep_their_index(
    tmp_path: Path,
) -> None:
    ids = [f"old-{i}" for i in range(5)]
    with running(tmp_path, {"publish": True}) as c:
        indexes = {}
        for iid in ids:
            answer = c.http.post("/v1/incidents", json=incident(iid))
            assert answer.status_code == 201, answer.text
            indexes[iid] = answer.json()["index"]
    # the node is stopped: make its log what an older garrison left (records, no index, no mark)
    log = EventLog(tmp_path / "data" / "eventlog")
    try:
        assert all(committed_index.lookup(log, iid) == indexes[iid] for iid in ids)  # written with them
        with log.batch() as batch:
            for iid in ids:
                batch.delete_value(committed_index.PREFIX + iid)
            batch.delete_value(committed_index.COMPLETE_KEY)
            batch.delete_value(committed_index.PROGRESS_KEY)
        assert not committed_index.complete(log) and committed_index.lookup(log, ids[0]) is None  # really
    finally:
        log.close()
    with running(tmp_path, {"publish": True}) as c:  # the same data_dir, started again
        (built,) = c.node.wait_for("committed_index_built", timeout=30)
        assert built["records"] == len(ids)
        for iid in ids:
            again = c.http.post("/v1/incidents", json=incident(iid))
            assert again.status_code == 200, again.text
            assert again.json()["index"] == indexes[iid]
        assert [r["incident"]["incident_id"] for r in c.committed()] == ids  # nothing appended again


def _proc_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_linearizable_read_when_a_sibling_replica_leads_and_the_publisher_follows(tmp_path: Path) -> None:
    # three replicas in one node (as config/raft-3.yaml); incident-log publishes. Kill it while it leads
    # until a sibling leads: then the publisher is a follower and ReadIndex must go through the leader.
    peers = ["incident-log", "gw2", "gw3"]
    siblings = [
        worker(r, actor="actors.raft.replica.RaftReplicaActor", args={"peers": peers, "publish": False})
        for r in ("gw2", "gw3")
    ]
    with running(tmp_path, {"peers": peers, "publish": True}, leader=True, extra_children=siblings) as c:
        leader = None
        for _ in range(6):
            leader = c.node.wait_until(
                lambda: c.http.get("/v1/status").json()["raft"]["leader"], 30, "a leader"
            )
            if leader != "incident-log":
                break
            os.kill(c.node.pid_of("root", "incident-log"), signal.SIGKILL)
            c.node.wait_for("child_restarted", supervisor="root", child="incident-log", timeout=30)
            time.sleep(1.0)  # let the election after the kill settle before looking again
        raft = c.http.get("/v1/status").json()["raft"]
        assert raft["leader"] in ("gw2", "gw3") and raft["role"] == "follower", raft  # the fault is real
        answer = c.http.post("/v1/incidents", json=incident("via-follower-1"))
        assert answer.status_code == 201, answer.text
        page = c.http.get(
            "/v1/incidents", params={"after": answer.json()["index"] - 1, "consistency": "linearizable"}
        )
        assert page.status_code == 200, page.text
        assert page.json()["incidents"][0]["incident"]["incident_id"] == "via-follower-1"
        assert c.http.get("/v1/status").json()["raft"]["role"] == "follower"  # still served by a follower
