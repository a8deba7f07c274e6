"""Test-only actors for the Raft replicas (importable by a node's child processes)."""

from __future__ import annotations

from typing import Any

import msgspec
from thespian.actors import ActorAddress

from actors.base import SupervisedActor

_encode = msgspec.msgpack.encode


def malformed_entries(node: str, key: Any) -> list[tuple[str, bytes]]:
    """Entries a bug or an attacker could get committed, each with what is wrong with it. All but the
    last two are correctly signed by ``node``'s own (trusted) key, so only their shape is wrong."""
    from actors.raft.entries import signed_batch, signed_entry

    incident = {"incident_id": "malformed-1", "type": "CO_leak", "sensor": "S9"}
    # a v2 entry whose proof belongs to another batch of the node: its root's signature cannot verify
    v2 = msgspec.msgpack.decode(
        signed_batch(node, [valid_incident(node, f"v2-{i}") for i in range(3)], key)[0]
    )
    other = msgspec.msgpack.decode(
        signed_batch(node, [valid_incident(node, f"w2-{i}") for i in range(3)], key)[0]
    )

    def signed(body: Any) -> bytes:
        raw = _encode(body)
        return _encode({"v": 1, "body": raw, "sig": key.sign(raw)})

    body = _encode({"node": node, "incident": incident})
    return [
        ("no signature", _encode({"v": 1, "body": body})),
        ("string signature", _encode({"v": 1, "body": body, "sig": "not-bytes"})),
        ("node is a list", signed({"node": [node], "incident": incident})),
        ("incident without the schema", signed_entry(node, incident, key)),
        ("v2 proof of another batch", _encode({**v2, "proof": other["proof"]})),
        ("not a map", _encode([1, 2, 3])),
        ("not msgpack", b"\xc1\xc1"),
    ]


def valid_incident(node: str, incident_id: str) -> dict[str, Any]:
    return {
        "incident_id": incident_id,
        "timestamp": 1_700_000_000.0,
        "type": "CO_leak",
        "source_node": node,
        "sensor": "S1",
        "confidence": 0.99,
        "payload": {"pollutant": "CO"},
    }


class MalformedProposer(SupervisedActor):
    """Once the Raft group has a leader, sends it (``ProposeEntries``: the path a follower forwards
    proposals on) the malformed entries above followed by one valid incident ``valid-after-malformed``
    signed with this node's key. args: ``target`` (a replica to ask who leads), ``after`` (s)."""

    def on_start(self, args: dict[str, Any]) -> None:
        self.args = args
        self.sent = False
        self.schedule("ask", float(args.get("after", 0.5)))

    def on_timer(self, name: str) -> None:
        from actors.messages import WhereIs

        if not self.sent:
            self.send(self._supervisor_address, WhereIs(self.args["target"]))

    def on_message(self, msg: object, sender: ActorAddress) -> None:
        from actors.messages import Location, WhereIs
        from actors.raft.entries import signed_entry
        from actors.raft.node_keys import load_or_create_signing_key
        from actors.raft.replica import ProposeEntries, RaftStatus, RaftStatusRequest

        if self.sent:
            return
        if isinstance(msg, Location):
            if msg.address is None:
                self.schedule("ask", 0.2)
            else:
                self.send(msg.address, RaftStatusRequest())
        elif isinstance(msg, RaftStatus):
            if msg.role == "leader":
                assert self.config is not None
                node = self.config.node
                key = load_or_create_signing_key(self.config.data_dir, node)
                entries = [data for _, data in malformed_entries(node, key)]
                entries.append(signed_entry(node, valid_incident(node, "valid-after-malformed"), key))
                self.send(sender, ProposeEntries(tuple(entries)))
                self.sent = True
                self.log.info("malformed_entries_sent", leader=msg.replica, count=len(entries) - 1)
            elif msg.leader is not None:
                self.send(self._supervisor_address, WhereIs(msg.leader))
            else:
                self.schedule("ask", 0.2)
