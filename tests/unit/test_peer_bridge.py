"""The peer gateway's lanes without sockets: a ``Gateway`` over a real event log (LMDB in tmp) whose links
are a recorder. What a peer may do is decided on its authenticated name, never on what its frame claims:
raft messages claiming another sender, gossip claiming another sender or recipient, forwarded proposals
from an untrusted node or with a bad signature are refused and logged, and harm nothing. The edge's
forward offset moves only over acked records. The pipe between shell and gateway decodes strictly."""

from __future__ import annotations

import asyncio
import hashlib
import tracemalloc
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actors.crdt.codec import encode
from actors.crdt.gossip import AckMessage
from actors.raft.codec import decode_message, encode_message
from actors.raft.node_keys import load_or_create_signing_key, public_key_b64
from actors.raft.snapshot_file import SpoolReference, encode_reference, spool_reference, write_snapshot
from actors.raft.types import ConfState, Message, Snapshot
from actors.streams import PROPOSED_INCIDENTS
from supervisors.peer.bridge import MAX_PIPE_FRAME, PipeError, PipeRaft, PipeReader, encode_pipe
from supervisors.peer.bridge_cluster import ClusterView
from supervisors.peer.config import PeerConfig
from supervisors.peer.frames import Body, ForwardFrame, GossipFrame, RaftFrame, SnapshotChunk
from supervisors.peer.gateway import GOSSIP_PERSIST_S, MAX_REASSEMBLY, SNAPSHOT_CHUNK, ForwardBody, Gateway
from supervisors.peer.snapshot_stream import file_chunks
from tests.harness.fake_links import NODES, ROLES, FakeLinks


class PipeRecorder:
    def __init__(self) -> None:
        self.reader = PipeReader()
        self.messages: list[Any] = []
        self.dropped = 0

    def write(self, frame: bytes) -> bool:
        self.messages += self.reader.feed(frame)
        return True


def make(
    tmp_path: Path, node: str, trusted: dict[str, str] | None = None, max_frame: int = 1 << 20
) -> tuple[Gateway, FakeLinks]:
    files = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "c", "key": tmp_path / "k"}
    config = PeerConfig(node=node, nodes=NODES, max_frame=max_frame, **files)
    view = ClusterView(node, ROLES[node], ("gw-1", "gw-2"), tuple(ROLES), trusted or {}, config)
    gateway = Gateway(view, tmp_path / node, use_stdio=False)
    links = FakeLinks()
    gateway.links = links  # type: ignore[assignment]
    gateway.pipe_out = PipeRecorder()  # type: ignore[assignment]
    return gateway, links


def raft_bytes(sender: str, to: str) -> bytes:
    return encode_message(Message(type="heartbeat", sender=sender, to=to, term=3))


def incident(iid: str) -> dict[str, Any]:
    return {"incident_id": iid, "timestamp": 1.0, "type": "t", "source_node": "edge-1", "sensor": "S1"}


