"""OS-level containment of a node's process tree: OTP's links, made by the kernel.

Thespian forks every actor from its parent actor, and its admin double-forks to become a daemon. Left like
that, a SIGKILLed supervisor (or launcher) leaves its children running as orphans while the parent's parent
starts fresh ones, so two instances of one actor write the same state (two Raft leaders of one replica).

What this module does about it:
- :func:`link_forked_children` registers an at-fork hook in the launcher, inherited by every process forked
  below it: each forked child asks the kernel for ``SIGKILL`` when its parent dies (``PR_SET_PDEATHSIG``)
  and exits at once if the parent is already gone (the race between ``fork`` and ``prctl``). Death thus
  cascades down the tree within milliseconds, whatever killed the parent.
- It stops Thespian's admin from double-forking (that fork exists only to outlive the launcher, which is
  exactly what must not happen), so the admin stays the launcher's child and dies with it.
- :func:`kill_tree` kills a process and every descendant (walked in ``/proc``) at once, for the
  supervisor's ``kill`` and start-timeout paths: the cascade would do it too, one generation at a time.
- :func:`record_child_exits` keeps the exit status Thespian reaps (``ChildActorExited`` has no reason), so
  a supervisor can say "killed by SIGSEGV" instead of "lost".
- :func:`restore_fatal_signals`: Thespian installs Python handlers for every catchable signal; a handler for
  SIGSEGV returns into the faulting instruction and spins at 100 % CPU forever. The default disposition
  lets the process die, and the supervisor then reports the signal.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from typing import Any

__all__ = [
    "FATAL_SIGNALS",
    "child_exit_status",
    "descendants",
    "describe_exit",
    "kill_tree",
    "link_forked_children",
    "peek_exit_status",
    "pid_alive",
    "record_child_exits",
    "restore_fatal_signals",
    "signal_name",
]

_PR_SET_PDEATHSIG = 1
FATAL_SIGNALS = (signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGABRT)

_libc: Any = None
_fork_parent = 0
_linked = False
_exits: dict[int, int] = {}
_peeked: set[int] = set()  # children whose status was read before Thespian reaped them (child_exit_status)


def _prctl(option: int, arg: int) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return int(_libc.prctl(option, arg, 0, 0, 0))


def _remember_parent() -> None:
    global _fork_parent
    _fork_parent = os.getpid()


def die_with_parent(parent: int | None = None) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies; exit now if it already has."""
    expected = parent if parent is not None else _fork_parent
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if expected and os.getppid() != expected:
        os._exit(70)  # the parent died between fork and prctl: nobody would ever stop this process


def _after_fork_in_child() -> None:
    _exits.clear()  # exit statuses belong to the parent's children, not ours
    _peeked.clear()
    die_with_parent()


def link_forked_children() -> None:
    """In the launcher, before the ActorSystem starts: every process forked below dies with its parent."""
    global _linked
    if _linked:
        return
    _linked = True
    os.register_at_fork(before=_remember_parent, after_in_child=_after_fork_in_child)
    _keep_admin_attached()


def _keep_admin_attached() -> None:
    from thespian.system import multiprocCommon

    original = multiprocCommon.startAdmin
    if getattr(original, "_garrison_attached", False):
        return

    def start_admin_attached(*args: Any, **kwargs: Any) -> Any:
        real_fork = os.fork

        def skip_daemon_fork() -> int:
            os.fork = real_fork  # only the daemonising fork is skipped; actors are still forked
            return 0  # "we are the child": the admin goes on in this process, the launcher's child

        os.fork = skip_daemon_fork
        try:
            return original(*args, **kwargs)
        finally:
            os.fork = real_fork

    start_admin_attached._garrison_attached = True  # type: ignore[attr-defined]
    multiprocCommon.startAdmin = start_admin_attached


