"""Small example actors: the README's walk-through and the default topology's heartbeat."""

from __future__ import annotations

from typing import Any

from thespian.actors import ActorAddress

from actors.base import SupervisedActor


class Counter(SupervisedActor):
    """Counts ``"incr"`` messages durably; answers ``"get"`` with the count; ``"boom"`` crashes it."""

    def initial_state(self) -> dict[str, int]:
        return {"count": 0}

    def apply_event(self, state: dict[str, int], event: dict[str, int]) -> dict[str, int]:
        return {"count": state["count"] + event["delta"]}

    def on_message(self, msg: object, sender: ActorAddress) -> None:
        if msg == "incr":
            self.persist({"delta": 1})
            self.send(sender, self.state["count"])
        elif msg == "get":
            self.send(sender, self.state["count"])
        elif msg == "boom":
            raise RuntimeError("asked to crash")


class Heartbeat(SupervisedActor):
    """Logs a ``heartbeat`` event every ``interval`` seconds and persists how many it sent."""

    def initial_state(self) -> dict[str, int]:
        return {"beats": 0}

    def apply_event(self, state: dict[str, int], event: dict[str, Any]) -> dict[str, int]:
        return {"beats": state["beats"] + 1}

    def on_start(self, args: dict[str, Any]) -> None:
        self.interval = float(args.get("interval", 5.0))
        self.schedule("beat", self.interval)

    def on_timer(self, name: str) -> None:
        self.persist({"beat": self.state["beats"] + 1})
        self.log.info("heartbeat", beats=self.state["beats"])
        self.schedule("beat", self.interval)
