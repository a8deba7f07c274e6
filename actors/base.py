"""``SupervisedActor``: the base class of every garrison actor (the thin Thespian shell).

What a subclass writes::

    class Counter(SupervisedActor):
        def initial_state(self) -> dict:          # what it persists (event sourced)
            return {"count": 0}
        def apply_event(self, state: dict, event: dict) -> dict:
            return {"count": state["count"] + event["delta"]}
        def on_start(self, args: dict) -> None:   # state is already recovered here
            ...
        def on_message(self, msg: object, sender: ActorAddress) -> None:
            if msg == "incr":
                self.persist({"delta": 1})        # durable first, then applied to self.state
                self.send(sender, self.state["count"])

Failure semantics (why this class exists): Thespian retries a message whose handler raised on the SAME
instance and then bounces it as ``PoisonMessage``, keeping possibly corrupt state. Here an exception from
``on_start``, ``on_message`` or ``on_timer`` is a **crash** that happens exactly once: it is caught before
Thespian can retry, reported to the supervisor as ``ChildFailed`` (reason, traceback digest, message type),
the instance stops handling messages, and the supervisor replaces it with a fresh instance that recovers its
state from the event log (latest snapshot + replay of later events) before it handles anything new.

Every method here runs in the actor's own process (one OS process per actor on ``multiprocTCPBase``).
"""

from __future__ import annotations

import hashlib
import os
import traceback
from datetime import timedelta
from typing import Any

from thespian.actors import (
    Actor,
    ActorAddress,
    ActorExitRequest,
    ChildActorExited,
    PoisonMessage,
    WakeupMessage,
)

from actors.eventlog import EventLog, open_event_log
from actors.logs import configure_logging, get_logger
from actors.messages import (
    ChildExiting,
    ChildFailed,
    ChildSpawned,
    ChildStarted,
    Configure,
    StopChild,
)

__all__ = ["SupervisedActor", "crash_report"]

_TIMER = "garrison.timer"


def crash_report(child_id: str, incarnation: int, exc: BaseException, msg: object) -> ChildFailed:
    frames = traceback.extract_tb(exc.__traceback__)
    where = [f"{os.path.basename(f.filename)}:{f.name}:{f.lineno}" for f in frames]
    digest = hashlib.sha256("|".join([type(exc).__name__, *where]).encode()).hexdigest()[:12]
    last = frames[-1] if frames else None
    text = str(exc).splitlines()[0] if str(exc) else ""
    return ChildFailed(
        child_id=child_id,
        incarnation=incarnation,
        reason=f"{type(exc).__name__}: {text}"[:500],
        exc_type=type(exc).__name__,
        traceback_digest=digest,
        location=f"{last.filename}:{last.lineno}" if last else "?",
        message_type=type(msg).__name__,
    )