def record_child_exits() -> None:
    """Remember the exit status of every child Thespian reaps in this process (by pid)."""
    from thespian.system.multiprocCommon import MultiProcReplicator

    original = MultiProcReplicator._checkChildLiveness
    if getattr(original, "_garrison_records", False):
        return

    def check(child_info: Any) -> bool:
        alive = bool(original(child_info))
        if not alive:
            proc = getattr(child_info, "childProc", None)
            code = getattr(proc, "exitcode", None)
            if proc is not None and proc.pid is not None and code is not None:
                pid = int(proc.pid)
                if pid in _peeked:  # already reported: a record now would outlive it (pids are reused)
                    _peeked.discard(pid)
                else:
                    _exits[pid] = int(code)
        return alive

    check._garrison_records = True  # type: ignore[attr-defined]
    MultiProcReplicator._checkChildLiveness = staticmethod(check)


def child_exit_status(pid: int | None) -> int | None:
    """The exit status of a child that exited: >= 0 an exit code, < 0 the negated signal number; None when
    it is unknown. Reaped by Thespian: the status it recorded. Not yet reaped (a supervisor's liveness
    check saw the zombie before Thespian's SIGCHLD handling did): read without reaping it, so that Thespian
    still can (without this, such a SIGKILL was logged with no signal, about one kill in a few hundred)."""
    if pid is None:
        return None
    status = _exits.pop(pid, None)
    if status is None:
        status = peek_exit_status(pid)
        if status is not None:
            _peeked.add(pid)
    return status


def peek_exit_status(pid: int) -> int | None:
    """The exit status of this process's child ``pid`` if it is a zombie, leaving it to be reaped
    (``waitid`` with ``WNOWAIT``); None if it is not an exited child of this process."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return None
    if info is None or info.si_pid == 0:
        return None
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status  # killed or dumped


def signal_name(status: int | None) -> str | None:
    """``SIGSEGV`` for an exit status of -11; ``None`` when the process was not killed by a signal."""
    if status is None or status >= 0:
        return None
    try:
        return signal.Signals(-status).name
    except ValueError:
        return f"signal {-status}"


def describe_exit(status: int | None) -> str:
    if status is None:
        return "process exited without a report (killed, segfault or OOM)"
    name = signal_name(status)
    if name is not None:
        return f"process killed by {name} without a report"
    return f"process exited with code {status} without a report"


def restore_fatal_signals() -> None:
    """Default disposition for SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT: die, do not spin."""
    for sig in FATAL_SIGNALS:
        with contextlib.suppress(OSError, ValueError):
            signal.signal(sig, signal.SIG_DFL)


def _parents() -> dict[int, int]:
    # raw os.open/os.read: a supervisor walks this on every crash, and buffered text files cost ~3x more
    table: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fd = os.open(f"/proc/{entry}/stat", os.O_RDONLY)
        except OSError:
            continue
        try:
            raw = os.read(fd, 1024)  # pid (comm) state ppid ...: comm is at most 64 bytes
        except OSError:
            continue
        finally:
            os.close(fd)
        fields = raw[raw.rfind(b")") + 2 :].split(b" ", 2)
        if len(fields) > 1:
            table[int(entry)] = int(fields[1])
    return table


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (children first, then theirs)."""
    parents = _parents()
    found: list[int] = []
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        found.extend(kids)
        frontier.extend(kids)
    return found


def kill_tree(pid: int) -> list[int]:
    """SIGKILL ``pid`` and all its descendants; returns the pids signalled."""
    victims = [pid, *descendants(pid)]
    for victim in victims:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(victim, signal.SIGKILL)
    return victims


def process_exited(pid: int) -> bool:
    """Whether ``pid`` has exited: gone, or a zombie its parent has not reaped yet."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return True
    except OSError:
        return not pid_alive(pid)
    end = stat.rfind(b")")  # the command name, in parentheses, may hold anything
    return stat[end + 2 : end + 3] in (b"Z", b"X")


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one we may not signal still exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def holders_of(path: str) -> list[int]:
    """PIDs that have ``path`` open (from ``/proc/*/fd``): who holds a node's lock file."""
    try:
        target = os.stat(path)
    except OSError:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fd_dir = f"/proc/{entry}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if st.st_ino == target.st_ino and st.st_dev == target.st_dev:
                pids.append(int(entry))
                break
    return sorted(pids)
