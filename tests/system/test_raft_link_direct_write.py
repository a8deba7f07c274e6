"""An idle peer link writes a Raft frame at once (no turn of its write task); under a burst it falls back to
the queue and its drain(): frames still arrive complete and in order. Real mutual TLS on loopback between
two ``PeerLinks`` in one event loop, certificates from a real CA on disk."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from supervisors import certs
from supervisors.peer import Lane, PeerConfig, PeerLinks, PeerNode, RaftFrame
from supervisors.peer.config import DEFAULT_QUEUE_SIZES
from supervisors.peer.frames import Body, encode_frame
from supervisors.thespian_env import free_loopback_ports
from tests.system.test_peer_links import config

pytestmark = [pytest.mark.system, pytest.mark.timeout(60)]


def _config(certs_dir: Path, node: str, nodes: tuple[PeerNode, ...]) -> PeerConfig:
    # a queue deep enough for the whole burst: this test is about order, not about drops
    return config(certs_dir, node, nodes, queue_sizes={**DEFAULT_QUEUE_SIZES, Lane.RAFT: 10_000})


async def _burst(certs_dir: Path) -> tuple[list[int], int, dict[str, int]]:
    port_a, port_b = free_loopback_ports(2)
    nodes = (
        PeerNode("a", "gateway", "127.0.0.1", port_a),
        PeerNode("b", "gateway", "127.0.0.1", port_b),
    )
    got: list[int] = []
    arrived = asyncio.Event()
    total = 4000

    def on_frame(peer: str, body: Body) -> None:
        if isinstance(body, RaftFrame) and peer == "a":
            got.append(int(body.payload[:8]))
            if len(got) == total + 1:
                arrived.set()

    a = PeerLinks(_config(certs_dir, "a", nodes), on_frame=lambda peer, body: None)
    b = PeerLinks(_config(certs_dir, "b", nodes), on_frame=on_frame)
    await a.start()
    await b.start()
    try:
        for _ in range(200):  # both directions up (a's outbound link is what carries a -> b)
            if a.state("b") == "up" and a._peers["b"].out_writer is not None:
                break
            await asyncio.sleep(0.05)
        assert a.state("b") == "up", "the link must be up before frames are sent"
        writer = a._peers["b"].out_writer
        assert writer is not None
        # one frame on an idle link: written at once, nothing left in the queue for the write task
        assert a.send("b", RaftFrame(sender="a", recipient="b", payload=b"%08d" % 0))
        assert not a._peers["b"].queues[Lane.RAFT], "an idle link queued the frame instead of writing it"
        await asyncio.sleep(0.2)
        # a frame waiting in the queue (as when the write task has not run yet): the next one must queue
        # behind it, not overtake it on the wire
        link = a._peers["b"]
        link.queues[Lane.RAFT].append(encode_frame(RaftFrame(sender="a", recipient="b", payload=b"%08d" % 1)))
        assert a.send("b", RaftFrame(sender="a", recipient="b", payload=b"%08d" % 2))
        assert len(link.queues[Lane.RAFT]) == 2, "a frame overtook one still queued"
        # a burst larger than the transport's buffer: some frames go straight out, the rest queue
        queued_seen = 0
        body = b"x" * 2000
        for i in range(3, total + 1):
            assert a.send("b", RaftFrame(sender="a", recipient="b", payload=b"%08d" % i + body))
            queued_seen = max(queued_seen, len(a._peers["b"].queues[Lane.RAFT]))
            if i > total // 2 and i % 10 == 0:
                # the first half filled the socket and the queue; now the transport and the write task
                # run between sends while frames are still queued: both paths interleave
                await asyncio.sleep(0.002)
        await asyncio.wait_for(arrived.wait(), 30)
        return got, queued_seen, dict(a.status()["b"]["sent"])
    finally:
        await a.close()
        await b.close()


def test_direct_and_queued_raft_frames_arrive_complete_and_in_order(tmp_path: Path) -> None:
    certs_dir = tmp_path / "certs"
    certs.init_ca(certs_dir)
    for node in ("a", "b"):
        certs.issue_node_cert(certs_dir, node)
    got, queued_seen, sent = asyncio.run(_burst(certs_dir))
    assert queued_seen > 0, "the burst never filled the transport: the queued path was not exercised"
    assert got == list(range(4001)), "frames were lost or reordered"
    assert sent.get("raft") == 4001, sent
