"""The supervisor actor: the Thespian shell around the pure sequencing core (``supervisors.sequencer``).

It only translates: Thespian messages and timers into the core's events, the core's actions into
Thespian sends, process kills, event-log writes and log lines. What is decided when (start and stop order,
queued exits, restart directives, backoff, escalation, held messages) is the core's, and is replayed by
the transcript tests (``tests/unit/transcripts``).

Why the shell does what it does:
- Thespian names children by address; the core by child id and incarnation. The shell keeps the address of
  each child's current instance: an exit of an address that is no longer current is a duplicate.
- A crashed instance is SIGKILLed as soon as its report is in, and its exit handed to the core at once (a
  SIGKILL cannot be caught or delayed); on in-process test bases (no own pid) it is asked to exit instead.
"""

from __future__ import annotations

import contextlib
import linecache
import os
import random
import signal
import sys
import time
from typing import Any

from thespian.actors import ActorAddress, ActorExitRequest

from actors.base import SupervisedActor, quarantine_key
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
from supervisors.poison import PoisonTrack, input_keys
from supervisors.policy import History
from supervisors.process_tree import (
    child_exit_status,
    describe_exit,
    kill_tree,
    process_exited,
    record_child_exits,
    signal_name,
)
from supervisors.sequencer import (
    Action,
    CreateChild,
    DeadLetter,
    Deliver,
    ForwardReconfigure,
    Kill,
    KillCrashed,
    Log,
    Quarantine,
    ReportEscalated,
    ReportStarted,
    ReportStopped,
    SaveHistory,
    ScheduleTimer,
    SendStop,
    Sequencer,
    child_start_timeout,
)
from supervisors.spec import SupervisorSpec

__all__ = ["HOLD_LIMIT", "POISON_STREAM", "SUPERVISOR_CLASS", "Supervisor", "child_start_timeout"]

SUPERVISOR_CLASS = "supervisors.supervisor.Supervisor"
POISON_STREAM = "deadletters/poison"
# messages held per child while it (re)starts; more go to dead letters (the variable is for tests and tuning)
HOLD_LIMIT = int(os.environ.get("GARRISON_HOLD_LIMIT", "1000"))

record_child_exits()  # ChildActorExited has no reason: keep the exit status Thespian reaps
# s between checks that each child's process still exists (see Supervisor.check_liveness): every
# LIVENESS_S while children were spawned, started or exited in the last LIVENESS_BUSY_FOR_S (when Thespian
# was seen to miss exits), else every LIVENESS_IDLE_S (an idle node must sleep)
LIVENESS_S = 1.0
LIVENESS_BUSY_FOR_S = 10.0
LIVENESS_IDLE_S = 30.0
_LIVENESS_TIMER = "garrison/liveness"  # a child's timer names cannot collide: they are the core's


def lost_fields(status: int | None) -> dict[str, Any]:
    """The log fields of a process that exited without a report: ``reason`` and the signal that killed
    it or its exit code (from the status Thespian reaped)."""
    fields: dict[str, Any] = {"reason": describe_exit(status)}
    if (name := signal_name(status)) is not None:
        fields["signal"] = name
    elif status is not None:
        fields["exit_code"] = status
    return fields