class LaneQueue(FakeLinks):
    """Links whose snapshot lane holds ``capacity`` frames until the test "writes" them (as the real
    links' queue holds them until their write loop does), refusing what does not fit as they do."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.queued: list[Body] = []
        self.written: list[Body] = []
        self.dropped = 0

    def send(self, peer: str, body: Body) -> bool:
        if len(self.queued) >= self.capacity:
            self.dropped += 1
            return False
        self.queued.append(body)
        return True

    def room(self, peer: str, lane: Any) -> int:
        return self.capacity - len(self.queued)

    def write(self, frames: int) -> None:
        self.written += self.queued[:frames]
        del self.queued[:frames]


def test_a_snapshot_of_more_chunks_than_its_lane_holds_waits_for_room_and_arrives_whole(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        sender, _ = make(tmp_path, "gw-2")
        links = LaneQueue(capacity=3)
        links.states["gw-1"] = "up"
        sender.links = links  # type: ignore[assignment]
        snapshot = encode_message(
            Message(type="snapshot", sender="gw-2", to="gw-1", term=2, context=b"s" * (10 * SNAPSHOT_CHUNK))
        )
        sender.send_raft("gw-1", snapshot)
        assert len(links.queued) == 3 and links.dropped == 0, "more than the lane holds was offered"
        while links.queued or sender.snapshot_streams:  # the peer reads slowly: one chunk at a time
            links.write(1)
            await asyncio.sleep(0.02)
        assert len(links.written) == 11 and links.dropped == 0
        receiver, _ = make(tmp_path, "gw-1")
        for body in links.written:
            receiver._on_frame("gw-2", body)
        pipe: PipeRecorder = receiver.pipe_out  # type: ignore[assignment]
        assert [m.data for m in pipe.messages] == [snapshot]

        # the link goes down while a snapshot waits for room: reported failed to the replica (etcd's
        # ReportSnapshot), so its leader sends it again when the peer is back
        sender.send_raft("gw-1", snapshot)
        assert sender.snapshot_streams
        links.states["gw-1"] = "down"
        await asyncio.sleep(0.05)
        told: PipeRecorder = sender.pipe_out  # type: ignore[assignment]
        assert [(m.peer, m.snapshot) for m in told.messages] == [
            ("gw-1", True)
        ] and not sender.snapshot_streams

    asyncio.run(scenario())


def test_raft_frames_pass_only_when_the_message_sender_is_the_authenticated_peer(tmp_path: Path) -> None:
    gw, _ = make(tmp_path, "gw-1")
    pipe: PipeRecorder = gw.pipe_out  # type: ignore[assignment]
    gw._on_frame(
        "gw-2", RaftFrame(sender="gw-2", recipient="gw-1", payload=b"R" + raft_bytes("gw-2", "gw-1"))
    )
    assert [(m.peer, m.kind) for m in pipe.messages] == [("gw-2", "raft")]
    # gw-2 forging a message from gw-3, a frame for another node, an unknown kind, garbage: refused
    gw._on_frame(
        "gw-2", RaftFrame(sender="gw-2", recipient="gw-1", payload=b"R" + raft_bytes("gw-3", "gw-1"))
    )
    gw._on_frame(
        "gw-2", RaftFrame(sender="gw-2", recipient="gw-9", payload=b"R" + raft_bytes("gw-2", "gw-9"))
    )
    gw._on_frame("gw-2", RaftFrame(sender="gw-2", recipient="gw-1", payload=b"X123"))
    gw._on_frame("gw-2", RaftFrame(sender="gw-2", recipient="gw-1", payload=b"R\xc1garbage"))
    assert len(pipe.messages) == 1 and gw.refused == 4


def test_a_large_raft_message_crosses_in_snapshot_chunks_and_is_reassembled(tmp_path: Path) -> None:
    sender, sent = make(tmp_path, "gw-2")
    sender.send_raft("gw-1", raft_bytes("gw-2", "gw-1"))
    assert sent.sent == [], "queued for a peer whose link is down"
    sent.states["gw-1"] = "up"
    receiver, _ = make(tmp_path, "gw-1")
    big = encode_message(
        Message(type="append", sender="gw-2", to="gw-1", term=2, context=b"x" * (3 * SNAPSHOT_CHUNK))
    )
    sender.send_raft("gw-1", big)
    chunks = [body for _, body in sent.sent]
    assert len(chunks) == 4 and all(isinstance(c, SnapshotChunk) for c in chunks)
    for body in chunks:
        receiver._on_frame("gw-2", body)
    pipe: PipeRecorder = receiver.pipe_out  # type: ignore[assignment]
    assert [m.data for m in pipe.messages] == [big]
    # a chunk stream that starts in the middle (its start was dropped) is discarded, never half-delivered
    for body in chunks[1:]:
        receiver._on_frame("gw-2", body)
    assert len(pipe.messages) == 1


def test_gossip_is_appended_only_from_its_sender_to_this_node(tmp_path: Path) -> None:
    gw, _ = make(tmp_path, "gw-1")

    async def deliver() -> None:
        good = encode(
            AckMessage(
                sender="edge-1", sender_incarnation=1, recipient="gw-1", recipient_incarnation=1, seq=2
            )
        )
        spoofed = encode(
            AckMessage(sender="gw-2", sender_incarnation=1, recipient="gw-1", recipient_incarnation=1, seq=2)
        )
        misrouted = encode(
            AckMessage(
                sender="edge-1", sender_incarnation=1, recipient="gw-2", recipient_incarnation=1, seq=2
            )
        )
        for payload in (good, spoofed, misrouted, b"\x00garbage"):
            gw._on_frame("edge-1", GossipFrame(sender="edge-1", payload=payload))
        await asyncio.sleep(0)  # the batched durable append

    asyncio.run(deliver())
    assert len(gw.event_log.read("gossip/gw-1")) == 1
    assert gw.refused == 3


def forward_frame(key: Any, records: list[list[Any]], request_id: int = 1) -> ForwardFrame:
    raw = msgspec.msgpack.encode(records)
    return ForwardFrame(
        request_id=request_id, payload=msgspec.msgpack.encode(ForwardBody(raw, key.sign(raw)))
    )


def test_forwarded_proposals_need_a_trusted_key_and_a_valid_signature(tmp_path: Path) -> None:
    edge_key = load_or_create_signing_key(tmp_path / "edge-keys", "edge-1")
    gw, links = make(tmp_path, "gw-1", trusted={"edge-1": public_key_b64(edge_key)})
    other_key = load_or_create_signing_key(tmp_path / "other-keys", "mallory")
    gw._on_frame("edge-1", forward_frame(other_key, [[1, incident("a")]]))  # signed by someone else
    gw._on_frame("gw-2", forward_frame(edge_key, [[1, incident("b")]]))  # no trusted key for gw-2
    assert gw.event_log.read(PROPOSED_INCIDENTS) == [] and links.sent == [] and gw.refused == 2
    gw._on_frame("edge-1", forward_frame(edge_key, [[1, incident("c")], [2, incident("d")]], request_id=7))
    assert [r.payload["incident_id"] for r in gw.event_log.read(PROPOSED_INCIDENTS)] == ["c", "d"]
    ((peer, ack),) = links.sent
    assert peer == "edge-1" and isinstance(ack, ForwardFrame) and ack.reply and ack.request_id == 7
    assert msgspec.msgpack.decode(ack.payload)["acked"] == [1, 2]


def test_an_edge_forwards_to_an_up_member_and_advances_only_over_acks(tmp_path: Path) -> None:
    edge_key = load_or_create_signing_key(tmp_path / "edge-1", "edge-1")
    edge, edge_links = make(tmp_path, "edge-1")
    edge.signing_key = edge_key
    member, member_links = make(tmp_path, "gw-2", trusted={"edge-1": public_key_b64(edge_key)})
    edge.event_log.append(PROPOSED_INCIDENTS, [incident(f"i{k}") for k in range(5)])
    edge._forward()  # no member is up: everything waits, durably
    assert edge_links.sent == [] and edge.backlog() == 5 and edge.forward_offset == 0
    edge_links.states["gw-2"] = "up"
    edge._forward()
    ((target, frame),) = edge_links.sent
    assert target == "gw-2"
    member._on_frame("edge-1", frame)  # the member stores them and acks
    assert len(member.event_log.read(PROPOSED_INCIDENTS)) == 5
    ((_, ack),) = member_links.sent
    assert edge.forward_offset == 0, "advanced before the ack"
    edge._on_frame("gw-2", ack)
    assert edge.forward_offset == 5 and edge.backlog() == 0
    assert int(edge.event_log.get_value("peer-gateway/forward_offset")) == 5  # durable


def test_the_pipe_decodes_frames_across_reads_and_refuses_garbage() -> None:
    frames = encode_pipe(PipeRaft("gw-2", b"abc")) + encode_pipe(PipeRaft("gw-3", b"", kind="propose"))
    reader = PipeReader()
    got = [m for i in range(len(frames)) for m in reader.feed(frames[i : i + 1])]
    assert got == [PipeRaft("gw-2", b"abc"), PipeRaft("gw-3", b"", kind="propose")]
    with pytest.raises(PipeError, match="over the"):
        PipeReader().feed((MAX_PIPE_FRAME + 1).to_bytes(4, "big"))
    with pytest.raises(PipeError, match="does not decode"):
        PipeReader().feed(b"\x00\x00\x00\x03abc")


class SizedLinks(FakeLinks):
    """Refuses what real links refuse: a frame over ``max_frame`` is a ValueError."""

    def __init__(self, max_frame: int) -> None:
        super().__init__()
        self.max_frame = max_frame

    def send(self, peer: str, body: Body) -> bool:
        from supervisors.peer.frames import encode_frame

        encode_frame(body, self.max_frame)
        return super().send(peer, body)


def test_frames_stay_under_max_frame_and_an_oversized_record_is_given_up(tmp_path: Path) -> None:
    edge, _ = make(tmp_path, "edge-1", max_frame=4096)
    links = SizedLinks(4096)
    links.states["gw-1"] = "up"
    edge.links = links  # type: ignore[assignment]
    edge.signing_key = load_or_create_signing_key(tmp_path / "edge-1", "edge-1")
    huge = {**incident("huge"), "payload": {"blob": "x" * 5000}}
    edge.event_log.append(PROPOSED_INCIDENTS, [incident("a"), huge, *[incident(f"s{k}") for k in range(40)]])
    edge._forward()
    assert len(links.sent) >= 2, "small records not split into frames under max_frame"
    bodies = [msgspec.msgpack.decode(f.payload) for _, f in links.sent]  # type: ignore[union-attr]
    sent = [r for b in bodies for r in msgspec.msgpack.decode(b["records"])]
    assert [inc["incident_id"] for _, inc in sent] == ["a", *[f"s{k}" for k in range(40)]]
    assert 2 not in edge.inflight  # the oversized record was given up, not retried forever
    # raft: a message over the chunk size crosses as chunks that each fit
    gw, _ = make(tmp_path, "gw-2", max_frame=4096)
    glinks = SizedLinks(4096)
    glinks.states["gw-1"] = "up"
    gw.links = glinks  # type: ignore[assignment]
    gw.send_raft("gw-1", b"m" * 10_000)
    assert len(glinks.sent) == 5 and all(isinstance(b, SnapshotChunk) for _, b in glinks.sent)


class _Proposals:
    """The node backend behind the API: records what it was asked to append."""

    def __init__(self, waiting: tuple[str, ...] = ()) -> None:
        self.proposed: list[str] = []
        self.waiting = waiting

    async def propose(self, incident: dict[str, Any]) -> Any:
        from supervisors.peer.api import ProposeOutcome

        self.proposed.append(incident["incident_id"])
        return ProposeOutcome("committed", 1)

    def not_appended(self, incident_id: str, reason: str) -> Any:
        from supervisors.peer.api import ProposeOutcome

        return ProposeOutcome("timeout" if incident_id in self.waiting else "unavailable", reason=reason)


def test_a_gateway_cut_off_from_a_majority_refuses_a_post_before_appending_it(tmp_path: Path) -> None:
    """gw-1 and gw-2 are the Raft members: with its link to gw-2 down, gw-1 is a minority of one. A POST
    there is refused with a 503 without being appended (appended, it could commit after the heal, and
    only a 504 would be honest); one that an earlier attempt appended is a 504."""
    from supervisors.peer.bridge_api import GatewayBackend

    gw, links = make(tmp_path, "gw-1")
    inner = _Proposals(waiting=("earlier",))
    api = GatewayBackend(gw, inner)
    links.states["gw-2"] = "down"
    cut = asyncio.run(api.propose(incident("during-the-cut")))
    earlier = asyncio.run(api.propose(incident("earlier")))
    assert (cut.status, earlier.status) == ("unavailable", "timeout") and inner.proposed == []
    assert "minority" in cut.reason
    links.states["gw-2"] = "suspect"  # a heartbeat late is not a cut
    assert asyncio.run(api.propose(incident("after"))).status == "committed" and inner.proposed == ["after"]


def test_an_edge_reaching_no_member_answers_504_for_an_incident_an_earlier_attempt_appended(
    tmp_path: Path,
) -> None:
    """An edge's 503 says "not appended": never for an incident that waits in its own backlog (an earlier
    attempt appended it, and the forwarder will deliver it when a member is back), which is a 504 again."""
    from supervisors.peer.edge_api import EdgeProposer
    from supervisors.peer.node_backend import NodeBackend

    async def scenario() -> tuple[Any, Any]:
        edge, _ = make(tmp_path, "edge-1")  # every link down: no member reachable
        edge.backend = NodeBackend(edge.data_dir, "edge-1", None)
        await edge.backend.start()
        try:
            edge.event_log.append(PROPOSED_INCIDENTS, [incident("waiting")])  # not forwarded yet
            proposer = EdgeProposer(edge)
            return await proposer.propose(incident("waiting")), await proposer.propose(incident("fresh"))
        finally:
            await edge.backend.close()

    waiting, fresh = asyncio.run(scenario())
    assert waiting.status == "timeout" and "earlier attempt" in waiting.reason, waiting
    assert fresh.status == "unavailable" and "not appended" in fresh.reason, fresh


def test_gossip_sent_is_recorded_durably_once_a_second_and_at_stop_not_per_round(tmp_path: Path) -> None:
    """A durable commit in the gateway's loop holds up every Raft frame for its fsync, so the offsets of the
    gossip sent to peers are recorded at most every GOSSIP_PERSIST_S (and when the gateway stops); a crash
    in between only sends that gossip again, which a CRDT merge absorbs."""
    gw, links = make(tmp_path, "gw-1")
    key, outbox = "peer-gateway/gossip/gw-2", "gossip/gw-2"
    gw.gossip_offsets["gw-2"] = 0

    def gossip_frames() -> int:
        return sum(isinstance(body, GossipFrame) for _, body in links.sent)

    gw.event_log.append(outbox, [b"first"])
    gw._send_gossip("gw-2")  # nothing recorded yet: due at once
    assert gossip_frames() == 1 and gw.event_log.get_value(key) == 1
    gw.event_log.append(outbox, [b"second"])
    gw._send_gossip("gw-2")
    assert gossip_frames() == 2, "the round must still send"
    assert gw.event_log.get_value(key) == 1, "recorded durably on the very next round"
    gw.gossip_persisted_at -= (
        GOSSIP_PERSIST_S  # a second later: the next round records it, with nothing to send
    )
    gw._send_gossip("gw-2")
    assert gossip_frames() == 2 and gw.event_log.get_value(key) == 2
    assert gw.event_log.read(outbox) == [], "the sent gossip was not compacted away"
    gw.event_log.append(outbox, [b"third"])
    gw._send_gossip("gw-2")
    assert gw.event_log.get_value(key) == 2
    gw._persist_gossip_offsets()  # what a stopping gateway does last
    assert gw.event_log.get_value(key) == 3


# -- snapshots as files (actors/raft/snapshot_file.py, supervisors/peer/snapshot_stream.py) ---------------


class Relay(FakeLinks):
    """Links that hand every frame straight to ``receiver`` as from ``sender`` (a link that is never full),
    keeping only the size of the largest frame."""

    def __init__(self, receiver: Gateway, sender: str) -> None:
        super().__init__()
        self.receiver, self.sender = receiver, sender
        self.frames = self.largest = 0

    def send(self, peer: str, body: Body) -> bool:
        self.frames += 1
        if isinstance(body, SnapshotChunk):
            self.largest = max(self.largest, len(body.data))
        self.receiver._on_frame(self.sender, body)
        return True


def snapshot_file(gateway: Gateway, items: list[tuple[int, dict[str, Any]]], sender: str = "gw-2") -> bytes:
    """A snapshot file in ``gateway``'s spool (as its replica writes one) and the message that names it."""
    index = items[-1][0]
    name = f"out-{sender}-{index}.snap"
    size, count = write_snapshot(gateway.spool / name, iter(items))
    ref = SpoolReference(applied_index=index, spool=name, bytes=size, count=count)
    snap = Snapshot(index=index, term=2, conf_state=ConfState(("gw-1", "gw-2")), data=encode_reference(ref))
    return encode_message(Message(type="snapshot", sender=sender, to="gw-1", term=2, snapshot=snap))


