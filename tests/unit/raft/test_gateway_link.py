"""The replica <-> gateway Raft socket (actors/raft/gateway_link.py) on a real Unix socket and loop."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

from actors.raft.gateway_link import RaftLinkClient, RaftLinkServer, encode_pipe, socket_path
from supervisors.peer.bridge import PipeMessage, PipeRaft, PipeUnreachable


class _Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, object]]] = []

    def info(self, event: str, **kw: object) -> None:
        self.events.append((event, kw))

    warning = error = info


async def _until(predicate: object, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def _received(client: RaftLinkClient, into: list[PipeMessage]) -> bool:
    got = client.receive()
    assert got is not None, "the link closed"
    into.extend(got)
    return bool(into)


def _exchange(data_dir: Path) -> None:
    async def main() -> None:
        log = _Log()
        from_replica: list[PipeRaft] = []
        server = RaftLinkServer(data_dir, from_replica.append, log)
        assert server.start(asyncio.get_running_loop())
        mode = stat.S_IMODE(os.stat(socket_path(data_dir)).st_mode)
        assert mode == 0o600, oct(mode)
        client = RaftLinkClient(data_dir)
        assert client.connect()
        await _until(lambda: server.connected)
        # replica -> gateway: a raft message and a forwarded proposal, larger than one socket buffer
        big = os.urandom(3 << 20)
        assert client.send("gw-2", b"raft-bytes", "raft")
        assert client.send("gw-3", big, "propose")
        while client.flush():  # the rest goes as the gateway reads
            await asyncio.sleep(0.001)
        await _until(lambda: len(from_replica) == 2)
        assert from_replica[0] == PipeRaft("gw-2", b"raft-bytes", "raft")
        assert from_replica[1].data == big and from_replica[1].kind == "propose"
        # gateway -> replica
        assert server.send(encode_pipe(PipeRaft("gw-2", b"answer", "raft")))
        to_replica: list[PipeMessage] = []
        await _until(lambda: _received(client, to_replica))
        assert to_replica == [PipeRaft("gw-2", b"answer", "raft")]
        # the gateway dropped a snapshot chunk to gw-3 (full queue): the replica hears of it
        assert server.send(encode_pipe(PipeUnreachable("gw-3", snapshot=True)))
        notices: list[PipeMessage] = []
        await _until(lambda: _received(client, notices))
        assert notices == [PipeUnreachable("gw-3", snapshot=True)]
        # a restarted replica's connection replaces the old one, which the gateway closes
        second = RaftLinkClient(data_dir)
        assert second.connect()
        await _until(lambda: any(e == "raft_link_closed" for e, _ in log.events))
        assert server.send(encode_pipe(PipeRaft("gw-3", b"to-new", "raft")))
        fresh: list[PipeMessage] = []
        await _until(lambda: _received(second, fresh))
        assert fresh == [PipeRaft("gw-3", b"to-new", "raft")]
        await _until(lambda: client.receive() is None)  # the old one reads end of stream ...
        assert not client.connected and not client.send("gw-2", b"x", "raft")  # ... and falls back
        # the gateway stops: the replica sees the end and cannot reconnect until a new one listens
        server.close()
        await _until(lambda: second.receive() is None)
        assert not RaftLinkClient(data_dir).connect()
        assert not server.send(encode_pipe(PipeRaft("gw-2", b"late", "raft")))

    asyncio.run(main())


def test_frames_cross_both_ways_and_a_new_connection_replaces_the_old(tmp_path: Path) -> None:
    _exchange(tmp_path)


def test_a_data_dir_too_long_for_sun_path_still_works(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    assert len(str(socket_path(deep))) > 108  # a plain bind would fail with "AF_UNIX path too long"
    _exchange(deep)


def test_a_frame_larger_than_the_buffer_limit_crosses_when_nothing_waits(tmp_path: Path) -> None:
    """An InstallSnapshot above BUFFER_LIMIT must still reach the gateway; a second one queued behind it
    is dropped (Raft sends it again) instead of growing the buffer without bound."""
    from actors.raft.gateway_link import BUFFER_LIMIT

    async def main() -> None:
        got: list[PipeRaft] = []
        server = RaftLinkServer(tmp_path, got.append, _Log())
        assert server.start(asyncio.get_running_loop())
        client = RaftLinkClient(tmp_path)
        assert client.connect()
        snapshot = os.urandom(BUFFER_LIMIT + (1 << 20))
        assert client.send("gw-2", snapshot, "raft")
        assert client.pending, "the socket cannot take it at once: the rest waits in the buffer"
        assert not client.send("gw-2", snapshot, "raft")  # dropped: the buffer is not empty
        assert client.status()["dropped"] == 1
        while client.flush():
            await asyncio.sleep(0.001)
        await _until(lambda: len(got) == 1)
        assert got[0].data == snapshot
        server.close()

    asyncio.run(main())
