"""The supervisor actor: executes the pure policy (``supervisors.policy``) over Thespian children.

Why it looks like this:
- Thespian tells a parent only ``ChildActorExited`` (no reason, sometimes twice). Children report crashes
  themselves (``ChildFailed``) and their PID (``ChildSpawned``); an exit of the *current* address with no
  report is a ``lost`` child; an exit of an old address is a duplicate and ignored.
- Work is sequential, as in OTP: children start one at a time in declared order (the next starts when the
  previous reported ``ChildStarted``) and stop one at a time in reverse order, each with its shutdown
  timeout after which its process is SIGKILLed. Exits that arrive while a start/stop sequence runs wait in a
  queue and are decided when it is done.
- The restart history is written to the event log before the directive is carried out.
"""

from __future__ import annotations

import os
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from thespian.actors import ActorAddress, ActorExitRequest

from actors.base import SupervisedActor
from actors.messages import (
    ChildExiting,
    ChildFailed,
    ChildSpawned,
    ChildStarted,
    Configure,
    Location,
    Reconfigure,
    RootEscalated,
    Route,
    StopChild,
    TreeStatus,
    TreeStatusRequest,
    TreeStopped,
    WhereIs,
)
from supervisors.poison import PoisonTrack, input_keys, track_crash
from supervisors.policy import (
    Escalate,
    Forget,
    History,
    RestartChildren,
    decide,
    record_start,
)
from supervisors.process_tree import (
    child_exit_status,
    describe_exit,
    kill_tree,
    record_child_exits,
    signal_name,
)
from supervisors.spec import ChildSpec, ExitKind, SupervisorSpec, child_shutdown_timeout

SUPERVISOR_CLASS = "supervisors.supervisor.Supervisor"
POISON_STREAM = "deadletters/poison"
# messages held per child while it (re)starts; more go to dead letters (the variable is for tests and tuning)
HOLD_LIMIT = int(os.environ.get("GARRISON_HOLD_LIMIT", "1000"))

record_child_exits()  # ChildActorExited has no reason: keep the exit status Thespian reaps


def child_start_timeout(spec: ChildSpec) -> float:
    """How long a child may take to report ``ChildStarted``: a supervisor gets its children's sum, since
    they start one after another."""
    if isinstance(spec, SupervisorSpec):
        return 2.0 + sum(child_start_timeout(c) for c in spec.children)
    return spec.start_timeout


@dataclass
class _Child:
    spec: ChildSpec
    address: ActorAddress | None = None
    incarnation: int = 0
    pid: int | None = None
    status: str = "stopped"  # starting | running | stopping | stopped
    failure: ChildFailed | None = None
    exiting_normally: bool = False
    exit_status: int | None = None  # from the reaped process: < 0 is the signal that killed it


