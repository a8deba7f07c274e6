"""The node launcher: one ActorSystem per node, the root supervisor, and what a root escalation means.

Thespian gives top-level actors no parent, so this process stands in for the root's parent: it receives
``RootEscalated`` and exits non-zero (a service manager restarts the node), turns SIGINT/SIGTERM into a
graceful stop in reverse start order, and after ``shutdown()`` kills any process of the node's session that
is still alive, so that nothing of the node is left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from actors.eventlog import EventLogError
from actors.logs import configure_logging, get_logger
from actors.messages import (
    ChildFailed,
    ChildSpawned,
    ChildStarted,
    Configure,
    ControlConfigure,
    ControlReady,
    Reconfigure,
    RootEscalated,
    StopChild,
    TreeStopped,
)
from supervisors.control_paths import remove_control_files
from supervisors.identity import Identity, NodeStateMismatch, check_identity, secure_data_dir
from supervisors.process_tree import holders_of, link_forked_children, pid_alive
from supervisors.spec import ChildSpec, SupervisorSpec, WorkerSpec
from supervisors.supervisor import SUPERVISOR_CLASS, child_start_timeout
from supervisors.thespian_env import (
    ADMIN_PORTS,
    SYSTEM_BASE,
    free_loopback_ports,
    prepare_environment,
    processes_in_session,
)
from supervisors.topology import NodeConfig, TopologyError, load_topology

EXIT_OK = 0
EXIT_ESCALATED = 1
EXIT_START_FAILED = 3
EXIT_LAUNCHER_FAILED = 4  # a bug in the launcher itself: the traceback follows node_stopped
SHUTDOWN_GRACE_S = 2.0  # for actor processes to finish exiting after Thespian's shutdown returned
ROOT_START_MARGIN_S = 5.0  # beyond the root's own start timeout (its children's, summed)
TOPOLOGY_CHECK_S = 1.0


class NodeAlreadyRunning(Exception):
    """Another launcher holds this node's data_dir."""


@dataclass
class _RootState:
    pid: int | None = None
    session: int | None = None
    started: bool = False
    escalation: RootEscalated | None = None
    failure: ChildFailed | None = None  # the root itself crashed (at start: it could not start)
    tree_stopped: bool = False


