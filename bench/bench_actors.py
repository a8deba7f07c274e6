"""Actor classes for the benchmarks, importable by module path (multiprocTCPBase forks them by name).

The benchmark process learns a fresh instance's address from an announcement the instance sends to the
benchmark's own external address (passed in as ``announce_to``): the same discovery path is used for the
garrison child and for the bare-Thespian baseline, so the ratio compares restart machinery, not lookups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from thespian.actors import Actor, ActorAddress

from actors.base import SupervisedActor

PING = "ping"
PONG = "pong"
CRASH = "crash"
WHOAMI = "whoami"


@dataclass(frozen=True, slots=True)
class Ready:
    """A fresh instance announcing that it handles messages now."""

    tag: str  # which benchmark child this is (a WorkerSpec id, or "bare")
    incarnation: int
    address: ActorAddress


@dataclass(frozen=True, slots=True)
class Spawn:
    """Ask :class:`BareParent` to create one :class:`BareChild` that announces itself to ``announce_to``."""

    announce_to: ActorAddress
    trial: int


@dataclass(frozen=True, slots=True)
class Announce:
    announce_to: ActorAddress
    trial: int


class RestartProbe(SupervisedActor):
    """Supervised child: announces every fresh instance, answers ``ping``, raises on ``crash``.

    ``args["stateful"]`` makes it a persisting actor (it has a state, so each fresh instance opens the
    node's event log and replays its stream, as a real garrison actor does); otherwise it persists nothing.
    """

    snapshot_every = 0

    def initial_state(self) -> Any:
        if self.config is not None and self.config.args.get("stateful"):
            return {"pings": 0}
        return None

    def apply_event(self, state: Any, event: Any) -> Any:
        return {"pings": state["pings"] + 1}

    def on_start(self, args: dict[str, Any]) -> None:
        assert self.config is not None
        self.send(args["announce_to"], Ready(self.child_id, self.config.incarnation, self.myAddress))

    def on_message(self, msg: object, sender: ActorAddress) -> None:
        if msg == PING:
            self.send(sender, PONG)
        elif msg == CRASH:
            raise RuntimeError("benchmark crash")


class WhoAmI(Actor):  # type: ignore[misc]
    """Answers with the sender's address: how the benchmark learns its own external address."""

    def receiveMessage(self, msg: object, sender: ActorAddress) -> None:
        if msg == WHOAMI:
            self.send(sender, sender)


class Echo(Actor):  # type: ignore[misc]
    """A plain Thespian actor answering ``ping``: the bare ``createActor`` + first answer baseline."""

    def receiveMessage(self, msg: object, sender: ActorAddress) -> None:
        if msg == PING:
            self.send(sender, PONG)


class BareChild(Actor):  # type: ignore[misc]
    """Plain Thespian child that announces itself like :class:`RestartProbe` does."""

    def receiveMessage(self, msg: object, sender: ActorAddress) -> None:
        if isinstance(msg, Announce):
            self.send(msg.announce_to, Ready("bare", msg.trial, self.myAddress))
        elif msg == PING:
            self.send(sender, PONG)


class BareParent(Actor):  # type: ignore[misc]
    """Creates a :class:`BareChild` from inside an actor, as a supervisor does (the benchmark stops the
    previous child itself, outside the timed span)."""

    def receiveMessage(self, msg: object, sender: ActorAddress) -> None:
        if isinstance(msg, Spawn):
            child = self.createActor("bench.bench_actors.BareChild")
            self.send(child, Announce(msg.announce_to, msg.trial))
