"""A recorder in place of ``PeerLinks`` for in-process ``Gateway`` tests: what the gateway sends, to whom,
and the peer states it sees (a full queue on demand)."""

from __future__ import annotations

from typing import Any

from supervisors.peer.config import PeerNode
from supervisors.peer.frames import Body

NODES = (
    PeerNode("gw-1", "gateway", "127.0.0.1", 7001),
    PeerNode("gw-2", "gateway", "127.0.0.1", 7002),
    PeerNode("edge-1", "edge", "127.0.0.1", 7003),
)
ROLES = {n.name: n.role for n in NODES}


class FakeLinks:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Body]] = []
        self.states: dict[str, str] = {}
        self.full = False

    def send(self, peer: str, body: Body) -> bool:
        if self.full:
            return False
        self.sent.append((peer, body))
        return True

    def state(self, peer: str) -> str:
        return self.states.get(peer, "down")

    def room(self, peer: str, lane: Any) -> int:
        return 0 if self.full else 1_000_000

    def status(self) -> dict[str, dict[str, Any]]:
        return {n.name: {"state": self.states.get(n.name, "down")} for n in NODES}
