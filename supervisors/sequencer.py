"""The supervisor's start/stop sequencing: a pure state machine, events in, actions out.

Shaped like the Raft core (``actors/raft/core.py``) and etcd-raft's ``Ready``: the Thespian shell
(``supervisors/supervisor.py``) turns what happens to its children into calls of the event methods below
and executes the actions each call returns, in order. No clock (``now`` is an argument), no randomness of
its own (an injected ``random.Random`` draws backoff jitter), no I/O, no Thespian: every sequence can be
replayed from a transcript (``tests/unit/transcripts``) and compared with a golden one.

Why the sequencing looks like this:
- Thespian tells a parent only ``ChildActorExited`` (no reason, sometimes twice). Children report crashes
  themselves (``ChildFailed``) and their PID (``ChildSpawned``); an exit of the *current* incarnation with
  no report is a ``lost`` child; an exit of an old incarnation, or of one already stopped, is a duplicate.
- Work is sequential, as in OTP: children start one at a time in declared order (the next starts when the
  previous reported started) and stop one at a time in reverse order, each with its shutdown timeout after
  which its process is killed. Exits that arrive while a start/stop sequence runs wait in a queue and are
  decided when it is done.
- The restart history is saved before the directive is carried out (``SaveHistory`` precedes the stops
  and starts in the returned actions), and a poison input is quarantined before that.
- Messages sent by name to a child that is not running are held (bounded) and delivered in order once it
  reported started; to a child that will not run again they go to dead letters.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from actors.messages import ChildFailed
from supervisors.poison import PoisonTrack, track_crash
from supervisors.policy import Escalate, Forget, History, RestartChildren, decide, record_start
from supervisors.spec import ChildSpec, ExitKind, SupervisorSpec, child_shutdown_timeout

__all__ = [
    "Action",
    "ChildState",
    "CreateChild",
    "DeadLetter",
    "Deliver",
    "ForwardReconfigure",
    "Kill",
    "KillCrashed",
    "Log",
    "Quarantine",
    "ReportEscalated",
    "ReportStarted",
    "ReportStopped",
    "SaveHistory",
    "ScheduleTimer",
    "SendStop",
    "Sequencer",
    "child_start_timeout",
]

BACKOFF_TIMER = "restart-after-backoff"


def child_start_timeout(spec: ChildSpec) -> float:
    """How long a child may take to report started: a supervisor gets its children's sum, since they
    start one after another."""
    if isinstance(spec, SupervisorSpec):
        return 2.0 + sum(child_start_timeout(c) for c in spec.children)
    return spec.start_timeout


# -- actions: what the shell does, in the order returned -----------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateChild:
    """Create a new instance of ``child`` and configure it with ``args`` (a supervisor gets its spec);
    ``suspect_input`` tells it to read through a suspected poison range one record at a time."""

    child: str
    incarnation: int
    spec: ChildSpec
    args: dict[str, Any]
    suspect_input: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ScheduleTimer:
    """Call :meth:`Sequencer.timer_fired` with ``name`` after ``seconds``."""

    name: str
    seconds: float


@dataclass(frozen=True, slots=True)
class SendStop:
    """Ask the current instance of ``child`` to stop gracefully (its exit follows, or its timeout)."""

    child: str
    incarnation: int


@dataclass(frozen=True, slots=True)
class KillCrashed:
    """The instance reported a crash, its last act: kill it now (``subtree``: with all its descendants,
    it is a supervisor) and report its exit at once; with no usable pid, ask it to exit and report the
    exit when it comes."""

    child: str
    incarnation: int
    pid: int | None
    subtree: bool


@dataclass(frozen=True, slots=True)
class Kill:
    """Kill the instance and its whole subtree (it hangs: a stop or start timeout); its exit is reported
    when the runtime notices it."""

    child: str
    incarnation: int
    pid: int | None


@dataclass(frozen=True, slots=True)
class Log:
    level: str  # info | warning | error
    event: str
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SaveHistory:
    """Persist the restart history and the poison tracks (one durable write) before what follows."""

    history: dict[str, Any]
    poison: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Quarantine:
    """Move ``input_ref`` to the poison dead letters and tell the child's next instances to skip it."""

    child: str
    failure: ChildFailed
    input_ref: dict[str, Any]
    crashes: int
    at: float