class NodeRunner:
    def __init__(self, node: NodeConfig, log_format: str, topology_file: Path | None = None) -> None:
        self.node = node
        self.topology_file = topology_file
        self.topology_stamp = _stamp(topology_file)
        self.log_format = log_format
        self.stop_requested: str | None = None
        self.root = _RootState()
        self.log: Any = None
        self.identity: Identity | None = None
        self.control: Any = None  # the control endpoint's address, once the root started

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stop_requested = signal.Signals(signum).name

    def run(self, duration: float | None = None, reinit: bool = False) -> int:
        node = self.node
        configure_logging(self.log_format, node.name)
        self.log = get_logger(supervisor="node")
        node.data_dir.mkdir(parents=True, exist_ok=True)
        lock = _lock_data_dir(node.data_dir)
        if not self._check_data_dir(reinit):
            lock.close()
            return EXIT_START_FAILED
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        link_forked_children()  # every process of the node dies with its parent, the launcher included
        log_defs = prepare_environment(node.data_dir)
        if self.topology_file is not None:  # cluster-mode actors and the peer gateway read their cluster here
            os.environ["GARRISON_TOPOLOGY"] = str(self.topology_file.absolute())
        port = admin_port(node)
        from thespian.actors import ActorSystem

        asys = ActorSystem(SYSTEM_BASE, {"Admin Port": port}, logDefs=log_defs)
        # the final line must carry the real outcome: if anything escapes the supervision loop, say so
        reason, code = "launcher failed before the node stopped", EXIT_LAUNCHER_FAILED
        try:
            reason, code = self._supervise(asys, duration)
        except BaseException as exc:
            reason = f"launcher failed: {type(exc).__name__}: {exc}"
            raise
        finally:
            leftovers = self._shutdown(asys)
            remove_control_files(node.data_dir)  # when the endpoint could not remove them itself
            self.log.info(
                "node_stopped",
                reason=reason,
                exit_code=code,
                killed_leftover_processes=leftovers or None,
            )
            lock.close()
        return code

    def _check_data_dir(self, reinit: bool) -> bool:
        """Owner-only data_dir, and the node's identity against its event log, before anything starts."""
        # Thespian's log files (and anything else the node's processes create) are then owner-only too;
        # garrison's own files also set their modes explicitly.
        os.umask(0o077)
        data_dir = self.node.data_dir
        try:
            secure_data_dir(data_dir)
            self.identity, done = check_identity(data_dir, self.node.name, reinit=reinit)
        except (NodeStateMismatch, EventLogError, OSError) as exc:
            self.log.error(
                "node_start_failed",
                reason=f"{type(exc).__name__}: {exc}",
                exit_code=EXIT_START_FAILED,
                data_dir=str(data_dir),
            )
            return False
        level = "warning" if done in ("restored", "reinitialised") else "info"
        getattr(self.log, level)(
            "node_identity", outcome=done, log_id=self.identity.log_id, data_dir=str(data_dir)
        )
        return True

    def _root_failed(self, failure: ChildFailed) -> tuple[str, int]:
        """The root supervisor itself raised: before it started, the node cannot start (exit 3, at once,
        with the reason); after, nothing supervises the tree any more (exit 1, like an escalation)."""
        if self.root.started:
            return f"root supervisor crashed: {failure.reason}", EXIT_ESCALATED
        self.log.error(
            "node_start_failed",
            reason=failure.reason,
            location=failure.location,
            traceback_digest=failure.traceback_digest,
            exit_code=EXIT_START_FAILED,
            data_dir=str(self.node.data_dir),
        )
        return f"root supervisor failed to start: {failure.reason}", EXIT_START_FAILED

    def _supervise(self, asys: Any, duration: float | None) -> tuple[str, int]:
        node = self.node
        root = asys.createActor(SUPERVISOR_CLASS)
        asys.tell(
            root,
            Configure(
                node=node.name,
                supervisor="",
                child_id=node.tree.id,
                args={},
                data_dir=str(node.data_dir),
                log_format=self.log_format,
                incarnation=1,
                extra={"spec": node.tree},
            ),
        )
        began = time.monotonic()
        deadline = None if duration is None else began + duration
        next_topology_check = began + TOPOLOGY_CHECK_S
        while True:
            msg = asys.listen(0.1)
            self._handle(msg)
            if self.root.started and self.control is None:
                self.control = self._start_control(asys, root)
            if self.root.failure is not None:
                return self._root_failed(self.root.failure)
            if self.root.started and time.monotonic() >= next_topology_check:
                next_topology_check = time.monotonic() + TOPOLOGY_CHECK_S
                self._apply_topology_changes(asys, root)
            if self.root.escalation is not None:
                return f"root supervisor escalated: {self.root.escalation.reason}", EXIT_ESCALATED
            start_limit = child_start_timeout(node.tree) + ROOT_START_MARGIN_S
            if not self.root.started and time.monotonic() - began > start_limit:
                return f"root supervisor did not start within {start_limit}s", EXIT_START_FAILED
            if self.root.pid is not None and not pid_alive(self.root.pid):
                return "root supervisor process lost", EXIT_ESCALATED
            if self.stop_requested or (deadline is not None and time.monotonic() >= deadline):
                why = self.stop_requested or "duration elapsed"
                self._stop_tree(asys, root)
                if self.root.escalation is not None:
                    return f"root supervisor escalated: {self.root.escalation.reason}", EXIT_ESCALATED
                return why, EXIT_OK

    def _start_control(self, asys: Any, root: Any) -> Any:
        """The control endpoint (``garrison ask/tell/status``): a top-level actor, so it is no child of
        the tree it reports on; it routes requests through the root."""
        from supervisors.control import ControlEndpoint

        endpoint = asys.createActor(ControlEndpoint)
        node = self.node
        asys.tell(endpoint, ControlConfigure(node.name, str(node.data_dir), root, self.log_format))
        return endpoint

    def _apply_topology_changes(self, asys: Any, root: Any) -> None:
        """Hot rollout: new worker args in the topology file (a model version, a threshold) are applied
        by restarting only those workers; other changes need a node restart and are reported."""
        stamp = _stamp(self.topology_file)
        if stamp == self.topology_stamp or self.topology_file is None:
            return
        self.topology_stamp = stamp
        try:
            new = load_topology(self.topology_file).node(self.node.name)
        except TopologyError as exc:
            self.log.error("topology_reload_failed", file=str(self.topology_file), errors=exc.errors)
            return
        changed, structural = diff_worker_args(self.node.tree, new.tree)
        for path, args in changed.items():
            asys.tell(root, Reconfigure(path, args))
        if structural:
            self.log.warning(
                "topology_change_needs_restart", file=str(self.topology_file), changes=structural
            )
        if changed:
            self.log.info("topology_reloaded", file=str(self.topology_file), reconfigured=sorted(changed))
        self.node = replace(self.node, tree=_with_args(self.node.tree, changed))

    def _handle(self, msg: object) -> None:
        if isinstance(msg, ChildSpawned):
            self.root.pid, self.root.session = msg.pid, msg.session
        elif isinstance(msg, ChildStarted):
            self.root.started = True
            self.log.info(
                "node_started",
                root_pid=msg.pid,
                session=self.root.session,
                data_dir=str(self.node.data_dir),
                log_id=self.identity.log_id if self.identity else None,
            )
        elif isinstance(msg, ChildFailed):
            self.root.failure = self.root.failure or msg
        elif isinstance(msg, RootEscalated):
            self.root.escalation = msg
        elif isinstance(msg, TreeStopped):
            self.root.tree_stopped = True
        elif isinstance(msg, ControlReady):
            if msg.error:
                self.log.error("control_endpoint_failed", reason=msg.error, data_dir=str(self.node.data_dir))
            else:
                self.log.info("control_endpoint_ready", socket=msg.socket_path)

    def _stop_tree(self, asys: Any, root: Any) -> None:
        asys.tell(root, StopChild("node stopping"))
        limit = time.monotonic() + self.node.tree.effective_shutdown_timeout() + 5.0
        while not self.root.tree_stopped and self.root.escalation is None and time.monotonic() < limit:
            if self.root.pid is not None and not pid_alive(self.root.pid):
                break
            self._handle(asys.listen(0.1))

    def _shutdown(self, asys: Any) -> list[int]:
        with contextlib.suppress(Exception):
            asys.shutdown()
        if self.root.session is None or self.root.session == os.getsid(0):
            return []
        # Thespian's shutdown returns once the admin has asked every actor to exit, not once they have:
        # give the processes a moment to finish exiting before calling any of them a leftover
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        while (leftovers := processes_in_session(self.root.session)) and time.monotonic() < deadline:
            time.sleep(0.02)
        if leftovers:  # say what they were: each one is a bug in a stop path, worth a look
            self.log.warning("leftover_processes", processes=[_describe_process(p) for p in leftovers])
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return leftovers


