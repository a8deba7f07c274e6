"""Any node answers the HTTP API across the cluster (issue 9): a follower serves linearizable reads (the
leader's gateway confirms the ReadIndex over the peer link), an edge node answers POST 201 with the
committed index (forwarded, then looked up on a member), and a minority follower answers 503 rather than
a stale linearizable read.

Real processes: 3 gateways + 1 edge, every peer link behind a fault proxy (tests/harness/cluster.py). Each
fault is checked to have landed (bytes dropped by the proxies) and each cross-node path to have really
been taken (the leader's gateway counted the ReadIndex calls it served, the edge its commit lookups)
before the outcome is asserted. The in-process tests at the end check who may ask what on the lane.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actors.eventlog import EventLog
from actors.raft.node_keys import load_or_create_signing_key, public_key_b64
from actors.streams import PROPOSED_INCIDENTS
from supervisors.peer.bridge_cluster import ClusterView
from supervisors.peer.config import PeerConfig
from supervisors.peer.forward_rpc import CommitAsk, ReadIndexAnswer, ReadIndexAsk, RpcFailed
from supervisors.peer.frames import ForwardFrame
from supervisors.peer.gateway import Gateway
from tests.harness.cluster import Cluster, incident
from tests.harness.fake_links import NODES, ROLES, FakeLinks

pytestmark = [pytest.mark.system, pytest.mark.timeout(240)]

EDGE = "edge-1"
LINEARIZABLE = "consistency=linearizable"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("forwarding"), edges=(EDGE,))
    try:
        c.start()
        c.wait_leader(90)
        yield c
    finally:
        c.stop()


def post(c: Cluster, name: str, iid: str, timeout: float = 20.0) -> tuple[int, dict[str, Any]]:
    return c.post(name, "/v1/incidents", incident(iid, name), timeout=timeout)


def post_committed(c: Cluster, name: str, iid: str, deadline_s: float = 40.0) -> int:
    """POST until it is acknowledged (a 503 is definitely not appended, a 504 safe to retry); its index."""
    deadline = time.monotonic() + deadline_s
    while True:
        code, body = post(c, name, iid)
        if code in (200, 201):
            return int(body["index"])
        assert code in (503, 504), (code, body)
        assert time.monotonic() < deadline, f"{iid} on {name} never acknowledged: {code} {body}"
        time.sleep(0.5)


def read(c: Cluster, name: str, after: int, consistency: str) -> tuple[int, dict[str, Any] | None]:
    return c.get(name, f"/v1/incidents?after={after}&limit=100&{consistency}", timeout=20)


def calls(c: Cluster, name: str) -> dict[str, int]:
    status = c.status(name) or {}
    return dict((status.get("gateway") or {}).get("calls") or {})


def role(c: Cluster, name: str) -> str | None:
    return ((c.status(name) or {}).get("raft") or {}).get("role")


def _read_through_election(c: Cluster, name: str, after: int) -> tuple[int, dict[str, Any] | None]:
    deadline = time.monotonic() + 15
    while True:
        code, page = read(c, name, after, LINEARIZABLE)
        if code != 503 or time.monotonic() >= deadline:
            return code, page
        time.sleep(0.2)


def test_a_followers_linearizable_read_sees_a_write_acknowledged_just_before_on_another_node(
    cluster: Cluster,
) -> None:
    c = cluster
    leader = c.wait_leader(60)
    followers = [n for n in c.names if n != leader]
    served_before = calls(c, leader).get("read_index_served", 0)
    for k in range(6):
        reader = followers[k % 2]
        writer = leader if k < 2 else next(n for n in c.names if n != reader)  # the leader or the other
        iid = f"ryw-{k}"
        code, body = post(c, writer, iid)
        assert code == 201, (writer, code, body)
        index = int(body["index"])
        # at once, on a follower: the read must include what was acknowledged before it began (a 503 while
        # an election blip runs is allowed, never stale data: read again, it must still include the write)
        code, page = _read_through_election(c, reader, index - 1)
        assert code == 200 and page is not None, (reader, code, page)
        assert page["incidents"] and page["incidents"][0]["incident"]["incident_id"] == iid, (reader, page)
        assert page["incidents"][0]["index"] == index and page["commit_index"] >= index
    # the reads really were served by followers, through the leader's gateway
    assert all(role(c, f) == "follower" for f in followers), {f: role(c, f) for f in followers}
    assert c.leader() == leader, "leadership moved during the test: the reads above proved less"
    assert calls(c, leader).get("read_index_served", 0) >= served_before + 6, calls(c, leader)
    assert sum(calls(c, f).get("read_index_asked", 0) for f in followers) >= 6


def test_an_edge_post_answers_201_with_the_index_every_gateway_holds_and_a_repeat_200(
    cluster: Cluster,
) -> None:
    c = cluster
    c.wait(lambda: c.get(EDGE, "/readyz")[0] == 200, 60, "the edge linked to a Raft member")
    code, body = post(c, EDGE, "from-the-edge")
    assert code == 201, (code, body)
    index = int(body["index"])
    # committed at that index in every gateway's log (the edge itself keeps none)
    c.wait(
        lambda: all((index, "from-the-edge") in (c.log(g) or []) for g in c.names),
        30,
        "the edge's incident at its index on every gateway",
    )
    # it went the forward path: signed to a member, its index looked up on a member
    gateway = (c.status(EDGE) or {})["gateway"]
    assert gateway["edge"]["forwarded"] >= 1 and gateway["calls"]["commit_asked"] >= 2, gateway
    # the same incident again: 200 with the original index, on the edge and on a gateway
    for name in (EDGE, c.names[0]):
        code, again = post(c, name, "from-the-edge")
        assert (code, again.get("index"), again.get("duplicate")) == (200, index, True), (name, code, again)
    assert [iid for _, iid in c.log(c.names[1]) or []].count("from-the-edge") == 1
    # reads on an edge: local is its (empty) log, linearizable is refused with where to read instead
    code, page = read(c, EDGE, 0, LINEARIZABLE)
    assert code == 503 and page is not None and "gateway" in page["error"], (code, page)
    assert read(c, EDGE, 0, "consistency=local")[0] == 200


def _proposed_ids(c: Cluster, name: str) -> set[str]:
    log = EventLog(c.data_dir(name) / "eventlog")  # briefly, next to the live node (one handle here)
    try:
        return {r.payload.get("incident_id") for r in log.read(PROPOSED_INCIDENTS)}
    finally:
        log.close()


def test_a_repeat_on_a_node_that_has_not_applied_it_yet_answers_200_with_the_original_index(
    cluster: Cluster,
) -> None:
    """POST on the leader (201), then at once the same incident_id on a follower and on the edge: 200 with
    the original index, though the follower may not have applied it yet (its log learns the commit with the
    leader's next message): then its append races the commit, and only the replica's mark on the committed
    record (``proposed_seq``) says that the proposal applied was another node's."""
    c = cluster
    leader = c.wait_leader(60)
    follower = next(n for n in c.names if n not in (leader, EDGE))
    c.wait(lambda: c.get(EDGE, "/readyz")[0] == 200, 60, "the edge linked to a Raft member")
    raced = 0
    for k in range(8):
        for second in (follower, EDGE):
            iid = f"repeat-{second}-{k}"
            code, first = post(c, leader, iid)
            assert code == 201, (leader, code, first)
            code, again = post(c, second, iid)
            assert (code, again.get("index"), again.get("duplicate")) == (200, first["index"], True), (
                second,
                code,
                again,
            )
        # the follower took the append path: it had not applied the incident when the repeat came in
        raced += f"repeat-{follower}-{k}" in _proposed_ids(c, follower)
    assert raced, "the follower had applied every incident before its repeat came: the race never ran"
    assert c.leader() == leader, "leadership moved during the test"
    # each incident committed once, at the index the leader answered
    log = c.wait_converged(30)
    ids = [iid for _, iid in log if iid.startswith("repeat-")]
    assert len(ids) == len(set(ids)) == 16


def test_a_minority_follower_answers_503_for_linearizable_reads_and_still_serves_local(
    cluster: Cluster,
) -> None:
    c = cluster
    leader = c.wait_leader(60)
    victim = next(n for n in c.names if n != leader)
    other = next(n for n in c.names if n not in (leader, victim))
    before = post_committed(c, leader, "before-the-cut")
    c.wait(lambda: (before, "before-the-cut") in (c.log(victim) or []), 30, "the victim has it")
    links = c.isolate(victim)
    try:
        after = post_committed(c, leader, "during-the-cut")  # the majority commits
        code, page = read(c, other, after - 1, LINEARIZABLE)
        assert code == 200 and page and page["incidents"][0]["incident"]["incident_id"] == "during-the-cut"
        code, page = read(c, victim, 0, LINEARIZABLE)
        assert code == 503 and page is not None and page["error"], (code, page)
        assert c.dropped(links) > 0, "the partition dropped nothing: the 503 proves nothing"
        # its local log really is stale: a linearizable read answered from it would have missed a write
        code, page = read(c, victim, 0, "consistency=local")
        assert code == 200 and page is not None
        local = [r["incident"]["incident_id"] for r in page["incidents"]]
        assert "before-the-cut" in local and "during-the-cut" not in local, local
        # not ready (peers not joined), and a POST there is refused before it is appended: a 503
        c.wait(lambda: c.get(victim, "/readyz")[0] == 503, 30, "the cut-off follower not ready")
        assert "majority" in (c.get(victim, "/readyz")[1] or {}).get("reason", ""), c.get(victim, "/readyz")
        c.wait(
            lambda: all(
                ((c.status(victim) or {}).get("peers") or {}).get(p, {}).get("state") == "down"
                for p in (leader, other)
            ),
            30,
            "the victim's links to both other gateways down",
        )
        code, body = post(c, victim, "on-the-minority")
        assert code == 503 and body.get("appended") is False, (code, body)
        assert c.get(other, "/readyz")[0] == 200, "the majority follower should stay ready"
    finally:
        c.heal()
    c.wait(lambda: c.get(victim, "/readyz")[0] == 200, 60, "the healed follower ready again")
    assert "on-the-minority" not in _proposed_ids(c, victim), "a 503 must mean not appended"

    def fresh() -> bool:
        code, page = read(c, victim, after - 1, LINEARIZABLE)
        return (
            code == 200 and bool(page) and page["incidents"][0]["incident"]["incident_id"] == "during-the-cut"
        )

    c.wait(fresh, 60, "the healed follower's linearizable read to see the majority's write")


def test_an_edge_cut_off_from_every_gateway_answers_503_and_appends_nothing(cluster: Cluster) -> None:
    c = cluster
    links = c.partition([EDGE], c.names)
    try:
        # the links' heartbeats notice the cut; until then a lookup times out: both are a 503
        code, body = post(c, EDGE, "edge-offline", timeout=30)
        assert code == 503 and body.get("appended") is False, (code, body)
        assert c.dropped(links) > 0, "the cut dropped nothing"
    finally:
        c.heal()
    log = EventLog(c.data_dir(EDGE) / "eventlog")  # briefly, next to the live node (one handle here)
    try:
        proposed = [r.payload.get("incident_id") for r in log.read(PROPOSED_INCIDENTS)]
    finally:
        log.close()
    assert "edge-offline" not in proposed, "a 503 must mean not appended"
    c.wait(lambda: c.get(EDGE, "/readyz")[0] == 200, 60, "the edge linked again")
    assert post_committed(c, EDGE, "edge-back") >= 1


# -- who may ask what on the forward lane (in process: real Gateway objects, recorded sends) ---------------


class _Backend:
    """Stands in for the node backend's two answers (the Raft replica behind it is tested elsewhere)."""

    async def confirm_read_index(self) -> int:
        return 42

    async def wait_committed(self, incident_id: str, timeout: float) -> int | None:
        return 7 if incident_id == "known" else None


def _gateway(tmp_path: Path, node: str, trusted: dict[str, str] | None = None) -> tuple[Gateway, FakeLinks]:
    files = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "c", "key": tmp_path / "k"}
    config = PeerConfig(node=node, nodes=NODES, **files)
    roles = ROLES
    view = ClusterView(node, roles[node], ("gw-1", "gw-2"), tuple(roles), trusted or {}, config)
    gateway = Gateway(view, tmp_path / node, use_stdio=False)
    links = FakeLinks()
    gateway.links = links  # type: ignore[assignment]
    gateway.backend = _Backend()  # type: ignore[assignment]
    return gateway, links