class Supervisor(SupervisedActor):
    """A tree node. ``Configure.extra["spec"]`` is its :class:`SupervisorSpec`."""

    announce_started_after_on_start = False

    def on_start(self, args: dict[str, Any]) -> None:
        assert self.config is not None
        spec: SupervisorSpec = self.config.extra["spec"]
        self.is_root = not self.config.supervisor
        self.my_path = self.path
        saved_poison = self.event_log.get_value(self._poison_key) or {}
        poison = {k: t for k, v in saved_poison.items() if (t := PoisonTrack.from_json(v)) is not None}
        self.core = Sequencer(
            spec,
            path=self.my_path,
            parent=None if self.is_root else self.config.supervisor,
            history=History.from_json(self.event_log.get_value(self._history_key)),
            poison=poison,
            rng=random.Random(),
            hold_limit=HOLD_LIMIT,
        )
        self.addresses: dict[str, ActorAddress] = {}  # child id -> address of its current instance
        self._fence_tokens: dict[str, int] = {}  # child path -> token taken for the instance being created
        self._primed_sources: set[str] = set()  # modules whose source is in linecache (see _spawn)
        self.log = self.log.bind(supervisor=self.my_path)
        self._liveness_due = self._busy_until = 0.0  # monotonic
        self._run(self.core.start(time.time()))
        self._children_busy()

    @property
    def _history_key(self) -> str:
        return f"supervisor/{self.path}/history"

    @property
    def _poison_key(self) -> str:
        return f"supervisor/{self.path}/poison"

    # -- events in ------------------------------------------------------------------------------------

    def on_message(self, msg: object, sender: ActorAddress) -> None:
        if isinstance(msg, ChildSpawned):
            self._children_busy()
            self._run(self.core.child_spawned(msg.child_id, msg.incarnation, msg.pid))
        elif isinstance(msg, ChildStarted):
            self._children_busy()
            self._run(self.core.child_started(msg.child_id, msg.incarnation, msg.pid, time.time()))
        elif isinstance(msg, ChildFailed):
            if msg.failed_ask is not None and msg.failed_ask_to is not None:
                self.send(msg.failed_ask_to, msg.failed_ask)  # the crashed process is about to be killed
            self._run(self.core.child_failed(msg, time.time()))
        elif isinstance(msg, ChildExiting):
            self._run(self.core.child_exiting(msg.child_id, msg.incarnation))
        elif isinstance(msg, TreeStatusRequest):
            self.send(sender, self.status())
        elif isinstance(msg, Reconfigure):
            self._run(self.core.reconfigure(msg.path, msg.args, time.time()))
        elif isinstance(msg, WhereIs):
            child = self.core.children.get(msg.child_id)
            running = child is not None and child.status == "running"
            self.send(sender, Location(msg.child_id, self.addresses.get(msg.child_id) if running else None))

    def on_child_exited(self, address: ActorAddress) -> None:
        child_id = next((i for i, a in self.addresses.items() if a == address), None)
        child = self.core.children.get(child_id) if child_id is not None else None
        if child is None or child.status == "stopped":
            return  # Thespian may report one exit twice; the second names no live instance
        self._exited(child.spec.id, child.incarnation)

    def _exited(self, child_id: str, incarnation: int) -> None:
        self._children_busy()
        child = self.core.children[child_id]
        status = child_exit_status(child.pid)
        self._run(self.core.child_exited(child_id, incarnation, time.time(), lost_fields(status)))

    def on_timer(self, name: str) -> None:
        if name == _LIVENESS_TIMER:
            now = time.monotonic()
            if now < self._liveness_due - 0.05:
                return  # superseded by a sooner check (see _children_busy)
            self.check_liveness()
            self._arm_liveness(LIVENESS_S if now < self._busy_until else LIVENESS_IDLE_S)
            return
        self._run(self.core.timer_fired(name, time.time()))

    def _children_busy(self) -> None:
        """Children are being spawned, started or exit: check their processes every second for a while."""
        now = time.monotonic()
        self._busy_until = now + LIVENESS_BUSY_FOR_S
        if self._liveness_due > now + LIVENESS_S or self._liveness_due == 0.0:
            self._arm_liveness(LIVENESS_S)

    def _arm_liveness(self, seconds: float) -> None:
        self._liveness_due = time.monotonic() + seconds
        self.schedule(_LIVENESS_TIMER, seconds)

    def check_liveness(self) -> None:
        """Take a child whose process is gone (or a zombie) to have exited, as ChildActorExited would have
        said. Thespian reports an exit only from its SIGCHLD handling, and about one SIGKILLed child in
        20-40 was never reported here (its process reaped, no ChildActorExited, in a test that kills three
        children while restarting others): it stayed "running" for ever and was never restarted. A second
        report of the same exit (Thespian's, late) is ignored by the core."""
        for child_id, child in list(self.core.children.items()):
            if child.status not in ("starting", "running") or not child.pid or child.pid == os.getpid():
                continue  # not started yet, already handled, or an in-process test base
            if process_exited(child.pid):
                self._exited(child_id, child.incarnation)

    def handle_stop(self, msg: StopChild) -> None:
        self._run(self.core.stop_requested(time.time()))

    # -- actions out ----------------------------------------------------------------------------------

    def _run(self, actions: list[Action]) -> None:
        # A restart is one durable write: the history that must be on disk before the directive runs, and
        # the fence tokens of the instances it creates (they adopt them instead of writing their own).
        pending: SaveHistory | None = None
        for i, action in enumerate(actions):
            if isinstance(action, SaveHistory):
                if pending is not None:
                    self._save(pending, [])
                pending = action
            elif isinstance(action, CreateChild) and pending is not None:
                creates = [a for a in actions[i:] if isinstance(a, CreateChild)]
                # fork the new instance first: its process boots (~10 ms) while the history commits. It
                # can do nothing before its Configure, which carries its fence token and is sent only
                # once the commit is durable (so it never writes without its token)
                address = self._spawn(action)
                try:
                    self._fence_tokens = self._save(pending, [self._child_path(a.child) for a in creates])
                except BaseException:
                    self.send(address, ActorExitRequest())  # never configured: it did nothing
                    raise
                pending = None
                self._configure_child(
                    action, address, self._fence_tokens.pop(self._child_path(action.child), None)
                )
            elif isinstance(action, CreateChild):
                self._create(action, self._fence_tokens.pop(self._child_path(action.child), None))
            else:
                if pending is not None and not isinstance(action, Log):
                    self._save(pending, [])
                    pending = None
                self._do(action)
        if pending is not None:
            self._save(pending, [])
        self._fence_tokens = {}  # a token serves exactly one instance: never one of a later action list

    def _child_path(self, child: str) -> str:
        return f"{self.my_path}/{child}"

    def _save(self, action: SaveHistory, fence_for: list[str]) -> dict[str, int]:
        with self.event_log.batch() as batch:
            batch.put_value(self._history_key, action.history)
            batch.put_value(self._poison_key, action.poison)
            for owner in fence_for:
                batch.bump_fence(owner)
        return batch.fences

    def _do(self, action: Action) -> None:
        if isinstance(action, Log):
            getattr(self.log, action.level)(action.event, **action.fields)
        elif isinstance(action, CreateChild):
            self._create(action)
        elif isinstance(action, ScheduleTimer):
            self.schedule(action.name, action.seconds)
        elif isinstance(action, SendStop):
            self.send(self.addresses[action.child], StopChild())
        elif isinstance(action, KillCrashed):
            self._kill_crashed(action)
        elif isinstance(action, Kill):
            self._kill(action)
        elif isinstance(action, SaveHistory):
            self._save(action, [])
        elif isinstance(action, Quarantine):
            self._quarantine(action)
        elif isinstance(action, Deliver):
            self.send(self.addresses[action.child], action.message)
        elif isinstance(action, DeadLetter):
            self._dead_letter(action.message, action.kind, action.reason)
        elif isinstance(action, ForwardReconfigure):
            self.send(self.addresses[action.child], Reconfigure(action.path, action.args))
        elif isinstance(action, ReportStarted):
            self.announce_started()
        elif isinstance(action, ReportEscalated):
            self._report_escalated(action)
        elif isinstance(action, ReportStopped):
            if self.is_root:
                self.send(self._supervisor_address, TreeStopped())
            self.send(self.myAddress, ActorExitRequest())

    def _create(self, action: CreateChild, fence_token: int | None = None) -> None:
        self._configure_child(action, self._spawn(action), fence_token)

    def _spawn(self, action: CreateChild) -> ActorAddress:
        """Create the child's process (it waits for its Configure before it does anything)."""
        spec = action.spec
        actor_class = SUPERVISOR_CLASS if isinstance(spec, SupervisorSpec) else spec.actor
        address = self.createActor(actor_class)
        self.addresses[action.child] = address
        self._prime_crash_sources(actor_class)
        return address

    def _prime_crash_sources(self, actor_class: str) -> None:
        """Read the source of the actor's module and of ``actors.base`` into ``linecache`` once: every
        later instance is forked from this process with it, so the crash report an instance sends (its
        traceback, formatted with source lines) reads no files on the restart path (~0.4 ms)."""
        module = actor_class.rpartition(".")[0]
        if module in self._primed_sources:
            return
        self._primed_sources.add(module)
        for name in (module, "actors.base"):
            path = getattr(sys.modules.get(name), "__file__", None)
            if path:
                linecache.getlines(path)

    def _forked_pid(self, address: ActorAddress) -> int | None:
        """The pid of the process Thespian just forked for ``address`` (multiproc bases keep it, as
        ``record_child_exits`` relies on too); None on in-process bases."""
        children = getattr(getattr(self, "_myRef", None), "_child_procs", None) or []
        for info in reversed(children):
            if getattr(info, "childAddr", None) is address:
                pid = getattr(getattr(info, "childProc", None), "pid", None)
                return pid if isinstance(pid, int) and pid != os.getpid() else None
        return None

    def _configure_child(self, action: CreateChild, address: ActorAddress, fence_token: int | None) -> None:
        spec = action.spec
        assert self.config is not None
        extra: dict[str, Any] = {"spec": spec} if isinstance(spec, SupervisorSpec) else {}
        if action.suspect_input is not None:
            extra["suspect_input"] = dict(action.suspect_input)
        if fence_token is not None:
            extra["fence_token"] = fence_token
            # what the instance would read first: handed over with its token, so that one persisting
            # nothing answers without opening the event log (~1 ms of a restart in a fresh process)
            held = self.event_log.get_value(quarantine_key(self._child_path(action.child)))
            extra["quarantine"] = list(held or [])
        pid = self._forked_pid(address)
        if pid is not None:
            # known from the fork: the instance need not report it (a ChildSpawned is its first send, a
            # new connection, ahead of whatever it does in on_start) and it can be killed from now on
            extra["spawned_pid"] = pid
        self.send(
            address,
            Configure(
                node=self.config.node,
                supervisor=self.my_path,
                child_id=action.child,
                args=action.args,
                data_dir=self.config.data_dir,
                log_format=self.config.log_format,
                incarnation=action.incarnation,
                extra=extra,
            ),
        )
        if pid is not None:
            for later in self.core.child_spawned(action.child, action.incarnation, pid):
                self._do(later)

    def _kill_crashed(self, action: KillCrashed) -> None:
        if action.pid and action.pid != os.getpid():  # in-process test bases share our pid
            # The report is the crashed instance's last act (it ignores everything after it), so nothing
            # is lost by killing it: SIGKILL is immediate where a graceful ActorExitRequest costs a round
            # trip and Thespian's teardown before ChildActorExited, and its whole subtree goes with it.
            if action.subtree:
                kill_tree(action.pid)  # its children are actors: all of them at once
            else:
                # a worker's own forks (if any) die with it (PDEATHSIG, set at every fork in a node);
                # kill_tree's walk of /proc cost 3-9 ms of every restart on a loaded 2-core machine
                with contextlib.suppress(ProcessLookupError):  # already gone: handled the same way
                    os.kill(action.pid, signal.SIGKILL)
            # SIGKILL cannot be caught or delayed: the instance runs no more code, so its exit is acted on
            # now rather than when Thespian notices it (that ChildActorExited names an instance already
            # stopped and is ignored as a duplicate; the reaped status it records is overwritten at the
            # next reap of the same pid, so nothing stale is ever read)
            self._exited(action.child, action.incarnation)
        elif action.child in self.addresses:
            self.send(self.addresses[action.child], ActorExitRequest())

    def _kill(self, action: Kill) -> None:
        """SIGKILL the child and its whole subtree: a killed supervisor must not leave orphans behind."""
        if action.pid and action.pid != os.getpid():  # in-process test bases share our pid
            victims = kill_tree(action.pid)
            self.log.info("child_tree_killed", child=action.child, pid=action.pid, pids=victims)
        elif action.child in self.addresses:
            self.send(self.addresses[action.child], ActorExitRequest())

    def _report_escalated(self, action: ReportEscalated) -> None:
        assert self.config is not None
        if self.is_root:
            self.send(self._supervisor_address, RootEscalated(action.reason, action.child))
            self.send(self.myAddress, ActorExitRequest())
            return
        self.send(
            self._supervisor_address,
            ChildFailed(
                child_id=self.child_id,
                incarnation=self.config.incarnation,
                reason=f"Escalation: {action.reason}",
                exc_type="Escalation",
                traceback_digest="",
                location=self.my_path,
                message_type="escalation",
            ),
        )
        self._crashed = True  # ignore everything until the parent stops this instance

    def _quarantine(self, action: Quarantine) -> None:
        """Move a poison input to ``deadletters/poison`` and tell the child's next instances to skip it,
        in one durable transaction (written before the restart, like the restart history)."""
        failure, ref = action.failure, action.input_ref
        path = f"{self.my_path}/{action.child}"
        keys = input_keys(ref)
        letter: dict[str, Any] = {
            "kind": "poison",
            "actor": path,
            "input": ref,
            "reason": failure.reason,
            "exc_type": failure.exc_type,
            "traceback_digest": failure.traceback_digest,
            "traceback": failure.traceback_text,
            "crashes": action.crashes,
            "quarantined_at": action.at,
        }
        if ref.get("kind") == "stream":
            records = self.event_log.read(ref["stream"], int(ref["first"]) - 1, len(keys))
            letter["records"] = [{"seq": r.seq, "payload": r.payload} for r in records]
        quarantine_value = quarantine_key(path)
        held = list(self.event_log.get_value(quarantine_value) or [])
        with self.event_log.batch() as batch:
            batch.append(POISON_STREAM, letter)
            batch.put_value(quarantine_value, held + [k for k in keys if k not in held])
        self.log.error(
            "poison_quarantined",
            child=action.child,
            input=ref,
            crashes=action.crashes,
            reason=failure.reason,
            dead_letters=POISON_STREAM,
            seq=batch.assigned[POISON_STREAM][-1],
        )

    # -- names: routing by tree path ------------------------------------------------------------------

    def on_route(self, route: Route) -> None:
        """Pass a message sent by name toward its path: down to the child whose subtree holds it, up to the
        parent when the path is outside this subtree. The target's own supervisor (this one, when the path
        is one of its workers) delivers it to the running instance, or the core holds it while the child
        is not running (starting, restarting, in backoff) and delivers it in order once it started."""
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
        child = self.core.children.get(head)
        if child is None:
            known = ", ".join(self.core.order) or "none"
            reason = f"{self.my_path} has no child {head!r} (its children: {known})"
            self._dead_letter(route, "no_such_actor", reason)
        elif isinstance(child.spec, SupervisorSpec) and not below:
            self._dead_letter(route, "no_such_actor", f"{route.path} is a supervisor: it takes no messages")
        elif not isinstance(child.spec, SupervisorSpec) and below:
            self._dead_letter(route, "no_such_actor", f"{self.my_path}/{head} is a worker, not a supervisor")
        else:
            self._run(self.core.route(head, route, time.time()))

    def status(self) -> TreeStatus:
        rows = self.core.status(time.time())
        for row in rows:
            live = row["supervisor"] and row["status"] != "stopped"
            row["address"] = self.addresses.get(row["id"]) if live else None
        return TreeStatus(supervisor=self.my_path, children=tuple(rows))