def received_snapshot(receiver: Gateway) -> tuple[Message, SpoolReference, Path]:
    pipe: PipeRecorder = receiver.pipe_out  # type: ignore[assignment]
    assert len(pipe.messages) == 1, pipe.messages
    message = decode_message(pipe.messages[0].data)
    assert message.snapshot is not None
    ref = spool_reference(message.snapshot.data)
    assert ref is not None, "the replica got no file reference"
    return message, ref, receiver.spool / ref.spool


def test_a_snapshot_larger_than_any_message_streams_from_spool_file_to_spool_file_a_chunk_at_a_time(
    tmp_path: Path,
) -> None:
    """The state machine here is past the old 64 MiB cap on a whole snapshot (reassembled in memory, and
    refused beyond it: such a node never caught up); it now arrives whole while neither gateway holds more
    than a few chunks."""
    sender, _ = make(tmp_path, "gw-2")
    receiver, _ = make(tmp_path, "gw-1")
    relay = Relay(receiver, "gw-2")
    relay.states["gw-1"] = "up"
    sender.links = relay  # type: ignore[assignment]
    blob = "x" * 60_000
    items = [(i, {**incident(f"i-{i}"), "payload": {"blob": blob}}) for i in range(1, 1201)]
    message = snapshot_file(sender, items)
    sent = sender.spool / "out-gw-2-1200.snap"
    assert sent.stat().st_size > MAX_REASSEMBLY, "not past the old cap: proves nothing"
    tracemalloc.start()
    try:
        sender.send_raft("gw-1", message, "snapshot")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    got, ref, path = received_snapshot(receiver)
    assert got.sender == "gw-2" and got.snapshot is not None and got.snapshot.index == 1200
    assert ref.spool.startswith("in-gw-2-") and ref.bytes == sent.stat().st_size and ref.count == 1200
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(sent.read_bytes()).digest()
    assert relay.frames >= ref.bytes // sender.chunk_bytes and relay.largest <= sender.chunk_bytes
    assert peak < 16 << 20, f"{peak} bytes held while streaming {ref.bytes}: not chunk by chunk"
    assert not list(receiver.spool.glob("*.part")) and not sender.file_streams