def _describe_process(pid: int) -> dict[str, Any]:
    info: dict[str, Any] = {"pid": pid}
    with contextlib.suppress(OSError):
        with open(f"/proc/{pid}/stat") as f:
            comm, rest = f.read().split(" (", 1)[1].rsplit(")", 1)
        info.update(name=comm, state=rest.split()[0], ppid=int(rest.split()[1]))
    return info


def _lock_data_dir(data_dir: Path) -> TextIO:
    """Hold ``data_dir/node.lock`` for the node's lifetime (flock: released by the kernel when the last
    process holding it dies). Its text is the launcher's pid; a refusal names every pid holding it."""
    path = data_dir / "node.lock"
    lock = open(path, "a+")  # noqa: SIM115 - held for the node's lifetime; "a+": never truncate another's pid
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        launcher = lock.read().strip() or "?"
        lock.close()
        holders = [p for p in holders_of(str(path)) if p != os.getpid()]
        raise NodeAlreadyRunning(
            f"{data_dir}: another garrison node is running on this data_dir (launcher pid {launcher}; "
            f"processes holding {path}: {', '.join(map(str, holders)) or 'unknown'}); stop it first "
            "(SIGTERM to the launcher stops the whole node)"
        ) from None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def admin_port(node: NodeConfig) -> int:
    """A free loopback port for the node's Thespian admin, none of the peer and API ports the topology gives
    its nodes: one of a node that is not listening yet or right now (a node of a local cluster restarting)
    is free when drawn, and that node could then not start."""
    nodes = node.cluster.nodes if node.cluster is not None else ()
    addresses = [node.peer, node.api] + [a for n in nodes for a in (n.peer, n.api)]
    return free_loopback_ports(1, avoid={a.port for a in addresses if a is not None}, pool=ADMIN_PORTS)[0]


def run_node(
    node: NodeConfig,
    *,
    duration: float | None,
    log_format: str,
    topology_file: Path | None = None,
    reinit: bool = False,
) -> int:
    return NodeRunner(node, log_format, topology_file).run(duration, reinit=reinit)


def _stamp(path: Path | None) -> tuple[float, int] | None:
    try:
        st = os.stat(path) if path is not None else None
    except OSError:
        return None
    return (st.st_mtime, st.st_size) if st else None


def diff_worker_args(
    old: SupervisorSpec, new: SupervisorSpec, prefix: str = ""
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Workers (by path below the root) whose args changed, and changes that are not just args."""
    changed: dict[str, dict[str, Any]] = {}
    structural: list[str] = []
    if [c.id for c in old.children] != [c.id for c in new.children]:
        return {}, [f"{prefix or old.id}: children changed"]
    for before, after in zip(old.children, new.children, strict=True):
        path = f"{prefix}{before.id}"
        if isinstance(before, SupervisorSpec) and isinstance(after, SupervisorSpec):
            sub_changed, sub_structural = diff_worker_args(before, after, f"{path}/")
            changed.update(sub_changed)
            structural += sub_structural
            if replace(before, children=()) != replace(after, children=()):
                structural.append(f"{path}: supervisor settings changed")
        elif isinstance(before, WorkerSpec) and isinstance(after, WorkerSpec):
            if replace(before, args={}) != replace(after, args={}):
                structural.append(f"{path}: worker settings other than args changed")
            elif before.args != after.args:
                changed[path] = dict(after.args)
        else:
            structural.append(f"{path}: changed between worker and supervisor")
    return changed, structural


def _with_args(tree: SupervisorSpec, changed: dict[str, dict[str, Any]], prefix: str = "") -> SupervisorSpec:
    children: list[ChildSpec] = []
    for child in tree.children:
        path = f"{prefix}{child.id}"
        if isinstance(child, SupervisorSpec):
            children.append(_with_args(child, changed, f"{path}/"))
        else:
            children.append(replace(child, args=changed[path]) if path in changed else child)
    return replace(tree, children=tuple(children))
