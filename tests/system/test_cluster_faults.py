"""Cluster fault scenarios on real processes (issue 9, Proof): a minority partition, a node cut off past the
log's retention, and hostile peers against a running cluster.

Every node is a `garrison run` process; every peer link crosses a fault proxy (tests/harness/cluster.py).
Each fault is first checked to have landed (the proxy dropped bytes, the node lost its leader, the
attacker's connection really reached the node and was refused in its log) before survival is asserted.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.eventlog import EventLog
from actors.streams import PROPOSED_INCIDENTS
from supervisors.certs import ensure_cluster_certs, issue_node_cert, node_files
from supervisors.peer.frames import HEADER, Heartbeat, Lane, encode_frame
from tests.harness.cluster import Cluster, incident

pytestmark = [pytest.mark.system, pytest.mark.timeout(240)]


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Any]:
    made: list[Cluster] = []

    def make(**kwargs: Any) -> Cluster:
        c = Cluster(tmp_path / f"c{len(made)}", **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


@contextlib.contextmanager
def event_log(c: Cluster, name: str) -> Iterator[EventLog]:
    """The node's event log opened briefly by this process (LMDB: one handle per process), next to the node."""
    log = EventLog(c.data_dir(name) / "eventlog")
    try:
        yield log
    finally:
        log.close()


def reading(k: int, value: float) -> dict[str, Any]:
    return {"sensor": "S1", "pollutant": "co", "ts": 1_700_000_000.0 + k, "value": value, "unit": "ppm"}


def post(c: Cluster, name: str, iid: str) -> tuple[int, dict[str, Any]]:
    return c.post(name, "/v1/incidents", incident(iid, name), timeout=20)


def crdt(c: Cluster, name: str) -> dict[str, float] | None:
    """The exposure values of the node's own CRDT replica (merged with what gossip brought it)."""
    status = c.status(name)
    return status["crdt"].get(name) if status else None


def test_minority_answers_503_while_the_majority_commits_and_all_converge_after_heal(
    make_cluster: Any,
) -> None:
    c = make_cluster(consume_readings=True)
    c.start()
    leader = c.wait_leader(90)
    minority = next(n for n in c.names if n != leader)
    majority = [n for n in c.names if n != minority]
    for i, name in enumerate(c.names):  # every node counts its own readings before the cut
        with event_log(c, name) as log:
            log.append("readings", [reading(k, 1.0 + i) for k in range(5)])
    before = c.wait(
        lambda: (v := crdt(c, minority)) and all(crdt(c, n) == v for n in c.names) and v,
        60,
        "the first readings' exposure on every node",
    )
    links = c.isolate(minority)
    # the fault landed: bytes dropped on the cut links, and the minority node itself lost its leader
    c.wait(lambda: c.dropped(links) > 0, 10, "the proxies to drop the minority's traffic")
    c.wait(
        lambda: ((c.status(minority) or {}).get("raft") or {}).get("leader", "?") is None,
        30,
        f"{minority} to lose its leader",
    )
    code, body = post(c, minority, "on-the-minority")
    assert code == 503, (code, body)
    assert body.get("appended") is False, body
    with event_log(c, minority) as log:
        proposed = [r.payload.get("incident_id") for r in log.read(PROPOSED_INCIDENTS)]
    assert "on-the-minority" not in proposed, "a 503 was answered but the incident was appended"
    committed = []
    for k in range(6):
        name = majority[k % 2]
        code, body = post(c, name, f"majority-{k}")
        assert code == 201, (name, code, body)
        committed.append(f"majority-{k}")
    # the minority keeps counting readings while cut off: its CRDT diverges until the heal
    with event_log(c, minority) as log:
        log.append("readings", [reading(k, 5.0) for k in range(10, 15)])
    c.wait(lambda: crdt(c, minority) != before, 30, "the minority counting while cut off")
    time.sleep(1.0)  # several gossip rounds: none can cross the cut
    assert all(crdt(c, n) == before for n in majority), "gossip crossed the partition"
    assert c.leader(majority) == leader, "the majority changed leader although it kept its quorum"
    c.heal()
    final = c.wait_converged(60)
    ids = [iid for _, iid in final]
    assert sorted(ids) == sorted(committed), (
        f"the converged log is not exactly the acknowledged incidents: {ids}"
    )
    assert len(set(ids)) == len(ids)
    values = c.wait(
        lambda: (v := crdt(c, minority)) != before and all(crdt(c, n) == v for n in c.names) and v,
        60,
        "identical exposure values on every node after the heal",
    )
    assert values["co"] > before["co"], (values, before)
    # dispatched once cluster-wide (the leader never changed, so not even a retry of an in-flight one)
    sinks = c.wait(
        lambda: (d := [i for n in c.names for i in c.dispatched(n)]) and len(d) >= len(committed) and d,
        60,
        "every committed incident dispatched",
    )
    assert Counter(sinks) == Counter(committed), f"not dispatched exactly once: {Counter(sinks)}"
    assert c.dispatched(minority) == [], "the minority's dispatcher delivered"
    assert c.nodes[minority].events("peer_disconnected"), "the minority never saw its links go down"