class Supervisor(SupervisedActor):
    """A tree node. ``Configure.extra["spec"]`` is its :class:`SupervisorSpec`."""

    announce_started_after_on_start = False

    def on_start(self, args: dict[str, Any]) -> None:
        assert self.config is not None
        self.spec: SupervisorSpec = self.config.extra["spec"]
        self.is_root = not self.config.supervisor
        self.my_path = self.path
        self.children = {c.id: _Child(c) for c in self.spec.children}
        self.order = [c.id for c in self.spec.children]
        self.rng = random.Random()
        self.history = History.from_json(self.event_log.get_value(self._history_key))
        saved_poison = self.event_log.get_value(self._poison_key) or {}
        self.poison: dict[str, PoisonTrack] = {
            k: t for k, v in saved_poison.items() if (t := PoisonTrack.from_json(v)) is not None
        }
        self.pending_exits: deque[tuple[str, ExitKind]] = deque()
        self.start_queue: deque[str] = deque(self.order)
        self.stop_queue: deque[str] = deque()
        self.after_stop: Callable[[], None] | None = None
        self.initial_start = True
        self.escalated = False
        self.stopping_tree = False
        self.waiting_backoff = False
        # names: messages held per child id while it is not running (delivered in order once it is)
        self.held: dict[str, deque[Route]] = {}
        self.backoff_until: float | None = None
        self.last_exit: dict[str, dict[str, Any]] = {}
        self.restart_times: dict[str, deque[float]] = {}  # for status: restarts in the period
        self.log = self.log.bind(supervisor=self.my_path)
        self._pump()

    @property
    def _history_key(self) -> str:
        return f"supervisor/{self.path}/history"

    @property
    def _poison_key(self) -> str:
        return f"supervisor/{self.path}/poison"

    def _save_history(self) -> None:
        with self.event_log.batch() as batch:
            batch.put_value(self._history_key, self.history.to_json())
            batch.put_value(self._poison_key, {k: t.to_json() for k, t in self.poison.items()})

    # -- starting -----------------------------------------------------------------------------------

    def _start(self, child: _Child) -> None:
        spec = child.spec
        actor_class = SUPERVISOR_CLASS if isinstance(spec, SupervisorSpec) else spec.actor
        child.incarnation += 1
        child.failure, child.exiting_normally, child.pid, child.exit_status = None, False, None, None
        child.address = self.createActor(actor_class)
        child.status = "starting"
        assert self.config is not None
        extra: dict[str, Any] = {"spec": spec} if isinstance(spec, SupervisorSpec) else {}
        track = self.poison.get(spec.id)
        if track is not None and track.input_ref.get("kind") == "stream":
            extra["suspect_input"] = dict(track.input_ref)  # read through it one record at a time
        args = {} if isinstance(spec, SupervisorSpec) else dict(spec.args)
        self.send(
            child.address,
            Configure(
                node=self.config.node,
                supervisor=self.my_path,
                child_id=spec.id,
                args=args,
                data_dir=self.config.data_dir,
                log_format=self.config.log_format,
                incarnation=child.incarnation,
                extra=extra,
            ),
        )
        self.schedule(f"start-timeout:{spec.id}:{child.incarnation}", child_start_timeout(spec))

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
            then()
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
            self.announce_started()

    def _queue_start(self, ids: list[str]) -> None:
        wanted = set(self.start_queue) | set(ids)
        self.start_queue = deque(i for i in self.order if i in wanted)

    def on_message(self, msg: object, sender: ActorAddress) -> None:
        if isinstance(msg, ChildSpawned):
            child = self._current(msg.child_id, msg.incarnation)
            if child is not None:
                child.pid = msg.pid
        elif isinstance(msg, ChildStarted):
            self._on_started(msg)
        elif isinstance(msg, ChildFailed):
            self._on_failed(msg)
        elif isinstance(msg, ChildExiting):
            child = self._current(msg.child_id, msg.incarnation)
            if child is not None:
                child.exiting_normally = True
        elif isinstance(msg, TreeStatusRequest):
            self.send(sender, self.status())
        elif isinstance(msg, Reconfigure):
            self._reconfigure(msg)
        elif isinstance(msg, WhereIs):
            child = self.children.get(msg.child_id)
            address = child.address if child is not None and child.status == "running" else None
            self.send(sender, Location(msg.child_id, address))

    def _reconfigure(self, msg: Reconfigure) -> None:
        head, _, rest = msg.path.partition("/")
        child = self.children.get(head)
        if child is None:
            self.log.warning("reconfigure_unknown_child", path=msg.path)
            return
        if isinstance(child.spec, SupervisorSpec):
            if rest and child.address is not None:
                self.send(child.address, Reconfigure(rest, msg.args))
            return
        child.spec = replace(child.spec, args=dict(msg.args))
        self.spec = replace(self.spec, children=tuple(c.spec for c in self.children.values()))
        self.log.info("child_reconfigured", child=head, args=msg.args)
        # a restart with the new args that is not a failure: no intensity, no backoff
        self.stop_queue.append(head)
        self._queue_start([head])
        self._pump()

    def _restarts_in_period(self) -> int:
        """``restart_count`` in every event and in status: restarts under this supervisor within its
        current intensity period, the number compared with ``intensity`` (persisted, so it keeps counting
        across a node reboot). A child's lifetime count is ``restarts_total``."""
        now = time.time()
        return sum(1 for t in self.history.restarts if t > now - self.spec.period)

    def _current(self, child_id: str, incarnation: int) -> _Child | None:
        child = self.children.get(child_id)
        return child if child is not None and child.incarnation == incarnation else None

    def _on_started(self, msg: ChildStarted) -> None:
        child = self._current(msg.child_id, msg.incarnation)
        if child is None or child.status != "starting":
            return
        child.status, child.pid = "running", msg.pid
        self.history = record_start(self.history, child.spec.id, time.time())
        restarted = child.incarnation > 1
        if restarted:
            self.restart_times.setdefault(child.spec.id, deque(maxlen=1000)).append(time.time())
        self.log.info(
            "child_restarted" if restarted else "child_started",
            child=child.spec.id,
            pid=msg.pid,
            incarnation=child.incarnation,
            restart_count=self._restarts_in_period(),
            restarts_total=self.history.restart_counts.get(child.spec.id, 0),
        )
        self._release_held(child)
        self._pump()

    def _on_failed(self, msg: ChildFailed) -> None:
        child = self._current(msg.child_id, msg.incarnation)
        if child is None or child.status == "stopped":
            return
        child.failure = msg
        if child.pid and child.pid != os.getpid():  # in-process test bases share our pid
            # The report is the crashed instance's last act (it ignores everything after it), so nothing
            # is lost by killing it: SIGKILL is immediate where a graceful ActorExitRequest costs a round
            # trip and Thespian's teardown before ChildActorExited, and its whole subtree goes with it.
            kill_tree(child.pid)
            # SIGKILL cannot be caught or delayed: the instance runs no more code, so its exit is acted on
            # now rather than when Thespian notices it (that ChildActorExited names an address that is no
            # longer current and is ignored as a duplicate; the reaped status it records is overwritten
            # at the next reap of the same pid, so nothing stale is ever read)
            self.on_child_exited(child.address)
        elif child.address is not None:
            self.send(child.address, ActorExitRequest())

    # -- exits --------------------------------------------------------------------------------------

    def on_child_exited(self, address: ActorAddress) -> None:
        child = next((c for c in self.children.values() if c.address == address), None)
        if child is None:
            return  # Thespian may report one exit twice; the second has no current child
        was = child.status
        child.status, child.address = "stopped", None
        child.exit_status = child_exit_status(child.pid)
        if was == "stopping":
            self.log.info("child_stopped", child=child.spec.id, pid=child.pid)
        if was != "stopping" and not (self.escalated or self.stopping_tree):
            if child.failure is not None:
                kind = ExitKind.CRASH
            elif child.exiting_normally:
                kind = ExitKind.NORMAL
            else:
                kind = ExitKind.LOST
            self.pending_exits.append((child.spec.id, kind))
        self._pump()

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
            now=time.time(),
            rng=self.rng,
        )
        self.history = decision.history
        directive = decision.directive
        if kind is ExitKind.CRASH and child.failure is not None:
            self._track_poison(child, child.failure)
        fields: dict[str, Any] = {
            "child": child_id,
            "strategy": str(self.spec.strategy),
            "restart_count": decision.restarts_in_window,
            "restarts_total": self.history.restart_counts.get(child_id, 0),
            "restart_type": str(child.spec.restart),
        }
        if child.failure is not None:
            fields.update(
                reason=child.failure.reason,
                exc_type=child.failure.exc_type,
                traceback_digest=child.failure.traceback_digest,
                location=child.failure.location,
                message_type=child.failure.message_type,
            )
            if child.failure.traceback_text:
                fields["traceback"] = child.failure.traceback_text
            if child.failure.input_ref is not None:
                fields["input"] = child.failure.input_ref
        elif kind is ExitKind.LOST:
            fields["reason"] = describe_exit(child.exit_status)
            if (name := signal_name(child.exit_status)) is not None:
                fields["signal"] = name
            elif child.exit_status is not None:
                fields["exit_code"] = child.exit_status
        else:
            fields["reason"] = str(kind)
        if isinstance(directive, Escalate):
            self.history = replace(self.history, restarts=())  # the parent counts from here on
            self._save_history()
            self._log_exit(kind, fields, "escalate")
            self.log.error(
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
            gone = f"{self.my_path}/{child_id} exited and is not restarted"
            self._flush_held(child_id, "not_restarted", gone)
            return
        assert isinstance(directive, RestartChildren)
        self._log_exit(
            kind, fields, "restart", affected=list(directive.children), backoff_s=round(directive.delay, 3)
        )
        self.stop_queue.extend(reversed(directive.children))
        self._queue_start(list(directive.children))
        if directive.delay > 0:

            def wait_backoff() -> None:
                self.waiting_backoff = True
                self.backoff_until = time.time() + directive.delay
                self.schedule("restart-after-backoff", directive.delay)

            self.after_stop = wait_backoff

    def _track_poison(self, child: _Child, failure: ChildFailed) -> None:
        spec = child.spec
        track, quarantine = track_crash(self.poison.get(spec.id), failure.input_ref, spec.poison_after)
        if track is None:
            self.poison.pop(spec.id, None)
        else:
            self.poison[spec.id] = track
        if quarantine is not None:
            self._quarantine(child, failure, quarantine, spec.poison_after)

    def _quarantine(self, child: _Child, failure: ChildFailed, ref: dict[str, Any], crashes: int) -> None:
        """Move a poison input to ``deadletters/poison`` and tell the child's next instances to skip it,
        in one durable transaction (written before the restart, like the restart history)."""
        path = f"{self.my_path}/{child.spec.id}"
        keys = input_keys(ref)
        letter: dict[str, Any] = {
            "kind": "poison",
            "actor": path,
            "input": ref,
            "reason": failure.reason,
            "exc_type": failure.exc_type,
            "traceback_digest": failure.traceback_digest,
            "traceback": failure.traceback_text,
            "crashes": crashes,
            "quarantined_at": time.time(),
        }
        if ref.get("kind") == "stream":
            records = self.event_log.read(ref["stream"], int(ref["first"]) - 1, len(keys))
            letter["records"] = [{"seq": r.seq, "payload": r.payload} for r in records]
        quarantine_value = f"quarantine/{path}"
        held = list(self.event_log.get_value(quarantine_value) or [])
        with self.event_log.batch() as batch:
            batch.append(POISON_STREAM, letter)
            batch.put_value(quarantine_value, held + [k for k in keys if k not in held])
        self.log.error(
            "poison_quarantined",
            child=child.spec.id,
            input=ref,
            crashes=crashes,
            reason=failure.reason,
            dead_letters=POISON_STREAM,
            seq=batch.assigned[POISON_STREAM][-1],
        )

    def _log_exit(self, kind: ExitKind, fields: dict[str, Any], directive: str, **more: Any) -> None:
        self.last_exit[fields["child"]] = {
            "kind": str(kind),
            "reason": fields.get("reason"),
            "message_type": fields.get("message_type"),
            "directive": directive,
            "at": time.time(),
        }
        if kind is ExitKind.CRASH:
            self.log.error("child_crashed", directive=directive, **fields, **more)
        elif kind is ExitKind.LOST:
            self.log.error("child_lost", directive=directive, **fields, **more)
        else:
            self.log.info("child_exited", directive=directive, **fields, **more)

    # -- stopping -----------------------------------------------------------------------------------

    def _stop_next(self) -> None:
        while self.stop_queue:
            child = self.children[self.stop_queue.popleft()]
            if child.status in ("starting", "running") and child.address is not None:
                child.status = "stopping"
                self.send(child.address, StopChild())
                timeout = child_shutdown_timeout(child.spec)
                self.schedule(f"shutdown-timeout:{child.spec.id}:{child.incarnation}", timeout)
                return
        self._pump()

    def _on_shutdown_timeout(self, child_id: str, incarnation: int) -> None:
        child = self._current(child_id, incarnation)
        if child is None or child.status != "stopping":
            return
        self.log.warning(
            "child_killed",
            child=child_id,
            pid=child.pid,
            reason=f"did not stop within its shutdown_timeout of {child_shutdown_timeout(child.spec)}s",
        )
        self._kill(child)

    def _kill(self, child: _Child) -> None:
        """SIGKILL the child and its whole subtree: a killed supervisor must not leave orphans behind."""
        if child.pid and child.pid != os.getpid():  # in-process test bases share our pid
            victims = kill_tree(child.pid)
            self.log.info("child_tree_killed", child=child.spec.id, pid=child.pid, pids=victims)
        elif child.address is not None:
            self.send(child.address, ActorExitRequest())

    def _escalate(self, reason: str, child_id: str) -> None:
        self.escalated = True
        for held in list(self.held):
            self._flush_held(held, "not_restarted", f"{self.my_path} escalated: {reason}")
        self.pending_exits.clear()
        self.start_queue.clear()
        self.stop_queue.extend(reversed(self.order))

        def report() -> None:
            assert self.config is not None  # a supervisor escalates only once it is configured
            self.log.error(
                "supervisor_escalated",
                reason=reason,
                child=child_id,
                to="node" if self.is_root else self.config.supervisor,
            )
            if self.is_root:
                self.send(self._supervisor_address, RootEscalated(reason, child_id))
                self.send(self.myAddress, ActorExitRequest())
            else:
                self.send(
                    self._supervisor_address,
                    ChildFailed(
                        child_id=self.child_id,
                        incarnation=self.config.incarnation,
                        reason=f"Escalation: {reason}",
                        exc_type="Escalation",
                        traceback_digest="",
                        location=self.my_path,
                        message_type="escalation",
                    ),
                )
                self._crashed = True  # ignore everything until the parent stops this instance

        self.after_stop = report
        self._pump()

    def handle_stop(self, msg: StopChild) -> None:
        """Graceful stop: children in reverse start order, each with its timeout, then this supervisor."""
        self.stopping_tree = True
        for held in list(self.held):
            self._flush_held(held, "not_restarted", f"{self.my_path} is stopping")
        self.pending_exits.clear()
        self.start_queue.clear()
        self.stop_queue.clear()
        self.stop_queue.extend(reversed(self.order))

        def done() -> None:
            if self.is_root:
                self.send(self._supervisor_address, TreeStopped())
            self.send(self.myAddress, ActorExitRequest())

        self.after_stop = done
        self._pump()

    def on_timer(self, name: str) -> None:
        kind, _, rest = name.partition(":")
        if kind == "restart-after-backoff":
            self.waiting_backoff = False
            self.backoff_until = None
            self._pump()
        elif kind == "shutdown-timeout":
            child_id, _, inc = rest.rpartition(":")
            self._on_shutdown_timeout(child_id, int(inc))
        elif kind == "start-timeout":
            child_id, _, inc = rest.rpartition(":")
            child = self._current(child_id, int(inc))
            if child is not None and child.status == "starting" and child.failure is None:
                limit = child_start_timeout(child.spec)
                child.failure = ChildFailed(
                    child_id,
                    child.incarnation,
                    f"StartTimeout: did not finish starting within {limit}s",
                    "StartTimeout",
                    "",
                    "",
                    "on_start",
                )
                self.log.error(
                    "child_start_timeout",
                    child=child_id,
                    path=f"{self.my_path}/{child_id}",
                    pid=child.pid,
                    timeout_s=limit,
                )
                self._kill(child)

    # -- names: routing by tree path ------------------------------------------------------------------

    def on_route(self, route: Route) -> None:
        """Pass a message sent by name toward its path: down to the child whose subtree holds it, up to the
        parent when the path is outside this subtree. The target's own supervisor (this one, when the path
        is one of its workers) delivers it to the running instance, or holds it while the child is not
        running (starting, restarting, in backoff) and delivers it in order once it reported started."""
        prefix = self.my_path + "/"
        if route.path == self.my_path:
            self._dead_letter(route, "no_such_actor", f"{route.path} is a supervisor: it takes no messages")
            return
        if not route.path.startswith(prefix):
            if self.is_root or self._supervisor_address is None:
                reason = f"no actor {route.path!r}: every path starts with the root, {self.my_path!r}"
                self._dead_letter(route, "no_such_actor", reason)
            else:
                self.send(self._supervisor_address, route)
            return
        head, _, below = route.path[len(prefix) :].partition("/")
        child = self.children.get(head)
        if child is None:
            known = ", ".join(self.order) or "none"
            reason = f"{self.my_path} has no child {head!r} (its children: {known})"
            self._dead_letter(route, "no_such_actor", reason)
        elif isinstance(child.spec, SupervisorSpec):
            if not below:
                reason = f"{route.path} is a supervisor: it takes no messages"
                self._dead_letter(route, "no_such_actor", reason)
            elif child.address is not None and child.status in ("starting", "running") and not child.failure:
                self.send(child.address, route)  # a starting supervisor holds for its own children
            else:
                self._hold(child, route)
        elif below:
            self._dead_letter(route, "no_such_actor", f"{self.my_path}/{head} is a worker, not a supervisor")
        elif self._deliverable(child):
            assert child.address is not None
            self.send(child.address, route)
        else:
            self._hold(child, route)

    @staticmethod
    def _deliverable(child: _Child) -> bool:
        return (
            child.status == "running"
            and child.address is not None
            and child.failure is None
            and not child.exiting_normally
        )

    def _will_run(self, child: _Child) -> bool:
        """Whether a child that is not running now will be (started, restarted after its backoff)."""
        if self.escalated or self.stopping_tree:
            return False
        if child.status != "stopped":
            return True
        return child.spec.id in self.start_queue or any(c == child.spec.id for c, _ in self.pending_exits)

    def _hold(self, child: _Child, route: Route) -> None:
        path = f"{self.my_path}/{child.spec.id}"
        if not self._will_run(child):
            self._dead_letter(route, "not_restarted", f"{path} is stopped and will not be restarted")
            return
        queue = self.held.setdefault(child.spec.id, deque())
        if len(queue) >= HOLD_LIMIT:
            reason = f"{path} is {child.status}: its hold of {HOLD_LIMIT} messages is full"
            self._dead_letter(route, "hold_full", reason)
            return
        queue.append(route)
        if len(queue) == 1:
            self.log.info("messages_held", child=child.spec.id, status=child.status, path=path)

    def _release_held(self, child: _Child) -> None:
        queue = self.held.pop(child.spec.id, None)
        if not queue:
            return
        self.log.info("held_messages_delivered", child=child.spec.id, count=len(queue))
        for route in queue:
            self.on_route(route)  # re-routed: delivered now, or held again if it is down again

    def _flush_held(self, child_id: str, kind: str, reason: str) -> None:
        for route in self.held.pop(child_id, deque()):
            self._dead_letter(route, kind, reason)

    def status(self) -> TreeStatus:
        return TreeStatus(
            supervisor=self.my_path,
            children=tuple(
                {
                    "id": c.spec.id,
                    "status": c.status,
                    "pid": c.pid,
                    "incarnation": c.incarnation,
                    "restart_count": self._restarts_in_period(),
                    "supervisor": isinstance(c.spec, SupervisorSpec),
                    **self._status_details(c),
                }
                for c in self.children.values()
            ),
        )

    def _status_details(self, child: _Child) -> dict[str, Any]:
        """What ``garrison status`` shows of a child beyond its state (wall-clock times, seconds)."""
        now = time.time()
        period = float(self.spec.period)
        recent = [t for t in self.restart_times.get(child.spec.id, ()) if now - t <= period]
        started = self.history.last_start.get(child.spec.id) if child.status == "running" else None
        backoff = None
        if self.waiting_backoff and self.backoff_until and child.spec.id in self.start_queue:
            backoff = max(0.0, round(self.backoff_until - now, 3))
        return {
            "path": f"{self.my_path}/{child.spec.id}",
            "uptime_s": round(now - started, 3) if started else None,
            "restarts_in_period": len(recent),
            "period_s": period,
            "restarts_total": self.history.restart_counts.get(child.spec.id, 0),
            "backoff_pending_s": backoff,
            "last_exit": self.last_exit.get(child.spec.id),
            "held_messages": len(self.held.get(child.spec.id, ())),
            "address": child.address if isinstance(child.spec, SupervisorSpec) else None,
        }
