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

import dataclasses
import gc
import hashlib
import os
import pickle
import signal
import traceback
from datetime import timedelta
from typing import Any, ClassVar

from thespian.actors import (
    Actor,
    ActorAddress,
    ActorExitRequest,
    ChildActorExited,
    PoisonMessage,
    ThespianWatch,
    WakeupMessage,
    WatchMessage,
)

from actors.args import validate_args
from actors.eventlog import EventLog, FencedOff, Record, open_event_log
from actors.logs import configure_logging, get_logger
from actors.messages import (
    AskFailed,
    AskTimeout,
    ChildExiting,
    ChildFailed,
    ChildSpawned,
    ChildStarted,
    Configure,
    Reply,
    Route,
    StopChild,
)
from actors.names import BadPath, resolve
from actors.wakeups import Inbox, wake_dir

__all__ = ["SupervisedActor", "crash_report", "input_of_message", "quarantine_key"]

_TIMER = "garrison.timer"
_ASK = "garrison.ask"  # wakeup payload tag of an ask's timeout
_CATCH_UP = "garrison/catch-up"  # internal timers (a user timer cannot have these names)
_SAFETY_NET = "garrison/safety-net"
# Thespian skips socket I/O while a wakeup is already due: a zero-delay timer would hold up every send
# (ChildStarted included) for as long as the actor keeps rescheduling it. A millisecond lets I/O run.
_YIELD_S = 0.002
SAFETY_NET_S = 5.0  # subscribed streams are also read this often, in case a doorbell ring was lost
_TRACEBACK_LIMIT = 8000  # characters of traceback text carried in a crash report (the digest names the bug)
_FATAL_SIGNALS = (signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGABRT)
EXIT_FENCED = 75  # exit status of an instance whose writes were fenced off by a newer instance


def quarantine_key(path: str) -> str:
    """Event-log value holding the inputs quarantined for the actor at ``path`` (see poison quarantine)."""
    return f"quarantine/{path}"


def message_label(msg: object) -> str:
    """What on-call reads as the cause of a crash: ``on_start``, ``timer:<name>`` or the message class."""
    if isinstance(msg, Route):  # a message sent by name: its body is what the actor handled
        msg = msg.body
    if isinstance(msg, Configure):
        return "on_start"
    payload = getattr(msg, "payload", None) if isinstance(msg, WakeupMessage) else None
    if isinstance(payload, tuple) and len(payload) == 2 and payload[0] == _TIMER:
        return f"timer:{payload[1]}"
    return type(msg).__name__


def input_of_message(msg: object) -> dict[str, Any] | None:
    """The identity of a mailbox message for poison quarantine: its class and a digest of its content.
    Timers, lifecycle and Thespian's own messages are not inputs (they carry nothing to quarantine)."""
    if isinstance(msg, Route):  # the body by name: the same poison whoever sent it, however routed
        msg = msg.body
    if isinstance(msg, WakeupMessage | Configure | StopChild | ChildActorExited | PoisonMessage):
        return None
    if isinstance(msg, ActorExitRequest):
        return None
    try:
        raw = pickle.dumps(msg, protocol=4)
    except Exception:
        raw = repr(msg).encode(errors="replace")
    digest = hashlib.sha256(raw).hexdigest()[:16]
    return {"kind": "message", "message_type": type(msg).__name__, "digest": digest}


def crash_report(
    child_id: str,
    incarnation: int,
    exc: BaseException,
    msg: object,
    input_ref: dict[str, Any] | None = None,
) -> ChildFailed:
    frames = traceback.extract_tb(exc.__traceback__)
    where = [f"{os.path.basename(f.filename)}:{f.name}:{f.lineno}" for f in frames]
    digest = hashlib.sha256("|".join([type(exc).__name__, *where]).encode()).hexdigest()[:12]
    last = frames[-1] if frames else None
    text = str(exc).splitlines()[0] if str(exc) else ""
    full = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if len(full) > _TRACEBACK_LIMIT:  # keep the innermost frames: they name the bug
        full = "...\n" + full[-_TRACEBACK_LIMIT:]
    return ChildFailed(
        child_id=child_id,
        incarnation=incarnation,
        reason=f"{type(exc).__name__}: {text}"[:500],
        exc_type=type(exc).__name__,
        traceback_digest=digest,
        location=f"{last.filename}:{last.lineno}" if last else "?",
        message_type=message_label(msg),
        traceback_text=full,
        input_ref=input_ref,
    )