def test_a_snapshot_sent_again_while_it_streams_is_not_restarted_and_a_broken_stream_leaves_nothing(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        sender, _ = make(tmp_path, "gw-2")
        links = LaneQueue(capacity=3)
        links.states["gw-1"] = "up"
        sender.links = links  # type: ignore[assignment]
        sender.chunk_bytes = 4096
        message = snapshot_file(sender, [(i, incident(f"i-{i}")) for i in range(1, 3001)])
        sender.send_raft("gw-1", message, "snapshot")
        waiting = sender.snapshot_streams["gw-1"]
        # Raft sends it again after a few heartbeats without progress: the stream goes on, not from 0
        sender.send_raft("gw-1", message, "snapshot")
        assert sender.snapshot_streams["gw-1"] is waiting and len(links.queued) == 3
        while links.queued or sender.snapshot_streams:
            links.write(1)
            await asyncio.sleep(0.001)
        chunks = [b for b in links.written if isinstance(b, SnapshotChunk)]
        assert [c.offset for c in chunks] == sorted({c.offset for c in chunks}), "a chunk was sent twice"
        assert chunks[-1].last and not sender.file_streams

        receiver, _ = make(tmp_path, "gw-1")
        for body in chunks[:5] + chunks[6:]:  # one chunk lost on the way
            receiver._on_frame("gw-2", body)
        pipe: PipeRecorder = receiver.pipe_out  # type: ignore[assignment]
        assert pipe.messages == [] and list(receiver.spool.iterdir()) == [], "a broken stream left a file"
        for body in chunks:  # sent again whole: accepted
            receiver._on_frame("gw-2", body)
        received_snapshot(receiver)

        # a stream from gw-2 whose message claims gw-1's snapshot: refused, no file
        forged = snapshot_file(sender, [(1, incident("i-1"))], sender="gw-1")
        stream = open(sender.spool / "out-gw-1-1.snap", "rb")  # noqa: SIM115 - file_chunks closes it
        pipe.messages.clear()
        for body in file_chunks("gw-2", "gw-1", "forged", forged, stream, 4096):
            receiver._on_frame("gw-2", body)
        assert pipe.messages == [] and not list(receiver.spool.glob("*.part"))
        (untaken,) = receiver.spool.iterdir()
        assert untaken.suffix == ".snap"  # only the good one, for the replica

        # the replica never took that file (its message was lost while it restarted) and the leader sends
        # its snapshot again: the newer file replaces the untaken one, so none piles up
        for body in chunks:
            receiver._on_frame("gw-2", body)
        newer = received_snapshot(receiver)[2]
        assert newer != untaken and list(receiver.spool.iterdir()) == [newer]

    asyncio.run(scenario())
