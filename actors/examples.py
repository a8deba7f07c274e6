"""Small example actors: the README's walk-through and the default topology's heartbeat."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from thespian.actors import ActorAddress

from actors.args import ActorArgs
from actors.base import SupervisedActor
from actors.messages import Reply


class NoArgs(ActorArgs):
    """For actors that take no args: any key is a mistake worth reporting."""


class GreeterArgs(ActorArgs):
    counter: str = "counter"  # the name of the actor numbering the visitors (relative: a sibling)


class HeartbeatArgs(ActorArgs):
    interval: float = Field(5.0, gt=0, le=86_400)  # seconds between two heartbeats


class Counter(SupervisedActor):
    """Counts ``"incr"`` messages durably; answers ``"get"`` with the count; ``"boom"`` crashes it."""

    Args = NoArgs

    def initial_state(self) -> dict[str, int]:  # what it persists (event sourced)
        return {"count": 0}

    def apply_event(self, state: dict[str, int], event: dict[str, int]) -> dict[str, int]:
        return {"count": state["count"] + event["delta"]}  # a pure fold: used live and for replay

    def on_message(self, msg: object, sender: ActorAddress) -> None:
        if msg == "incr":
            self.persist({"delta": 1})  # durable (fsync) first, then applied to self.state
            self.send(sender, self.state["count"])  # the sender of an ask: this is the reply
        elif msg == "get":
            self.send(sender, self.state["count"])
        elif msg == "boom":
            raise RuntimeError("asked to crash")


class Heartbeat(SupervisedActor):
    """Logs a ``heartbeat`` event every ``interval`` seconds and persists how many it sent."""

    Args = HeartbeatArgs
    args: HeartbeatArgs

    def initial_state(self) -> dict[str, int]:
        return {"beats": 0}

    def apply_event(self, state: dict[str, int], event: dict[str, Any]) -> dict[str, int]:
        return {"beats": state["beats"] + 1}

    def on_start(self, args: dict[str, Any]) -> None:
        self.interval = self.args.interval
        self.schedule("beat", self.interval)

    def on_timer(self, name: str) -> None:
        self.persist({"beat": self.state["beats"] + 1})
        self.log.info("heartbeat", beats=self.state["beats"])
        self.schedule("beat", self.interval)


class Greeter(SupervisedActor):
    """Greets by name and numbers its visitors by asking the ``counter`` actor (a sibling, by name):
    ``"ada"`` -> ``"hello ada, you are visitor 3"``. It never blocks: the counter's answer (or a timeout)
    arrives later, in ``answer``, while the greeter goes on with other messages."""

    Args = GreeterArgs
    args: GreeterArgs

    def on_message(self, msg: object, sender: ActorAddress) -> None:
        if not isinstance(msg, str):
            return

        def answer(outcome: object) -> None:
            if isinstance(outcome, Reply):
                self.send(sender, f"hello {msg}, you are visitor {outcome.value}")
            else:  # AskTimeout or AskFailed: say so rather than leave the caller waiting
                self.send(sender, f"hello {msg} (no visitor number: {type(outcome).__name__})")

        self.ask(self.args.counter, "incr", timeout=2.0, on_reply=answer)
