"""One node's peer links in a real process, driven by JSON lines on stdin (for the peer-link system tests).

    python -m tests.harness.peer_node CONFIG.json      # a PeerConfig.to_json() object

Commands (one JSON object per line), each answered by one JSON line on stdout:
    {"cmd": "send", "peer": "b", "lanes": ["raft", ...], "count": 3, "size": 10}   -> {"queued": n, "dropped": n}
    {"cmd": "status"}   -> {"status": PeerLinks.status(), "received": {peer: {lane: n}},
                            "last": {peer: {lane: payload}}, "unreachable": {peer: {lane: n}}}
Every payload sent is ``<sender>:<seq>`` padded to ``size``, so a test can see which frames got through.
Logs are the library's structlog JSON lines on stderr.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
from pathlib import Path
from typing import Any

from actors.logs import configure_logging
from supervisors.peer import (
    ForwardFrame,
    GossipFrame,
    Lane,
    PeerConfig,
    PeerLinks,
    RaftFrame,
    SnapshotChunk,
)
from supervisors.peer.frames import LANE_OF, Body


def make_body(lane: str, me: str, peer: str, payload: bytes, seq: int) -> Body:
    if lane == "raft":
        return RaftFrame(sender=me, recipient=peer, payload=payload)
    if lane == "gossip":
        return GossipFrame(sender=me, payload=payload)
    if lane == "forward":
        return ForwardFrame(request_id=seq, payload=payload)
    if lane == "snapshot":
        return SnapshotChunk(sender=me, recipient=peer, snapshot_id="s", offset=seq, data=payload)
    raise ValueError(f"unknown lane {lane!r}")


def payload_of(body: Body) -> bytes:
    return body.data if isinstance(body, SnapshotChunk) else body.payload  # type: ignore[union-attr]


async def main(config_path: str) -> None:
    config = PeerConfig.from_json(json.loads(Path(config_path).read_text()))
    configure_logging("json", config.node)
    received: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    last: dict[str, dict[str, str]] = collections.defaultdict(dict)
    unreachable: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    seq = 0

    def on_frame(peer: str, body: Body) -> None:
        lane = LANE_OF[type(body)].name.lower()
        received[peer][lane] += 1
        last[peer][lane] = payload_of(body).decode(errors="replace").rstrip(".")

    def on_unreachable(peer: str, lane: Lane) -> None:
        unreachable[peer][lane.name.lower()] += 1

    links = PeerLinks(config, on_frame, on_unreachable)
    await links.start()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"ready": links.port}), flush=True)
    while line := await reader.readline():
        cmd: dict[str, Any] = json.loads(line)
        answer: dict[str, Any]
        if cmd["cmd"] == "send":
            queued = dropped = 0
            for _ in range(cmd.get("count", 1)):
                seq += 1
                for lane in cmd["lanes"]:
                    payload = f"{config.node}:{seq}".encode().ljust(cmd.get("size", 0), b".")
                    ok = links.send(cmd["peer"], make_body(lane, config.node, cmd["peer"], payload, seq))
                    queued, dropped = queued + ok, dropped + (not ok)
            answer = {"queued": queued, "dropped": dropped, "seq": seq}
        elif cmd["cmd"] == "status":
            answer = {
                "status": links.status(),
                "received": received,
                "last": last,
                "unreachable": unreachable,
            }
        else:
            answer = {"error": f"unknown command {cmd['cmd']!r}"}
        print(json.dumps(answer), flush=True)
    await links.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