@pytest.mark.parametrize("fault", ["partitioned", "killed"])
def test_a_node_away_past_the_log_retention_catches_up_by_snapshot_over_the_links(
    make_cluster: Any, fault: str
) -> None:
    """A follower cut off by the proxies (alive, its log intact but behind) or SIGKILLed and restarted later:
    either way the entries it lacks are compacted on the majority, so it must install a snapshot, which can
    only reach it over the peer links (through the proxies)."""
    c = make_cluster(snapshot_every=4)
    c.start()
    leader = c.wait_leader(90)
    behind = next(n for n in c.names if n != leader)
    code, _ = post(c, leader, "before-cut")
    assert code == 201
    c.wait(lambda: "before-cut" in [i for _, i in c.log(behind) or []], 30, f"{behind} in step first")
    if fault == "partitioned":
        links = c.isolate(behind)
        c.wait(lambda: c.dropped(links) > 0, 10, "the cut to drop traffic")
    else:
        gone = c.kill(behind)  # raises unless every process of the node is gone
        assert gone, "nothing was killed"
    expected = ["before-cut"]
    for k in range(14):
        code, body = post(c, leader, f"while-away-{k}")
        assert code == 201, (code, body)
        expected.append(f"while-away-{k}")
    # the entries the node lacks are compacted away on the majority: only a snapshot can bring it back
    with event_log(c, behind) as log:
        have = max((int(k.rsplit("/", 1)[1]) for k in log.values_with_prefix(f"raft/{behind}/e/")), default=0)

    def compacted() -> bool:
        for n in c.names:
            if n == behind:
                continue
            with event_log(c, n) as log:
                if log.get_value(f"raft/{n}/snap") is None or log.get_value(f"raft/{n}/e/{have + 1:020d}"):
                    return False
        return True

    c.wait(compacted, 30, f"entry {have + 1} compacted into a snapshot on the majority")
    assert not c.nodes[behind].events("raft_snapshot_installed"), "a snapshot reached the node while away"
    carried = c.proxies[(leader, behind)].forwarded["to_target"]
    if fault == "partitioned":
        c.heal()
    else:
        c.restart(behind)
    c.wait(lambda: c.nodes[behind].events("raft_snapshot_installed"), 60, f"{behind} installing a snapshot")
    final = c.wait_converged(60)
    assert sorted(i for _, i in final) == sorted(expected)
    # it came as a file (actors/raft/snapshot_file.py): streamed from the leader's spool, never one message
    installed = c.nodes[behind].events("raft_snapshot_installed")[0]
    assert installed.get("pieces", 0) >= 1 and installed["incidents"] >= have, installed
    assert c.nodes[behind].events("snapshot_received") and c.nodes[leader].events("snapshot_sending")
    spool = c.data_dir(behind) / "snapshots"
    assert not list(spool.iterdir()), f"snapshot files left behind: {list(spool.iterdir())}"
    assert c.proxies[(leader, behind)].forwarded["to_target"] > carried, "nothing crossed the leader's link"


# -- hostile peers --------------------------------------------------------------------------------------