@dataclass(frozen=True, slots=True)
class Deliver:
    """Send ``message`` (routed by name) to the current instance of ``child``."""

    child: str
    message: Any


@dataclass(frozen=True, slots=True)
class DeadLetter:
    message: Any
    kind: str  # not_restarted | hold_full
    reason: str


@dataclass(frozen=True, slots=True)
class ForwardReconfigure:
    """Pass a reconfiguration down to the child supervisor ``child`` (``path`` is below it)."""

    child: str
    path: str
    args: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ReportStarted:
    """Every child is up after the initial start: tell the parent this supervisor accepts work."""


@dataclass(frozen=True, slots=True)
class ReportEscalated:
    """Every child is stopped after the intensity was exceeded: report the failure to the parent."""

    reason: str
    child: str


@dataclass(frozen=True, slots=True)
class ReportStopped:
    """Every child is stopped after a stop request: this supervisor may exit."""


Action = (
    CreateChild
    | ScheduleTimer
    | SendStop
    | KillCrashed
    | Kill
    | Log
    | SaveHistory
    | Quarantine
    | Deliver
    | DeadLetter
    | ForwardReconfigure
    | ReportStarted
    | ReportEscalated
    | ReportStopped
)


# -- what runs once the stop phase is over (a value, not a closure: it prints and compares) ----------------


@dataclass(frozen=True, slots=True)
class _WaitBackoff:
    delay: float


@dataclass(frozen=True, slots=True)
class _Escalation:
    reason: str
    child: str


@dataclass(frozen=True, slots=True)
class _TreeStopped:
    pass


_AfterStop = _WaitBackoff | _Escalation | _TreeStopped


@dataclass
class ChildState:
    spec: ChildSpec
    incarnation: int = 0
    pid: int | None = None
    status: str = "stopped"  # starting | running | stopping | stopped
    failure: ChildFailed | None = None
    exiting_normally: bool = False
    lost: dict[str, Any] = field(default_factory=dict)  # how a process that left no report ended
    removed: bool = False  # a temporary bystander stopped for good (OTP deletes its spec)