def _ask(kind: str, body: msgspec.Struct, request_id: int = 5) -> ForwardFrame:
    return ForwardFrame(request_id=request_id, payload=msgspec.msgpack.encode(body), kind=kind)  # type: ignore[arg-type]


def test_only_raft_members_ask_or_serve_read_index_and_lookups_need_a_trusted_forwarder(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        edge_key = public_key_b64(load_or_create_signing_key(tmp_path / "edge-keys", "edge-1"))
        leader, sent = _gateway(tmp_path, "gw-1", trusted={"edge-1": edge_key})
        # an edge asking for a ReadIndex is refused and gets no answer; a member gets the confirmed index
        leader._on_frame("edge-1", _ask("read_index", ReadIndexAsk()))
        leader._on_frame("gw-2", _ask("read_index", ReadIndexAsk(), request_id=6))
        await asyncio.sleep(0.01)
        ((peer, answer),) = sent.sent
        assert peer == "gw-2" and isinstance(answer, ForwardFrame) and answer.reply
        assert answer.request_id == 6 and answer.kind == "read_index"
        assert msgspec.msgpack.decode(answer.payload, type=ReadIndexAnswer).index == 42
        assert leader.refused == 1
        # a commit lookup: from the trusted edge answered; malformed bodies refused
        leader._on_frame("edge-1", _ask("commit", CommitAsk("known"), request_id=8))
        leader._on_frame("edge-1", ForwardFrame(request_id=9, payload=b"\xc1", kind="commit"))
        await asyncio.sleep(0.01)
        assert [(p, f.request_id) for p, f in sent.sent[1:]] == [("edge-1", 8)] and leader.refused == 2
        # an edge serves nothing: it is not a Raft member
        edge, edge_sent = _gateway(tmp_path, "edge-1")
        edge._on_frame("gw-1", _ask("commit", CommitAsk("known")))
        await asyncio.sleep(0.01)
        assert edge_sent.sent == [] and edge.refused == 1
        # answers: from a non-member refused; from a member to no call of ours (late) dropped quietly
        leader._on_frame("edge-1", ForwardFrame(request_id=1, payload=b"", reply=True, kind="commit"))
        edge._on_frame("gw-2", ForwardFrame(request_id=1, payload=b"", reply=True, kind="read_index"))
        assert leader.refused == 3 and edge.refused == 1
        # a call to a peer whose link is down fails at once
        with pytest.raises(RpcFailed, match="down"):
            await edge.calls.commit_index("gw-1", "known", 0)
        # a follower's ReadIndex call round-trips through the leader's service
        follower, follower_sent = _gateway(tmp_path, "gw-2")
        follower_sent.states["gw-1"] = "up"
        pending = asyncio.ensure_future(follower.calls.read_index_from("gw-1"))
        await asyncio.sleep(0.01)
        ((to, ask),) = follower_sent.sent
        leader._on_frame("gw-2", ask)  # type: ignore[arg-type]
        await asyncio.sleep(0.01)
        follower._on_frame("gw-1", sent.sent[-1][1])
        assert await pending == 42 and to == "gw-1"
        assert await follower.calls.read_index_from("gw-2") is None  # itself: asked locally

    asyncio.run(scenario())


class _Relayed:
    """Stands in for the gateway's pipe to its replica: what would have reached the replica."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def write(self, frame: bytes) -> bool:
        self.frames.append(frame)
        return True


def test_a_gateway_outside_raft_members_may_not_send_raft_traffic(tmp_path: Path) -> None:
    """The links let any gateway use the Raft lane (it is the role's lane); membership is the gateway's
    check. The same frame from gw-2 reaches gw-1's replica while gw-2 is a member, and is refused (and
    reaches nothing) once the topology's cluster.raft_members no longer lists it."""
    from actors.raft.codec import encode_message
    from actors.raft.types import Message
    from supervisors.peer.frames import RaftFrame

    files = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "c", "key": tmp_path / "k"}
    heartbeat = Message("heartbeat", sender="gw-2", to="gw-1", term=3)
    frame = RaftFrame(sender="gw-2", recipient="gw-1", payload=b"R" + encode_message(heartbeat))
    for members, relayed_count, refused in ((("gw-1", "gw-2"), 1, 0), (("gw-1",), 0, 1)):
        config = PeerConfig(node="gw-1", nodes=NODES, **files)
        view = ClusterView("gw-1", "gateway", members, tuple(ROLES), {}, config)
        gateway = Gateway(view, tmp_path / f"gw-1-{len(members)}", use_stdio=False)
        relayed = _Relayed()
        gateway.pipe_out = relayed  # type: ignore[assignment]
        gateway._on_frame("gw-2", frame)
        assert (len(relayed.frames), gateway.refused) == (relayed_count, refused), members