def tls_dial(port: int, files: Any, timeout: float = 5.0) -> ssl.SSLSocket:
    """An mTLS client presenting ``files``' certificate; it does not check the server (an attacker)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(files.cert, files.key)
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return ctx.wrap_socket(raw, server_hostname="gw-1.garrison")


def closed_by_peer(sock: socket.socket, timeout: float = 10.0) -> bool:
    """True once the other side closed or reset the connection (reads EOF or an error) within ``timeout``."""
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(4096):
                return True
    except (ssl.SSLError, ConnectionError, OSError) as exc:
        return not isinstance(exc, TimeoutError)


def refused_since(c: Cluster, name: str, seen: int, event: str = "peer_refused") -> list[dict[str, Any]]:
    return c.nodes[name].events(event)[seen:]


def test_bad_peers_are_refused_and_logged_while_the_cluster_keeps_committing(
    make_cluster: Any, tmp_path: Path
) -> None:
    c = make_cluster()
    c.start()
    leader = c.wait_leader(90)
    target = leader  # attack the leader's real peer port: the node that matters most
    port = c.ports[target]
    node = c.nodes[target]
    assert post(c, leader, "before-attacks")[0] == 201

    # 1. a certificate from another CA, with a member's name
    other = tmp_path / "other-ca"
    ensure_cluster_certs(other, ["gw-2"])
    seen = len(node.events("peer_refused"))
    try:
        with tls_dial(port, node_files(other, "gw-2")) as s:
            s.sendall(encode_frame(Heartbeat(seq=1, sent_ns=1)))
            assert closed_by_peer(s)
    except OSError:  # ssl.SSLError too: TLS 1.2 refuses during the handshake, 1.3 on the first read
        pass
    foreign = c.wait(lambda: refused_since(c, target, seen), 10, "the foreign-CA client refused and logged")
    assert foreign[0]["names"] == [], foreign  # refused in the handshake: no identity was accepted

    # 2. a valid certificate of the cluster's CA whose name is not in the topology
    stranger = issue_node_cert(c.workdir / "certs", "mallory")
    seen = len(node.events("peer_refused"))
    with tls_dial(port, stranger) as s:  # the handshake succeeds: the CA signed it
        assert closed_by_peer(s), "a certificate for a node outside the topology was kept connected"
    named = c.wait(lambda: refused_since(c, target, seen), 10, "the unknown name refused and logged")
    assert "mallory.garrison" in json.dumps(named[0]["names"]), named

    # 3. plain TCP speaking something else
    seen = len(node.events("peer_refused"))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert closed_by_peer(s)
    c.wait(lambda: refused_since(c, target, seen), 10, "the plain-TCP client refused and logged")

    # 4 and 5. an authenticated member (its real certificate) sending garbage, then an oversized frame
    member = next(n for n in c.names if n != target)
    files = node_files(c.workdir / "certs", member)
    frames_seen = len(node.events("frame_refused"))
    with tls_dial(port, files) as s:
        s.sendall(HEADER.pack(9, Lane.RAFT) + b"\xc1" * 8)  # 0xc1 is never valid msgpack
        assert closed_by_peer(s), "a garbage frame did not close the connection"
    garbage = c.wait(lambda: refused_since(c, target, frames_seen, "frame_refused"), 10, "garbage refused")
    assert garbage[0]["peer"] == member and garbage[0]["action"] == "closed", garbage
    assert "malformed RAFT body" in garbage[0]["reason"], garbage
    frames_seen = len(node.events("frame_refused"))
    with tls_dial(port, files) as s:
        s.sendall(struct.pack(">IB", (1 << 31), Lane.SNAPSHOT))  # 2 GiB announced: never buffered
        assert closed_by_peer(s), "an oversized frame did not close the connection"
    big = c.wait(lambda: refused_since(c, target, frames_seen, "frame_refused"), 10, "oversized refused")
    assert big[0]["action"] == "closed" and "exceeds max_frame" in big[0]["reason"], big

    # the cluster is unaffected: it commits through every node and the logs stay identical
    # (the garbage was sent with a member's own certificate, as that member: the node drops the link it
    # had from that member, so a follower may miss heartbeats for a moment and answer 503 — definitely not
    # appended, so retrying is safe — until the member has redialled)
    for name in c.names:
        deadline = time.monotonic() + 30
        code, body = post(c, name, f"after-attacks-{name}")
        while code == 503 and time.monotonic() < deadline:
            time.sleep(0.5)
            code, body = post(c, name, f"after-attacks-{name}")
        assert code == 201, (name, code, body)
    final = c.wait_converged(60)
    assert sorted(i for _, i in final) == sorted(["before-attacks", *(f"after-attacks-{n}" for n in c.names)])
    assert node.proc.poll() is None and not node.events("child_crashed"), "the attacked node lost a child"


def test_a_leader_cut_off_mid_dispatch_delivers_at_most_its_batch_in_flight_and_the_new_leader_resumes(
    make_cluster: Any,
) -> None:
    """Each committed incident is dispatched once cluster-wide: the leader's dispatcher delivers a batch only
    once the mark of the one before is applied, so a leader cut off mid-way delivers at most its batch in
    flight (its next mark cannot commit, even before it learns it lost the lead), and the new leader
    resumes after the last applied mark: a sink sees at most that batch again. Batches of 1 here. A second
    sink is stuck the whole time (nobody listens at its URL): the marks are per sink, so it holds back only
    itself, and the file sink's batches past it are not delivered again by the new leader."""
    c = make_cluster(dispatch_batch=1, stuck_sink=True)
    c.start()
    leader = c.wait_leader(60)
    ids = [f"burst-{k}" for k in range(300)]
    with event_log(c, leader) as log:
        log.append(PROPOSED_INCIDENTS, [incident(i, leader) for i in ids])
    c.wait(lambda: len(c.dispatched(leader)) >= 20, 60, "the leader's dispatcher under way")
    links = c.isolate(leader)
    try:
        at_cut = len(c.dispatched(leader))
        assert at_cut < len(ids), "the leader delivered the whole burst before the cut: nothing to prove"
        others = [n for n in c.names if n != leader]
        new = c.wait_leader(60, among=others)
        c.wait(
            lambda: set(c.dispatched(leader)) | set(c.dispatched(new)) == set(ids),
            90,
            "the new leader delivering what the old one had not",
        )
        assert c.dropped(links) > 0, "the cut dropped nothing"
        after_cut = len(c.dispatched(leader)) - at_cut
        assert after_cut <= 1, f"the cut-off leader delivered {after_cut} more after the cut"
    finally:
        c.heal()
    # the stuck sink really was stuck on both leaders: attempted and failed, never delivered
    for node in (leader, new):
        failed = c.nodes[node].events("dispatch_failed", sink="stuck")
        assert failed, f"{node}'s stuck sink was never attempted"
        assert not c.nodes[node].events("incident_dispatched", sink="stuck"), f"{node}'s stuck sink delivered"
    delivered = [iid for n in c.names for iid in c.dispatched(n)]
    again = len(delivered) - len(set(delivered))
    assert set(delivered) == set(ids) and again <= 1, f"{again} delivered twice (at most the batch in flight)"
