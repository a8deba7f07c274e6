"""Actors driven by their args, for tests that run real nodes (importable by module path)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from thespian.actors import ActorAddress

from actors.base import SupervisedActor


class Scripted(SupervisedActor):
    """Counts its starts durably; for the first ``times`` starts, after ``after`` seconds it does
    ``action``: ``crash`` (raise), ``normal`` (stop on its own), ``lost`` (SIGKILL itself), or ``hang``
    (block in a handler, deaf to stop requests); ``none`` does nothing."""

    snapshot_every = 0

    def initial_state(self) -> dict[str, int]:
        return {"starts": 0}

    def apply_event(self, state: dict[str, int], event: dict[str, Any]) -> dict[str, int]:
        return {"starts": state["starts"] + 1}

    def on_start(self, args: dict[str, Any]) -> None:
        self.persist({"started": True})
        self.args = args
        self.log.info("scripted_started", starts=self.state["starts"])
        if args.get("crash_in_start") and self.state["starts"] <= int(args.get("times", 1)):
            raise ValueError("crash in on_start")
        if self.state["starts"] <= int(args.get("times", 1)) and args.get("action", "none") != "none":
            self.schedule("act", float(args.get("after", 0.2)))

    def on_timer(self, name: str) -> None:
        action = self.args.get("action")
        if action == "crash":
            raise RuntimeError(f"scripted crash #{self.state['starts']}")
        if action == "normal":
            self.stop_normally()
        elif action == "lost":
            os.kill(os.getpid(), signal.SIGKILL)
        elif action == "hang":
            time.sleep(3600)

    def on_stop(self) -> None:
        self.log.info("scripted_stopping")


class Accumulator(SupervisedActor):
    """Adds 1 to a persisted count every ``tick`` seconds up to ``target``; when the count reaches
    ``crash_at`` for the first time it corrupts its in-memory count and crashes."""

    snapshot_every = 10

    def initial_state(self) -> dict[str, Any]:
        return {"count": 0, "crashed": False}

    def apply_event(self, state: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
        if event.get("crashed"):
            return {**state, "crashed": True}
        return {**state, "count": state["count"] + event["delta"]}

    def on_start(self, args: dict[str, Any]) -> None:
        self.args = args
        self.log.info("accumulator_recovered", count=self.state["count"])
        self.schedule("tick", float(args.get("tick", 0.01)))

    def on_timer(self, name: str) -> None:
        if self.state["count"] >= int(self.args.get("target", 100)):
            return
        self.persist({"delta": 1})
        if self.state["count"] == int(self.args.get("crash_at", -1)) and not self.state["crashed"]:
            self.persist({"crashed": True})
            self.state["count"] = -999  # corrupt in-memory state: the restart must not see it
            raise RuntimeError("accumulator crash")
        if self.state["count"] == int(self.args.get("target", 100)):
            self.log.info("accumulator_done", count=self.state["count"])
        self.schedule("tick", float(self.args.get("tick", 0.01)))

    def on_message(self, msg: object, sender: ActorAddress) -> None:
        if msg == "get":
            self.send(sender, self.state["count"])


class ForgedProposer(SupervisedActor):
    """After ``after`` s, asks its supervisor for ``target`` and sends it two entries that must be
    rejected by every replica: one with a forged signature, one signed by a node nobody trusts."""

    def on_start(self, args: dict[str, Any]) -> None:
        self.args = args
        self.schedule("go", float(args.get("after", 1.0)))

    def on_timer(self, name: str) -> None:
        from actors.messages import WhereIs

        self.send(self._supervisor_address, WhereIs(self.args["target"]))

    def on_message(self, msg: object, sender: ActorAddress) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from actors.messages import Location
        from actors.raft.replica import ProposeEntry, _decode, _encode, signed_entry

        if not isinstance(msg, Location) or msg.address is None:
            self.schedule("go", 0.2)
            return
        assert self.config is not None
        incident = {"incident_id": "forged-1", "type": "CO_leak", "sensor": "S9"}
        stranger = signed_entry(
            "mallory", {**incident, "incident_id": "stranger-1"}, Ed25519PrivateKey.generate()
        )
        genuine_shape = _decode(signed_entry(self.config.node, incident, Ed25519PrivateKey.generate()))
        forged = _encode(genuine_shape)  # claims to be this node, signed with another key
        self.send(msg.address, ProposeEntry(forged))
        self.send(msg.address, ProposeEntry(stranger))
        self.log.info("forged_entries_sent")