def test_a_forwarded_dispatch_mark_is_refused_and_nothing_of_its_frame_is_appended(tmp_path: Path) -> None:
    """Only a leader's dispatcher proposes a dispatch mark: one forwarded by an edge (its key trusted) would
    make the next leader skip dispatching everything below it. The API refuses the type with a 400
    (test_http_api); the forward lane refuses the frame."""
    from actors.streams import DISPATCH_MARK
    from supervisors.peer.gateway import ForwardBody

    key = load_or_create_signing_key(tmp_path / "edge-keys", "edge-1")
    member, sent = _gateway(tmp_path, "gw-1", trusted={"edge-1": public_key_b64(key)})

    def forward(request_id: int, *incidents: dict[str, Any]) -> None:
        records = msgspec.msgpack.encode([[seq, inc] for seq, inc in enumerate(incidents, start=1)])
        body = ForwardBody(records=records, sig=key.sign(records))
        member._on_frame("edge-1", _ask("propose", body, request_id=request_id))

    mark = incident("mark-1", "edge-1") | {"type": DISPATCH_MARK, "payload": {"through": 10**9}}
    forward(1, incident("with-a-mark", "edge-1"), mark)
    forward(2, incident("plain", "edge-1"))
    proposed = [r.payload["incident_id"] for r in member.event_log.read(PROPOSED_INCIDENTS)]
    assert proposed == ["plain"] and member.refused == 1
    assert [f.request_id for _, f in sent.sent if isinstance(f, ForwardFrame)] == [2]  # acked: the plain one