class Sequencer:
    """One supervisor's children: their states, the start/stop queues and the held messages."""

    def __init__(
        self,
        spec: SupervisorSpec,
        *,
        path: str,
        parent: str | None,
        history: History,
        poison: dict[str, PoisonTrack],
        rng: random.Random,
        hold_limit: int,
    ) -> None:
        self.spec = spec
        self.path = path
        self.parent = parent  # None: this is the root, it escalates to the node
        self.history = history
        self.poison = dict(poison)
        self.rng = rng
        self.hold_limit = hold_limit
        self.children = {c.id: ChildState(c) for c in spec.children}
        self.order = [c.id for c in spec.children]
        self.pending_exits: deque[tuple[str, ExitKind]] = deque()
        self.start_queue: deque[str] = deque(self.order)
        self.stop_queue: deque[str] = deque()
        self.after_stop: _AfterStop | None = None
        self.initial_start = True
        self.escalated = False
        self.stopping_tree = False
        self.waiting_backoff = False
        self.backoff_until: float | None = None
        self.held: dict[str, deque[Any]] = {}
        self.last_exit: dict[str, dict[str, Any]] = {}
        self.restart_times: dict[str, deque[float]] = {}  # for status: restarts in the period
        self.now = 0.0
        self._out: list[Action] = []

    # -- events ---------------------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        """The supervisor is configured: start the children in declared order."""
        self.now = now
        self._pump()
        return self._take()

    def child_spawned(self, child_id: str, incarnation: int, pid: int) -> list[Action]:
        child = self.current(child_id, incarnation)
        if child is not None:
            child.pid = pid
        return self._take()

    def child_started(self, child_id: str, incarnation: int, pid: int, now: float) -> list[Action]:
        self.now = now
        child = self.current(child_id, incarnation)
        if child is None or child.status != "starting":
            return self._take()
        child.status, child.pid = "running", pid
        self.history = record_start(self.history, child_id, now)
        restarted = child.incarnation > 1
        if restarted:
            self.restart_times.setdefault(child_id, deque(maxlen=1000)).append(now)
        self._log(
            "info",
            "child_restarted" if restarted else "child_started",
            child=child_id,
            pid=pid,
            incarnation=child.incarnation,
            restart_count=self.restarts_in_period(),
            restarts_total=self.history.restart_counts.get(child_id, 0),
        )
        self._release_held(child_id)
        self._pump()
        return self._take()

    def child_failed(self, report: ChildFailed, now: float) -> list[Action]:
        """A child's crash report (its last act: it handles nothing after it)."""
        self.now = now
        child = self.current(report.child_id, report.incarnation)
        if child is None or child.status == "stopped":
            return self._take()
        child.failure = report
        self._emit(KillCrashed(report.child_id, child.incarnation, child.pid, _is_supervisor(child.spec)))
        return self._take()

    def child_exiting(self, child_id: str, incarnation: int) -> list[Action]:
        """The child is exiting on its own accord: its coming exit is normal."""
        child = self.current(child_id, incarnation)
        if child is not None:
            child.exiting_normally = True
        return self._take()

    def child_exited(
        self, child_id: str, incarnation: int, now: float, lost: dict[str, Any] | None = None
    ) -> list[Action]:
        """The instance's process is gone. ``lost``: the log fields describing how, used when it left no
        report (``reason`` and ``signal`` or ``exit_code``)."""
        self.now = now
        child = self.current(child_id, incarnation)
        if child is None or child.status == "stopped":
            return self._take()  # Thespian may report one exit twice
        was = child.status
        child.status = "stopped"
        child.lost = dict(lost or {})
        if was == "stopping":
            self._log("info", "child_stopped", child=child_id, pid=child.pid)
        elif not (self.escalated or self.stopping_tree):
            if child.failure is not None:
                kind = ExitKind.CRASH
            elif child.exiting_normally:
                kind = ExitKind.NORMAL
            else:
                kind = ExitKind.LOST
            self.pending_exits.append((child_id, kind))
        self._pump()
        return self._take()

    def timer_fired(self, name: str, now: float) -> list[Action]:
        self.now = now
        kind, _, rest = name.partition(":")
        if kind == BACKOFF_TIMER:
            self.waiting_backoff = False
            self.backoff_until = None
            self._pump()
        elif kind == "shutdown-timeout":
            child_id, _, inc = rest.rpartition(":")
            self._on_shutdown_timeout(child_id, int(inc))
        elif kind == "start-timeout":
            child_id, _, inc = rest.rpartition(":")
            self._on_start_timeout(child_id, int(inc))
        return self._take()

    def stop_requested(self, now: float) -> list[Action]:
        """Graceful stop: children in reverse start order, each with its timeout, then this supervisor."""
        self.now = now
        self.stopping_tree = True
        self._flush_all_held(f"{self.path} is stopping")
        self.pending_exits.clear()
        self.start_queue.clear()
        self.stop_queue.clear()
        self.stop_queue.extend(reversed(self.order))
        self.after_stop = _TreeStopped()
        self._pump()
        return self._take()

    def reconfigure(self, path: str, args: dict[str, Any], now: float) -> list[Action]:
        """New args for the worker at ``path`` (relative to this supervisor): restart it with them."""
        self.now = now
        head, _, rest = path.partition("/")
        child = self.children.get(head)
        if child is None:
            self._log("warning", "reconfigure_unknown_child", path=path)
            return self._take()
        if isinstance(child.spec, SupervisorSpec):
            if rest and child.status != "stopped":
                self._emit(ForwardReconfigure(head, rest, dict(args)))
            return self._take()
        child.spec = replace(child.spec, args=dict(args))
        self.spec = replace(self.spec, children=tuple(c.spec for c in self.children.values()))
        self._log("info", "child_reconfigured", child=head, args=args)
        # a restart with the new args that is not a failure: no intensity, no backoff
        self.stop_queue.append(head)
        self._queue_start([head])
        self._pump()
        return self._take()

    def route(self, child_id: str, message: Any, now: float) -> list[Action]:
        """A message sent by name to ``child_id`` (a worker) or below it (a supervisor child): delivered
        to the running instance, held while it is not running, dead-lettered if it will not run again.
        A starting supervisor takes messages for its subtree: it holds them for its own children."""
        self.now = now
        self._route(self.children[child_id], message)
        return self._take()

    def _route(self, child: ChildState, message: Any) -> None:
        child_id = child.spec.id
        if isinstance(child.spec, SupervisorSpec):
            deliverable = child.status in ("starting", "running") and child.failure is None
        else:
            deliverable = child.status == "running" and child.failure is None and not child.exiting_normally
        if deliverable:
            self._emit(Deliver(child_id, message))
        else:
            self._hold(child, message)

    # -- queries --------------------------------------------------------------------------------------

    def current(self, child_id: str, incarnation: int) -> ChildState | None:
        child = self.children.get(child_id)
        return child if child is not None and child.incarnation == incarnation else None

    def restarts_in_period(self) -> int:
        """``restart_count`` in every event and in status: restarts under this supervisor within its
        current intensity period, the number compared with ``intensity`` (persisted, so it keeps counting
        across a node reboot). A child's lifetime count is ``restarts_total``."""
        return sum(1 for t in self.history.restarts if t > self.now - self.spec.period)

    def status(self, now: float) -> list[dict[str, Any]]:
        """What ``garrison status`` shows of each child (wall-clock times, seconds)."""
        self.now = now
        rows = []
        for c in self.children.values():
            child_id = c.spec.id
            period = float(self.spec.period)
            recent = [t for t in self.restart_times.get(child_id, ()) if now - t <= period]
            started = self.history.last_start.get(child_id) if c.status == "running" else None
            backoff = None
            if self.waiting_backoff and self.backoff_until and child_id in self.start_queue:
                backoff = max(0.0, round(self.backoff_until - now, 3))
            rows.append(
                {
                    "id": child_id,
                    "status": c.status,
                    "pid": c.pid,
                    "incarnation": c.incarnation,
                    "restart_count": self.restarts_in_period(),
                    "supervisor": _is_supervisor(c.spec),
                    "path": f"{self.path}/{child_id}",
                    "uptime_s": round(now - started, 3) if started else None,
                    "restarts_in_period": len(recent),
                    "period_s": period,
                    "restarts_total": self.history.restart_counts.get(child_id, 0),
                    "restarts_by_reason": dict(self.history.restart_kinds.get(child_id, {})),
                    "backoff_pending_s": backoff,
                    "last_exit": self.last_exit.get(child_id),
                    "held_messages": len(self.held.get(child_id, ())),
                }
            )
        return rows

    # -- the sequencing -------------------------------------------------------------------------------

    def _take(self) -> list[Action]:
        out, self._out = self._out, []
        return out

    def _emit(self, action: Action) -> None:
        self._out.append(action)

    def _log(self, level: str, event: str, **fields: Any) -> None:
        self._out.append(Log(level, event, fields))

    def _pump(self) -> None:
        """Advance the work in OTP's order: finish a stop phase, decide queued exits, then start children
        in declared order one at a time; when nothing is left, the tree is up."""
        if any(c.status == "stopping" for c in self.children.values()):
            return  # wait for that child's exit (or its shutdown timeout)
        if self.stop_queue:
            self._stop_next()
            return
        if self.after_stop is not None:
            then, self.after_stop = self.after_stop, None
            self._after_stop(then)
            return
        if self.pending_exits and not (self.escalated or self.stopping_tree):
            child_id, kind = self.pending_exits.popleft()
            self._apply_policy(child_id, kind)
            self._pump()
            return
        if self.waiting_backoff or self.escalated or self.stopping_tree:
            return
        if any(c.status == "starting" for c in self.children.values()):
            return
        while self.start_queue:
            child = self.children[self.start_queue.popleft()]
            if child.status == "stopped":
                self._start(child)
                return
        if self.initial_start:
            self.initial_start = False
            self._emit(ReportStarted())

    def _after_stop(self, then: _AfterStop) -> None:
        if isinstance(then, _WaitBackoff):
            self.waiting_backoff = True
            self.backoff_until = self.now + then.delay
            self._emit(ScheduleTimer(BACKOFF_TIMER, then.delay))
        elif isinstance(then, _Escalation):
            to = "node" if self.parent is None else self.parent
            self._log("error", "supervisor_escalated", reason=then.reason, child=then.child, to=to)
            self._emit(ReportEscalated(then.reason, then.child))
        else:
            self._emit(ReportStopped())

    def _queue_start(self, ids: list[str]) -> None:
        wanted = set(self.start_queue) | set(ids)
        self.start_queue = deque(i for i in self.order if i in wanted)

    def _start(self, child: ChildState) -> None:
        spec = child.spec
        child.incarnation += 1
        child.failure, child.exiting_normally, child.pid, child.lost = None, False, None, {}
        child.removed = False
        child.status = "starting"
        track = self.poison.get(spec.id)
        suspect = None
        if track is not None and track.input_ref.get("kind") == "stream":
            suspect = dict(track.input_ref)  # read through it one record at a time
        args = {} if isinstance(spec, SupervisorSpec) else dict(spec.args)
        self._emit(CreateChild(spec.id, child.incarnation, spec, args, suspect))
        self._emit(ScheduleTimer(f"start-timeout:{spec.id}:{child.incarnation}", child_start_timeout(spec)))

    def _stop_next(self) -> None:
        while self.stop_queue:
            child = self.children[self.stop_queue.popleft()]
            if child.status in ("starting", "running"):
                child.status = "stopping"
                self._emit(SendStop(child.spec.id, child.incarnation))
                timeout = child_shutdown_timeout(child.spec)
                self._emit(ScheduleTimer(f"shutdown-timeout:{child.spec.id}:{child.incarnation}", timeout))
                return
        self._pump()

    def _on_shutdown_timeout(self, child_id: str, incarnation: int) -> None:
        child = self.current(child_id, incarnation)
        if child is None or child.status != "stopping":
            return
        limit = child_shutdown_timeout(child.spec)
        reason = f"did not stop within its shutdown_timeout of {limit}s"
        self._log("warning", "child_killed", child=child_id, pid=child.pid, reason=reason)
        self._emit(Kill(child_id, incarnation, child.pid))

    def _on_start_timeout(self, child_id: str, incarnation: int) -> None:
        child = self.current(child_id, incarnation)
        if child is None or child.status != "starting" or child.failure is not None:
            return
        limit = child_start_timeout(child.spec)
        reason = f"StartTimeout: did not finish starting within {limit}s"
        child.failure = ChildFailed(child_id, incarnation, reason, "StartTimeout", "", "", "on_start")
        self._log(
            "error",
            "child_start_timeout",
            child=child_id,
            path=f"{self.path}/{child_id}",
            pid=child.pid,
            timeout_s=limit,
        )
        self._emit(Kill(child_id, incarnation, child.pid))

    def _apply_policy(self, child_id: str, kind: ExitKind) -> None:
        child = self.children[child_id]
        decision = decide(
            strategy=self.spec.strategy,
            intensity=self.spec.intensity,
            period=self.spec.period,
            children=self.spec.children,
            history=self.history,
            child=child_id,
            kind=kind,
            now=self.now,
            rng=self.rng,
        )
        self.history = decision.history
        directive = decision.directive
        if kind is ExitKind.CRASH and child.failure is not None:
            self._track_poison(child, child.failure)
        fields = self._exit_fields(child, kind, decision.restarts_in_window)
        if isinstance(directive, Escalate):
            self.history = replace(self.history, restarts=())  # the parent counts from here on
            self._save_history()
            self._log_exit(kind, fields, "escalate")
            self._log(
                "error",
                "restart_intensity_exceeded",
                child=child_id,
                restart_count=decision.restarts_in_window,
                intensity=self.spec.intensity,
                period=self.spec.period,
                strategy=str(self.spec.strategy),
            )
            self._escalate(directive.reason, child_id)
            return
        self._save_history()
        if isinstance(directive, Forget):
            self._log_exit(kind, fields, "ignore")
            self._flush_held(child_id, f"{self.path}/{child_id} exited and is not restarted")
            return
        assert isinstance(directive, RestartChildren)
        more: dict[str, Any] = {"affected": list(directive.children), "backoff_s": round(directive.delay, 3)}
        if directive.not_restarted:
            more["not_restarted"] = list(directive.not_restarted)
        self._log_exit(kind, fields, "restart", **more)
        for other in directive.not_restarted:  # temporary bystanders: stopped for good, as in OTP
            self.children[other].removed = True
            self._flush_held(
                other, f"{self.path}/{other} is temporary: stopped with {child_id}, not restarted"
            )
        stopped = set(directive.children) | set(directive.not_restarted)
        self.stop_queue.extend(reversed([i for i in self.order if i in stopped]))
        self._queue_start(list(directive.children))
        if directive.delay > 0:
            self.after_stop = _WaitBackoff(directive.delay)

    def _exit_fields(self, child: ChildState, kind: ExitKind, restarts_in_window: int) -> dict[str, Any]:
        child_id = child.spec.id
        fields: dict[str, Any] = {
            "child": child_id,
            "strategy": str(self.spec.strategy),
            "restart_count": restarts_in_window,
            "restarts_total": self.history.restart_counts.get(child_id, 0),
            "restart_type": str(child.spec.restart),
        }
        failure = child.failure
        if failure is not None:
            fields.update(
                reason=failure.reason,
                exc_type=failure.exc_type,
                traceback_digest=failure.traceback_digest,
                location=failure.location,
                message_type=failure.message_type,
            )
            if failure.traceback_text:
                fields["traceback"] = failure.traceback_text
            if failure.input_ref is not None:
                fields["input"] = failure.input_ref
        elif kind is ExitKind.LOST:
            fields.update(child.lost or {"reason": "process exited without a report"})
        else:
            fields["reason"] = str(kind)
        return fields

    def _log_exit(self, kind: ExitKind, fields: dict[str, Any], directive: str, **more: Any) -> None:
        self.last_exit[fields["child"]] = {
            "kind": str(kind),
            "reason": fields.get("reason"),
            "message_type": fields.get("message_type"),
            "directive": directive,
            "at": self.now,
        }
        if kind is ExitKind.CRASH:
            self._log("error", "child_crashed", directive=directive, **fields, **more)
        elif kind is ExitKind.LOST:
            self._log("error", "child_lost", directive=directive, **fields, **more)
        else:
            self._log("info", "child_exited", directive=directive, **fields, **more)

    def _save_history(self) -> None:
        poison = {k: t.to_json() for k, t in self.poison.items()}
        self._emit(SaveHistory(self.history.to_json(), poison))

    def _track_poison(self, child: ChildState, failure: ChildFailed) -> None:
        spec = child.spec
        track, quarantine = track_crash(self.poison.get(spec.id), failure.input_ref, spec.poison_after)
        if track is None:
            self.poison.pop(spec.id, None)
        else:
            self.poison[spec.id] = track
        if quarantine is not None:
            self._emit(Quarantine(spec.id, failure, quarantine, spec.poison_after, self.now))

    def _escalate(self, reason: str, child_id: str) -> None:
        self.escalated = True
        self._flush_all_held(f"{self.path} escalated: {reason}")
        self.pending_exits.clear()
        self.start_queue.clear()
        self.stop_queue.extend(reversed(self.order))
        self.after_stop = _Escalation(reason, child_id)
        self._pump()

    # -- held messages (names) ------------------------------------------------------------------------

    def _will_run(self, child: ChildState) -> bool:
        """Whether a child that is not running now will be (started, restarted after its backoff)."""
        if self.escalated or self.stopping_tree or child.removed:
            return False
        if child.status != "stopped":
            return True
        child_id = child.spec.id
        return child_id in self.start_queue or any(c == child_id for c, _ in self.pending_exits)

    def _hold(self, child: ChildState, message: Any) -> None:
        child_id = child.spec.id
        path = f"{self.path}/{child_id}"
        if not self._will_run(child):
            reason = f"{path} is stopped and will not be restarted"
            if child.removed:
                reason = f"{path} is temporary: stopped with a restarting sibling, it is not restarted"
            self._emit(DeadLetter(message, "not_restarted", reason))
            return
        queue = self.held.setdefault(child_id, deque())
        if len(queue) >= self.hold_limit:
            reason = f"{path} is {child.status}: its hold of {self.hold_limit} messages is full"
            self._emit(DeadLetter(message, "hold_full", reason))
            return
        queue.append(message)
        if len(queue) == 1:
            self._log("info", "messages_held", child=child_id, status=child.status, path=path)

    def _release_held(self, child_id: str) -> None:
        queue = self.held.pop(child_id, None)
        if not queue:
            return
        self._log("info", "held_messages_delivered", child=child_id, count=len(queue))
        for message in queue:
            self._route(self.children[child_id], message)  # delivered now, or held again if it is down again

    def _flush_held(self, child_id: str, reason: str) -> None:
        for message in self.held.pop(child_id, deque()):
            self._emit(DeadLetter(message, "not_restarted", reason))

    def _flush_all_held(self, reason: str) -> None:
        for child_id in list(self.held):
            self._flush_held(child_id, reason)


def _is_supervisor(spec: ChildSpec) -> bool:
    return isinstance(spec, SupervisorSpec)