def _restore_fatal_signals() -> None:
    """Thespian installs a Python handler for every catchable signal. For SIGSEGV/SIGBUS/SIGFPE/SIGILL the
    handler returns into the faulting instruction, which faults again: 100 % CPU forever, never reported.
    The default disposition kills the process; its supervisor then reports the signal (``child_lost``)."""
    for sig in _FATAL_SIGNALS:
        if callable(signal.getsignal(sig)):  # only Thespian's Python handlers; leave C-level ones alone
            signal.signal(sig, signal.SIG_DFL)


class SupervisedActor(Actor):
    """Base class for supervised actors. Override the ``on_*`` hooks; see the module docstring."""

    #: take a snapshot of ``self.state`` every this many persisted events (0 = never)
    snapshot_every: int = 200
    #: after a snapshot, delete the events it covers (retention); False keeps the full history
    compact_on_snapshot: bool = True
    #: False for actors that are ready only later (a supervisor: once its children run)
    announce_started_after_on_start: bool = True
    #: subscribed streams are also read this often (s), in case a doorbell ring was lost in a restart
    safety_net_s: float = SAFETY_NET_S
    #: the schema of this actor's ``args`` (see ``actors.args``): checked at load and before ``on_start``,
    #: which then finds the validated instance in ``self.args``; None keeps ``args`` an unchecked dict
    Args: ClassVar[type[Any] | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config: Configure | None = None
        self.state: Any = None
        self.args: Any = {}  # the validated ``Args`` instance (or the raw dict without a schema)
        self._log_seq = 0
        self._snapshot_seq = 0
        self._crashed = False
        self._stash: list[tuple[object, ActorAddress]] = []
        self._supervisor_address: ActorAddress | None = None
        self._event_log: EventLog | None = None
        self.log: Any = get_logger()
        self._quarantined: set[str] = set()
        self._quarantined_messages = False
        self._current_input: dict[str, Any] | None = None
        self._suspect: dict[str, Any] | None = None
        self._asks: dict[str, tuple[Any, str]] = {}  # request id -> (callback or None, path)
        self._ask_seq = 0
        self._replying_to: ReplyAddress | None = None  # the ask being handled now, if any
        self._subscriptions: dict[str, Inbox] = {}
        self._watched: dict[int, tuple[str, str]] = {}
        self._safety_net_armed = False
        self._wake_again_pending = False
        self._wake_again_wanted = False
        _restore_fatal_signals()

    # -- hooks for subclasses -----------------------------------------------------------------------

    def initial_state(self) -> Any:
        """State before any event was persisted. ``None`` means the actor persists nothing."""
        return None

    def apply_event(self, state: Any, event: Any) -> Any:
        """Pure fold: the state after ``event``. Used for live updates and for replay on recovery."""
        raise NotImplementedError(f"{type(self).__name__} persists events but has no apply_event")

    def on_start(self, args: dict[str, Any]) -> None:
        """Called once per instance, after recovery, before any other message is handled. ``args`` is the
        worker's raw ``args`` dict; an actor with an ``Args`` schema reads ``self.args`` instead."""

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
            log = open_event_log(os.path.join(self.config.data_dir, "eventlog"))
            # fence before the first read: an older instance of this path can no longer write, so what
            # this instance recovers is final (no orphan appends behind its back)
            given = self.config.extra.get("fence_token")
            if isinstance(given, int):  # taken by the supervisor in its own restart write: no fsync here
                log.adopt_fence(self.path, given)
                self.fence_token = given
            else:
                self.fence_token = log.acquire_fence(self.path)
            self._event_log = log
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

    # -- poison quarantine (inputs that crashed this actor N times in a row are set aside) ------------

    def input_limit(self, stream: str, default: int) -> int:
        """How many records of ``stream`` to take in one go: 1 while isolating a record suspected of
        crashing the previous instance (so the crash names one record), else ``default``."""
        suspect = self._suspect
        return 1 if suspect is not None and suspect.get("stream") == stream else default

    def admit(self, records: list[Record]) -> list[Record]:
        """The records of a batch this instance may process: quarantined ones are left out (their offsets
        still advance: they are kept in ``deadletters/poison``). Until the handler returns, a crash is
        reported against this batch's range, which is how the supervisor finds a poison record."""
        if not records:
            return records
        first, last = records[0], records[-1]
        suspect = self._suspect
        if suspect is not None and suspect.get("stream") == first.stream and first.seq > suspect["last"]:
            self._suspect = None  # past the suspected range without a crash: back to normal batches
        kept = records
        if self._quarantined:  # the common case has nothing quarantined: no key per record
            kept = [r for r in records if f"{r.stream}@{r.seq}" not in self._quarantined]
            for record in records:
                if f"{record.stream}@{record.seq}" in self._quarantined:
                    self.log.warning("poison_skipped", stream=record.stream, seq=record.seq)
        self._current_input = {"kind": "stream", "stream": first.stream, "first": first.seq, "last": last.seq}
        return kept

    def mark_input(self, stream: str, seq: int) -> None:
        """Name the one record being processed now, for consumers that work record by record across
        handler calls (a crash until the handler returns is reported against it)."""
        self._current_input = {"kind": "stream", "stream": stream, "first": seq, "last": seq}

    def _load_quarantine(self) -> None:
        assert self.config is not None
        handed = self.config.extra.get("quarantine")
        if isinstance(handed, list) and isinstance(self.config.extra.get("fence_token"), int):
            # read for us by the supervisor, which also fenced older instances off: an instance that
            # persists nothing need not open the event log before it starts (it adopts its token on first use)
            keys = handed
        else:
            keys = self.event_log.get_value(quarantine_key(self.path)) or []
        self._quarantined = {str(k) for k in keys}
        self._quarantined_messages = any(k.startswith("message:") for k in self._quarantined)
        suspect = self.config.extra.get("suspect_input")
        self._suspect = (
            dict(suspect) if isinstance(suspect, dict) and suspect.get("kind") == "stream" else None
        )

    def _is_quarantined_message(self, msg: object) -> bool:
        if not self._quarantined_messages:
            return False
        ref = input_of_message(msg)
        if ref is None or f"message:{ref['message_type']}:{ref['digest']}" not in self._quarantined:
            return False
        self.log.warning("poison_skipped", message_type=ref["message_type"], digest=ref["digest"])
        return True

    # -- event-driven input: stream doorbells and watched fds ---------------------------------------

    def subscribe(self, *streams: str) -> None:
        """Call :meth:`on_appended` whenever a producer durably appends to one of ``streams`` (and once
        right after this call, to catch up). A slow safety-net timer calls it too, in case a ring was lost
        while this actor was restarting. Read after your offset in ``on_appended`` as before."""
        assert self.config is not None
        root = wake_dir(self.config.data_dir)
        for stream in streams:
            if stream in self._subscriptions:
                continue
            inbox = Inbox(root, stream, self.path)
            self._subscriptions[stream] = inbox
            self._watched[inbox.fd] = ("stream", stream)
        self.schedule(_CATCH_UP, _YIELD_S)
        if not self._safety_net_armed:
            self._safety_net_armed = True
            self.schedule(_SAFETY_NET, self.safety_net_s)

    def wake_again(self) -> None:
        """Call :meth:`on_appended` again as soon as Thespian has had its turn: a consumer with a backlog
        does one bounded batch per call and asks for more, so its mailbox (a stop request) and its
        outgoing messages are never held up behind a long catch-up."""
        self._wake_again_wanted = True  # scheduled when the handler returns (see receiveMessage)

    def watch_fd(self, fd: int, name: str) -> None:
        """Call :meth:`on_ready` with ``name`` when ``fd`` is readable (a self-pipe from a library's
        network thread, a socket). The actor must read it, or it is called again at once."""
        self._watched[fd] = ("fd", name)

    def unwatch_fd(self, fd: int) -> None:
        self._watched.pop(fd, None)

    def on_appended(self, stream: str) -> None:
        """Records were appended to a subscribed ``stream`` (see :meth:`subscribe`)."""

    def on_ready(self, name: str) -> None:
        """A watched fd is readable (see :meth:`watch_fd`)."""

    def _on_watch(self, ready: list[int]) -> None:
        streams = []
        for fd in ready:
            kind, name = self._watched.get(fd, ("", ""))
            if kind == "stream":
                self._subscriptions[name].drain()
                streams.append(name)
            elif kind == "fd":
                self.on_ready(name)
        for stream in streams:
            self.on_appended(stream)

    def _on_internal_timer(self, name: str) -> None:
        if name == _CATCH_UP:
            self._wake_again_pending = False
        if name == _SAFETY_NET:
            self.schedule(_SAFETY_NET, self.safety_net_s)
        for stream in list(self._subscriptions):
            self.on_appended(stream)

    def schedule(self, name: str, seconds: float) -> None:
        """Deliver ``on_timer(name)`` after ``seconds`` (timers die with the instance)."""
        self.wakeupAfter(timedelta(seconds=seconds), payload=(_TIMER, name))

    def stop_normally(self) -> None:
        """Exit on this actor's own accord: a normal exit, which a transient child is not restarted for."""
        if self.config and self._supervisor_address is not None:
            self.send(self._supervisor_address, ChildExiting(self.child_id, self.config.incarnation))
        self.send(self.myAddress, ActorExitRequest())

    # -- names: tell / ask / reply by tree path ---------------------------------------------------------

    def tell(self, path: str, msg: object) -> None:
        """Send ``msg`` to the actor named ``path`` (absolute ``root/x`` or relative to this actor's
        supervisor: ``sibling``, ``../x``). Delivered to the current instance; held while it restarts; a
        path that does not exist goes to dead letters (``message_dead_lettered``)."""
        self._route(path, msg, None)

    def ask(self, path: str, msg: object, timeout: float = 5.0, on_reply: Any = None) -> str:
        """Send ``msg`` to ``path`` and return at once a request id. The outcome arrives later, never by
        blocking: a :class:`Reply` (``.value``), an :class:`AskTimeout` after ``timeout`` s, or an
        :class:`AskFailed` (no such actor...), passed to ``on_reply(outcome)`` when given, else to
        ``on_message(outcome, sender)``."""
        self._ask_seq += 1
        inc = self.config.incarnation if self.config else 0
        request_id = f"{self.path}#{inc}.{self._ask_seq}"
        self._asks[request_id] = (on_reply, path)
        self.wakeupAfter(timedelta(seconds=timeout), payload=(_ASK, request_id, path, timeout))
        self._route(path, msg, request_id)
        return request_id

    def reply(self, value: object) -> None:
        """Answer the ask being handled (a tell has nobody waiting: then nothing is sent)."""
        if self._replying_to is None:
            self.log.info("reply_without_ask", message_type=type(value).__name__)
            return
        self.send(self._replying_to, value)

    def send(self, targetAddr: Any, msg: Any) -> None:
        # the ``sender`` of an ask: a value sent to it is the answer, wrapped with the request id
        if isinstance(targetAddr, ReplyAddress):
            value = msg if isinstance(msg, Reply) else Reply(targetAddr.request_id, msg)
            super().send(targetAddr.reply_to, value)
            return
        super().send(targetAddr, msg)

    def _route(self, path: str, msg: object, request_id: str | None) -> None:
        supervisor = self.config.supervisor if self.config else ""
        try:
            target = resolve(path, supervisor if supervisor else self.path if self.config else "")
        except BadPath as exc:
            bad = Route(str(path), msg, self.myAddress, self.path, request_id)
            self._dead_letter(bad, "bad_path", str(exc))
            return
        route = Route(target, msg, self.myAddress, self.path, request_id)
        if self._supervisor_address is None or not supervisor:
            self.on_route(route)  # the root routes for itself (a supervisor overrides on_route)
            return
        self.send(self._supervisor_address, route)

    def _dead_letter(self, route: Route, kind: str, reason: str) -> None:
        from actors.routing import dead_letter

        log = self._event_log if self._event_log is not None or self.config is None else self.event_log
        dead_letter(self.log, log, route, kind, reason, at=self.path)
        if route.request_id is not None and route.reply_to is not None:
            self.send(route.reply_to, AskFailed(route.request_id, route.path, kind, reason))

    def on_route(self, route: Route) -> None:
        """A message sent by name reached this actor: handle its body (supervisors route it on)."""
        if route.request_id is not None and route.reply_to is not None:
            self._replying_to = ReplyAddress(route.reply_to, route.request_id)
            sender: Any = self._replying_to
        else:
            sender = route.reply_to
        try:
            self.on_message(route.body, sender)
        finally:
            self._replying_to = None

    def _ask_outcome(self, outcome: Reply | AskTimeout | AskFailed, sender: Any) -> None:
        pending = self._asks.pop(outcome.request_id, None)
        if pending is None:  # answered after its timeout (or a duplicate): the asker already moved on
            self.log.info("ask_outcome_late", request_id=outcome.request_id, outcome=type(outcome).__name__)
            return
        callback, _path = pending
        if callback is not None:
            callback(outcome)
        else:
            self.on_message(outcome, sender)

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
        if cfg.extra.get("spawned_pid") != os.getpid():  # else the supervisor has it from the fork
            self.send(sender, ChildSpawned(cfg.child_id, cfg.incarnation, os.getpid(), os.getsid(0)))
        self._load_quarantine()  # opens the event log (fencing older instances off) unless handed over
        self._recover()
        schema = type(self).Args
        # validated here too (not only at load): a Reconfigure or a test can hand the actor any dict
        self.args = validate_args(schema, cfg.args, type(self).__name__) if schema else dict(cfg.args)
        self.on_start(dict(cfg.args))
        # What this instance built to start (modules, a model session, recovered state) lives as long as
        # the process: keep it out of the cyclic GC's full collections, which otherwise walk all of it
        # (20-35 ms measured in a node's processes: a whole detection-latency budget, in the middle of
        # whatever message was being handled) each time enough younger objects survived. Objects made
        # later are collected as before; a cycle among the frozen ones is never freed (none is built to
        # be dropped). A child forked from here inherits them frozen, so its collections skip them too.
        gc.freeze()
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
        if isinstance(exc, FencedOff):
            # a newer instance of this path owns its state: stop at once, write nothing, report nothing
            # (the supervisor, if it is still alive, no longer counts this instance as current)
            self.log.error("instance_fenced", reason=str(exc), pid=os.getpid())
            if _in_own_process():
                os._exit(EXIT_FENCED)
            self.send(self.myAddress, ActorExitRequest())
            return
        input_ref = self._current_input or input_of_message(msg)
        report = crash_report(
            self.child_id, self.config.incarnation if self.config else 0, exc, msg, input_ref
        )
        if isinstance(msg, Route) and msg.request_id is not None and msg.reply_to is not None:
            # the asker learns at once that its ask crashed the actor, instead of waiting for a timeout;
            # the supervisor sends it (this process is killed as soon as the report is in)
            failed = AskFailed(msg.request_id, msg.path, "crashed", report.reason)
            report = dataclasses.replace(report, failed_ask=failed, failed_ask_to=msg.reply_to)
        if self._supervisor_address is not None:
            self.send(self._supervisor_address, report)
        else:  # nobody to report to: answer the asker, then exit so the parent sees ChildActorExited
            if report.failed_ask is not None:
                self.send(report.failed_ask_to, report.failed_ask)
            self.send(self.myAddress, ActorExitRequest())

    def _dispatch(self, msg: object, sender: ActorAddress) -> None:
        if (
            isinstance(msg, WakeupMessage)
            and isinstance(msg.payload, tuple)
            and (len(msg.payload) == 2 and msg.payload[0] == _TIMER)
        ):
            name = msg.payload[1]
            if name in (_CATCH_UP, _SAFETY_NET):
                self._on_internal_timer(name)
            else:
                self.on_timer(name)
        elif isinstance(msg, WakeupMessage) and isinstance(msg.payload, tuple) and msg.payload[:1] == (_ASK,):
            _tag, request_id, path, timeout = msg.payload
            if request_id in self._asks:
                self._ask_outcome(AskTimeout(request_id, path, timeout), self.myAddress)
        elif isinstance(msg, Route):
            self.on_route(msg)
        elif isinstance(msg, Reply | AskTimeout | AskFailed) and msg.request_id in self._asks:
            self._ask_outcome(msg, sender)
        elif isinstance(msg, StopChild):
            self.handle_stop(msg)
        else:
            self.on_message(msg, sender)

    def handle_stop(self, msg: StopChild) -> None:
        """Graceful stop requested by the supervisor (supervisors override to stop children first)."""
        self.on_stop()
        self.send(self.myAddress, ActorExitRequest())

    def receiveMessage(self, msg: object, sender: ActorAddress) -> ThespianWatch | None:
        self._take(msg, sender)
        if self._wake_again_wanted and not self._wake_again_pending and not self._crashed:
            # timed from the end of the handler: a wakeup that is already due when the handler returns
            # would make Thespian skip its socket I/O (see _YIELD_S)
            self._wake_again_pending = True
            self.schedule(_CATCH_UP, _YIELD_S)
        self._wake_again_wanted = False
        # Thespian watches the fds this returns until the next message: the stream doorbells (FIFOs) and
        # any fd the actor asked to watch wake this actor from its own select loop, with no timer
        if self._watched and not self._crashed:
            return ThespianWatch(list(self._watched))
        return None

    def _take(self, msg: object, sender: ActorAddress) -> None:
        # (not ``_receive``: Thespian's simple base keeps its own ``_receive`` on the actor instance)
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
        if isinstance(msg, WatchMessage):
            self._guard(self._on_watch, msg, list(msg.ready))
            return
        if self._is_quarantined_message(msg):
            return
        self._guard(self._dispatch, msg, msg, sender)

    def _guard(self, fn: Any, msg: object, *args: Any) -> None:
        # BaseException: sys.exit() and KeyboardInterrupt in a handler are crashes reported as what they
        # are, not a silent exit of the process (Thespian would log them as text and go on or die)
        try:
            fn(*args)
        except BaseException as exc:
            self._crash(exc, msg)
        else:
            self._current_input = None


class ReplyAddress(ActorAddress):
    """The ``sender`` an actor sees for an ask: sending to it (``self.send(sender, value)``, as the README's
    Counter does) delivers ``Reply(request_id, value)`` to the asker. To plain Thespian it is the asker's
    address."""

    def __init__(self, reply_to: ActorAddress, request_id: str) -> None:
        super().__init__(reply_to.addressDetails)
        self.reply_to = reply_to
        self.request_id = request_id


def _in_own_process() -> bool:
    """True on the multi-process bases (each actor forked into its own process after this module was
    imported), where exiting the process stops exactly this instance; on in-process test bases it would
    take the test runner down."""
    return os.getpid() != _IMPORT_PID


_IMPORT_PID = os.getpid()