class SupervisedActor(Actor):  # type: ignore[misc]
    """Base class for supervised actors. Override the ``on_*`` hooks; see the module docstring."""

    #: take a snapshot of ``self.state`` every this many persisted events (0 = never)
    snapshot_every: int = 200
    #: after a snapshot, delete the events it covers (retention); False keeps the full history
    compact_on_snapshot: bool = True
    #: False for actors that are ready only later (a supervisor: once its children run)
    announce_started_after_on_start: bool = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config: Configure | None = None
        self.state: Any = None
        self._log_seq = 0
        self._snapshot_seq = 0
        self._crashed = False
        self._stash: list[tuple[object, ActorAddress]] = []
        self._supervisor_address: ActorAddress | None = None
        self._event_log: EventLog | None = None
        self.log: Any = get_logger()

    # -- hooks for subclasses -----------------------------------------------------------------------

    def initial_state(self) -> Any:
        """State before any event was persisted. ``None`` means the actor persists nothing."""
        return None

    def apply_event(self, state: Any, event: Any) -> Any:
        """Pure fold: the state after ``event``. Used for live updates and for replay on recovery."""
        raise NotImplementedError(f"{type(self).__name__} persists events but has no apply_event")

    def on_start(self, args: dict[str, Any]) -> None:
        """Called once per instance, after recovery, before any other message is handled."""

    def on_message(self, msg: object, sender: ActorAddress) -> None:
        """Called for every application message."""

    def on_timer(self, name: str) -> None:
        """Called when a timer scheduled with :meth:`schedule` fires."""

    def on_stop(self) -> None:
        """Called on a graceful stop (not after a crash, not when killed)."""

    def on_child_exited(self, address: ActorAddress) -> None:
        """Called when an actor this actor created exits (supervisors override this)."""

    # -- services for subclasses --------------------------------------------------------------------

    @property
    def child_id(self) -> str:
        return self.config.child_id if self.config else "?"

    @property
    def path(self) -> str:
        """Stable identity across restarts: supervisor path + child id."""
        if self.config is None:
            return "?"
        return (
            f"{self.config.supervisor}/{self.config.child_id}"
            if self.config.supervisor
            else (self.config.child_id)
        )

    @property
    def event_log(self) -> EventLog:
        if self._event_log is None:
            if self.config is None:
                raise RuntimeError("the event log is available from on_start on")
            self._event_log = open_event_log(os.path.join(self.config.data_dir, "eventlog"))
        return self._event_log

    @property
    def state_stream(self) -> str:
        return f"actor/{self.path}"

    def persist(self, *events: Any) -> None:
        """Durably append ``events`` to this actor's stream (one group commit), then apply them."""
        if not events:
            return
        state = self.state
        for event in events:
            state = self.apply_event(state, event)
        with self.event_log.batch() as batch:
            for event in events:
                batch.append(self.state_stream, event)
            new_seq = self._log_seq + len(events)
            if self.snapshot_every and new_seq - self._snapshot_seq >= self.snapshot_every:
                batch.save_snapshot(self.state_stream, new_seq, state)
                if self.compact_on_snapshot:
                    batch.compact(self.state_stream, new_seq)
                self._snapshot_seq = new_seq
        self._log_seq = batch.assigned[self.state_stream][-1]
        self.state = state

    def schedule(self, name: str, seconds: float) -> None:
        """Deliver ``on_timer(name)`` after ``seconds`` (timers die with the instance)."""
        self.wakeupAfter(timedelta(seconds=seconds), payload=(_TIMER, name))

    def stop_normally(self) -> None:
        """Exit on this actor's own accord: a normal exit, which a transient child is not restarted for."""
        if self.config and self._supervisor_address is not None:
            self.send(self._supervisor_address, ChildExiting(self.child_id, self.config.incarnation))
        self.send(self.myAddress, ActorExitRequest())

    # -- the shell ----------------------------------------------------------------------------------

    def _recover(self) -> None:
        self.state = self.initial_state()
        if self.state is None:
            return
        log = self.event_log
        snap = log.load_snapshot(self.state_stream)
        after = 0
        if snap is not None:
            after, self.state = snap
        for record in log.iter(self.state_stream, after):
            self.state = self.apply_event(self.state, record.payload)
            after = record.seq
        self._log_seq = max(after, log.last_seq(self.state_stream))
        self._snapshot_seq = snap[0] if snap else 0

    def _configure(self, cfg: Configure, sender: ActorAddress) -> None:
        self.config = cfg
        self._supervisor_address = sender
        configure_logging(cfg.log_format, cfg.node)
        self.log = get_logger(actor=self.path)
        self.send(sender, ChildSpawned(cfg.child_id, cfg.incarnation, os.getpid(), os.getsid(0)))
        self._recover()
        self.on_start(dict(cfg.args))
        if self.announce_started_after_on_start:
            self.announce_started()
        stash, self._stash = self._stash, []
        for msg, from_ in stash:
            self._dispatch(msg, from_)

    def announce_started(self) -> None:
        """Tell the supervisor this instance accepts work (supervisors call it once their children run)."""
        if self.config is not None and self._supervisor_address is not None:
            cfg = self.config
            self.send(
                self._supervisor_address,
                ChildStarted(cfg.child_id, cfg.incarnation, os.getpid(), os.getsid(0)),
            )

    def _crash(self, exc: BaseException, msg: object) -> None:
        self._crashed = True
        report = crash_report(self.child_id, self.config.incarnation if self.config else 0, exc, msg)
        if self._supervisor_address is not None:
            self.send(self._supervisor_address, report)
        else:  # nobody to report to: exit so that at least the parent sees ChildActorExited
            self.send(self.myAddress, ActorExitRequest())

    def _dispatch(self, msg: object, sender: ActorAddress) -> None:
        if (
            isinstance(msg, WakeupMessage)
            and isinstance(msg.payload, tuple)
            and (len(msg.payload) == 2 and msg.payload[0] == _TIMER)
        ):
            self.on_timer(msg.payload[1])
        elif isinstance(msg, StopChild):
            self.handle_stop(msg)
        else:
            self.on_message(msg, sender)

    def handle_stop(self, msg: StopChild) -> None:
        """Graceful stop requested by the supervisor (supervisors override to stop children first)."""
        self.on_stop()
        self.send(self.myAddress, ActorExitRequest())

    def receiveMessage(self, msg: object, sender: ActorAddress) -> None:
        if self._crashed or isinstance(msg, PoisonMessage):
            return
        if isinstance(msg, ActorExitRequest):
            return
        if isinstance(msg, ChildActorExited):
            self._guard(self.on_child_exited, msg, msg.childAddress)
            return
        if isinstance(msg, Configure):
            if self.config is None:
                self._guard(self._configure, msg, msg, sender)
            return
        if self.config is None:
            self._stash.append((msg, sender))
            return
        self._guard(self._dispatch, msg, msg, sender)

    def _guard(self, fn: Any, msg: object, *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:
            self._crash(exc, msg)
