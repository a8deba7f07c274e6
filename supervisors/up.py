"""``garrison up TOPOLOGY``: every node of a topology as a local child process, supervised.

For a laptop or a test; in production each host runs one node under systemd (``docs/garrison@.service``).
``up`` is a supervisor one level above the nodes, with the same vocabulary in its logs:

- each node runs as ``python -m supervisors.cli run TOPOLOGY --node NAME`` in its own process group, so a
  Ctrl-C on the terminal reaches ``up`` alone and ``up`` stops the nodes in order (a node that got the
  SIGINT too would start stopping before ``up`` knows);
- a node process that exits with a non-zero status or a signal is logged ``node_lost`` (exit code or
  signal) and started again after an exponential backoff with jitter (``node_restarted``); a node that
  ran ``reset_after`` seconds starts again from the shortest delay. A node that exits 0 (it was asked to
  stop, e.g. ``--duration`` or a SIGTERM of its own) is logged ``node_exited`` and left stopped, like
  systemd's ``Restart=on-failure``; ``up`` ends when no node is left;
- SIGINT/SIGTERM/SIGHUP: SIGTERM every node, wait ``stop_timeout``, then SIGKILL what is left (with all its
  descendants); a second signal (a second or more later) skips the wait;
- each node process asks the kernel for SIGKILL when ``up`` dies (``PR_SET_PDEATHSIG``), and every node
  already does the same for its own actors: SIGKILL of ``up`` takes the whole cluster down, nothing is
  left running that nobody supervises.

With a ``cluster:`` section, the CA and the node certificates are created under ``certs_dir`` when absent
(``supervisors.certs``), so a fresh checkout runs as is.

Single-threaded on purpose: a ``preexec_fn`` (the PDEATHSIG request) is only safe in a process without
threads. Signals (SIGCHLD included) wake the loop through ``signal.set_wakeup_fd``; nothing polls.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from supervisors.spec import Backoff

# A node takes seconds to start; restarting it faster than that only burns CPU the others need.
DEFAULT_BACKOFF = Backoff(min_s=0.5, max_s=30.0, jitter=0.2, reset_after_s=30.0)
DEFAULT_STOP_TIMEOUT = 30.0  # a node stops its tree in reverse order, each child within its shutdown_timeout
SUPERVISOR = "garrison-up"  # the `supervisor` key of up's events, as a node's supervisors use their id
_PR_SET_PDEATHSIG = 1
# A signal this long after the first means "stop now" (a second Ctrl-C). Closer ones are the same request
# delivered twice: `timeout` or `kill -- -PGID` signal the process and its group in one go.
_SECOND_SIGNAL_AFTER = 1.0


@dataclass
class NodeProcess:
    name: str
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    attempt: int = 0  # consecutive quick failures: the backoff exponent
    restarts_total: int = 0
    restart_at: float | None = None  # monotonic time of a scheduled restart
    done: bool = False  # exited 0: not restarted


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def _exit_fields(status: int) -> dict[str, Any]:
    """``exit_code`` or ``signal`` of a Popen returncode (negative: killed by that signal)."""
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return {"exit_code": None, "signal": name, "reason": f"killed by {name}"}
    return {"exit_code": status, "signal": None, "reason": f"exited with code {status}"}


class Up:
    """The supervisor of a topology's node processes (one instance per ``garrison up``)."""

    def __init__(
        self,
        topology: Path,
        names: list[str],
        *,
        log_format: str,
        backoff: Backoff = DEFAULT_BACKOFF,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
        log: Any,
    ) -> None:
        self.topology = topology
        self.nodes = [NodeProcess(name) for name in names]
        self.log_format = log_format
        self.backoff = backoff
        self.stop_timeout = stop_timeout
        self.log = log
        self.rng = random.Random()
        self.stopping: str | None = None  # the signal that asked us to stop
        self.stop_requested_at = 0.0
        self.hurry = False  # a second signal: kill now instead of waiting
        self._libc = _libc()  # loaded before any fork: the child only calls into it
        self._me = os.getpid()

    # -- starting -----------------------------------------------------------------------------------

    def _die_with_up(self) -> None:
        # runs in the child between fork and exec: async-signal-safe calls only (up has no threads)
        self._libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != self._me:  # up died between fork and prctl: nobody would stop this node
            os._exit(70)

    def _spawn(self, node: NodeProcess) -> None:
        cmd = [sys.executable, "-m", "supervisors.cli", "run", str(self.topology), "--node", node.name]
        cmd += ["--log-format", self.log_format]
        node.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, process_group=0, preexec_fn=self._die_with_up
        )
        node.started_at = time.monotonic()
        node.restart_at = None

    def start_all(self) -> None:
        for node in self.nodes:
            self._spawn(node)
            assert node.proc is not None
            self.log.info("node_launched", node=node.name, pid=node.proc.pid, restarts_total=0)

    # -- exits and restarts -------------------------------------------------------------------------

    def _reap(self) -> None:
        now = time.monotonic()
        for node in self.nodes:
            if node.proc is None or (status := node.proc.poll()) is None:
                continue
            pid, uptime = node.proc.pid, round(now - node.started_at, 3)
            node.proc = None
            if self.stopping is not None:
                self.log.info("node_exited", node=node.name, pid=pid, uptime_s=uptime, **_exit_fields(status))
                continue
            if status == 0:
                node.done = True
                self.log.info("node_exited", node=node.name, pid=pid, uptime_s=uptime, **_exit_fields(status))
                continue
            if uptime >= self.backoff.reset_after_s:
                node.attempt = 0  # it ran long enough: this failure is not part of a crash loop
            delay = _delay(self.backoff, node.attempt, self.rng)
            node.attempt += 1
            node.restart_at = now + delay
            self.log.warning(
                "node_lost",
                node=node.name,
                pid=pid,
                uptime_s=uptime,
                restart_in_s=round(delay, 3),
                restarts_total=node.restarts_total,
                **_exit_fields(status),
            )

    def _restart_due(self) -> None:
        now = time.monotonic()
        for node in self.nodes:
            if node.restart_at is not None and node.restart_at <= now and self.stopping is None:
                self._spawn(node)
                node.restarts_total += 1
                assert node.proc is not None
                self.log.info(
                    "node_restarted",
                    node=node.name,
                    pid=node.proc.pid,
                    attempt=node.attempt,
                    restarts_total=node.restarts_total,
                )

    def _next_wakeup(self) -> float | None:
        due = [n.restart_at for n in self.nodes if n.restart_at is not None]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _running(self) -> list[NodeProcess]:
        return [n for n in self.nodes if n.proc is not None]

    # -- the loop -----------------------------------------------------------------------------------

    def run(self) -> int:
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        # SIGHUP too: a closed terminal reaches only up (the nodes have their own process groups), and
        # dying of it would end the nodes by PDEATHSIG's SIGKILL instead of a graceful stop
        stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in stops}
        previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, lambda *_: None)
        old_fd = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        try:
            self.start_all()
            self.log.info("up_started", topology=str(self.topology), nodes=[n.name for n in self.nodes])
            while self.stopping is None:
                self._reap()
                self._restart_due()
                if self.stopping is None and not self._running() and self._next_wakeup() is None:
                    break  # every node exited 0: nothing left to supervise
                _wait(wake_r, self._next_wakeup())
            return self._stop_all(wake_r)
        finally:
            signal.set_wakeup_fd(old_fd)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(wake_r)
            os.close(wake_w)

    def _on_signal(self, signum: int, frame: Any) -> None:
        now = time.monotonic()
        if self.stopping is None:
            self.stopping = signal.Signals(signum).name
            self.stop_requested_at = now
        elif now - self.stop_requested_at >= _SECOND_SIGNAL_AFTER:
            self.hurry = True

    def _stop_all(self, wake_r: int) -> int:
        self._reap()
        running = self._running()
        self.log.info(
            "up_stopping",
            signal=self.stopping,
            nodes=[n.name for n in running],
            stop_timeout_s=self.stop_timeout,
        )
        for node in running:
            with contextlib.suppress(ProcessLookupError):
                assert node.proc is not None
                node.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while self._running() and time.monotonic() < deadline and not self.hurry:
            _wait(wake_r, min(0.5, max(0.0, deadline - time.monotonic())))
            self._reap()
        killed = []
        for node in self._running():
            assert node.proc is not None
            from supervisors.process_tree import kill_tree

            kill_tree(node.proc.pid)  # the node and its actors at once, not one generation at a time
            killed.append(node.name)
        while running := self._running():  # killed but not yet reaped
            assert running[0].proc is not None
            running[0].proc.wait()
            self._reap()
        self.log.info("up_stopped", killed=killed)
        return 1 if killed else 0


def _delay(backoff: Backoff, attempt: int, rng: random.Random) -> float:
    from supervisors.policy import backoff_delay

    return backoff_delay(backoff, attempt, rng)


def _wait(fd: int, timeout: float | None) -> None:
    """Sleep until a signal arrives (the wakeup fd) or ``timeout`` seconds pass; drain the fd."""
    with contextlib.suppress(InterruptedError):
        select.select([fd], [], [], timeout)
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 4096):
            pass


def run_up(topology: str, *, log_format: str, stop_timeout: float = DEFAULT_STOP_TIMEOUT) -> int:
    """Load TOPOLOGY, create missing cluster certificates, run every node until a signal; exit status."""
    from actors.logs import configure_logging, get_logger
    from supervisors.certs import CertError, ensure_cluster_certs
    from supervisors.topology import TopologyError, load_topology

    configure_logging(log_format, node=SUPERVISOR)
    log = get_logger(supervisor=SUPERVISOR)
    try:
        topo = load_topology(topology)
    except TopologyError as exc:
        click.echo(str(exc), err=True)
        return 2
    if topo.cluster is not None:
        try:
            created = ensure_cluster_certs(topo.cluster.certs_dir, [n.name for n in topo.nodes])
        except (CertError, OSError) as exc:
            click.echo(f"error: {exc}", err=True)
            return 2
        if created:
            log.info("certs_created", certs_dir=str(topo.cluster.certs_dir), files=[str(p) for p in created])
        from supervisors.peer.bridge_cluster import ensure_local_node_keys

        # every replica must start trusting every node's signing key (entries are checked at apply)
        try:
            keys = ensure_local_node_keys(topo)
        except (OSError, ValueError) as exc:
            click.echo(f"error: node signing keys: {exc}", err=True)
            return 2
        if keys:
            log.info("node_keys_published", files=[str(p) for p in keys])
    up = Up(
        Path(os.path.abspath(topology)),
        [n.name for n in topo.nodes],
        log_format=log_format,
        stop_timeout=stop_timeout,
        log=log,
    )
    return up.run()


def register(main: click.Group) -> None:
    """Add ``garrison up`` to the ``garrison`` command."""
    from actors.logs import LOG_FORMATS, default_format

    @main.command(name="up")
    @click.argument("topology", type=click.Path(dir_okay=False, exists=True))
    @click.option(
        "--log-format", type=click.Choice(LOG_FORMATS), help="Default: console on a terminal, else json."
    )
    @click.option(
        "--stop-timeout",
        type=click.FloatRange(min=0, max=3600),
        default=DEFAULT_STOP_TIMEOUT,
        show_default=True,
        help="Seconds a node gets to stop after SIGTERM before it is killed.",
    )
    def up_cmd(topology: str, log_format: str | None, stop_timeout: float) -> None:
        """Run every node of TOPOLOGY as a local process; restart a node that dies; Ctrl-C stops all.

        Creates the cluster's CA and node certificates under cluster.certs_dir when they are absent."""
        sys.exit(run_up(topology, log_format=log_format or default_format(), stop_timeout=stop_timeout))
