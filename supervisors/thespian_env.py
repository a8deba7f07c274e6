"""Starting Thespian safely: loopback-only sockets, a private admin port, its own log file.

Thespian's TCP transport unpickles whatever reaches its sockets, and ``IPActorAddress`` binds every actor's
listening socket to all interfaces (``bindname = ('', port)``) even when ``THESPIAN_BASE_IPADDR`` is set
(measured). :func:`bind_loopback_only` patches the bind address to the advertised loopback address before the
admin is forked, so the admin and every actor process (forked from it) inherit the patch. The same holds for
:func:`supervisors.frame_auth.install`: every frame must carry an HMAC under a secret made here, so a local user
who connects to one of these sockets cannot get a pickle of theirs unpickled.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import random
import select
import selectors
import socket
import types
from collections.abc import Collection, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from supervisors import frame_auth

LOOPBACK = "127.0.0.1"
# Thespian allows 20 unacknowledged transmits per actor process in total and keeps one for up to 5 minutes
# by default: an actor that stops reading (SIGSTOP, a handler stuck in a loop) would block every other send
# of its peers for that long. Ten seconds bounds the damage; callers also rate-limit sends to silent peers.
TRANSMIT_TIMEOUT = timedelta(seconds=10)
SYSTEM_BASE = "multiprocTCPBase"


def bind_loopback_only() -> None:
    from thespian.system.transport import IPBase

    if getattr(IPBase.IPActorAddress, "_garrison_loopback", False):
        return
    original = IPBase.IPActorAddress.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.bindname = self.sockname  # never ('', port): that would listen on every interface

    IPBase.IPActorAddress.__init__ = init
    IPBase.IPActorAddress._garrison_loopback = True


class PollPerLoopSelector(selectors.PollSelector):
    """The selector Thespian's select loop builds, registers and closes on EVERY iteration
    (``TCPTransport._runWithExpiry``): on epoll that is ``epoll_create1``, one ``epoll_ctl`` per fd,
    ``epoll_wait`` and ``close``, ~8 % of a busy Raft replica's CPU (py-spy over serial commits); poll(2) is
    one system call with the fd list. Thespian relies on one epoll behaviour: a closed watched fd raises
    EBADF (at ``register``), which its loop catches to find and drop the bad watch (``_check_fd``); poll
    reports it as POLLNVAL instead, so :meth:`select` raises the same ``OSError`` for it."""

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        # as selectors.PollSelector.select (ms, rounded away from zero), plus the POLLNVAL check
        ms = None if timeout is None else 0 if timeout <= 0 else math.ceil(timeout * 1e3)
        try:
            fd_events = self._selector.poll(ms)  # type: ignore[attr-defined]
        except InterruptedError:
            return []
        ready = []
        for fd, event in fd_events:
            if event & select.POLLNVAL:
                raise OSError(errno.EBADF, f"watched file descriptor {fd} is not open")
            events = 0
            if event & ~select.POLLIN:
                events |= selectors.EVENT_WRITE
            if event & ~select.POLLOUT:
                events |= selectors.EVENT_READ
            key = self._fd_to_key.get(fd)  # type: ignore[attr-defined]
            if key is not None:
                ready.append((key, events & key.events))
        return ready


def poll_per_loop() -> None:
    """Make Thespian's TCP transport (the admin and every actor forked from it) select with
    :class:`PollPerLoopSelector` instead of a new epoll per loop iteration."""
    from thespian.system.transport import TCPTransport

    if getattr(TCPTransport.selectors, "DefaultSelector", None) is PollPerLoopSelector:
        return
    TCPTransport.selectors = types.SimpleNamespace(  # the module reads only these three names
        DefaultSelector=PollPerLoopSelector,
        EVENT_READ=selectors.EVENT_READ,
        EVENT_WRITE=selectors.EVENT_WRITE,
    )


def bound_transmit_timeout(period: timedelta = TRANSMIT_TIMEOUT) -> None:
    """Set Thespian's transmit timeout (read once at import, so the module constant is patched too)."""
    import thespian.system.transport as transport

    seconds = int(period.total_seconds())
    os.environ["THESPIAN_TRANSMIT_TIMEOUT_PERIOD"] = f"{seconds // 60}:{seconds % 60}"
    transport.DEFAULT_MAX_TRANSMIT_PERIOD = period


# Ports handed out for a later bind are drawn below the kernel's ephemeral range (32768-60999 by default):
# every Thespian actor binds port 0, and an ephemeral port checked free now could be taken by one of them
# before its real owner binds it. Two pools, so that one kind of draw can never take the other's port:
# - PROMISED_PORTS: ports written down for another process to bind later (a test cluster's peer, API and
#   fault-proxy ports, a broker's);
# - ADMIN_PORTS: a starting node's own Thespian admin port. A node sees only its own topology, and in a
#   test cluster that names the proxies in front of the other nodes, not their real peer ports: from one
#   pool, a node's admin once took another node's drawn peer port, and that node never listened.
PROMISED_PORTS = (20000, 26350)
ADMIN_PORTS = (26350, 32700)


def free_loopback_port(pool: tuple[int, int] = PROMISED_PORTS) -> int:
    """A loopback port of ``pool`` (``[low, high)``) that is free to bind now (it is not held)."""
    rng = random.SystemRandom()
    for _ in range(256):
        port = rng.randrange(*pool)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # that range is full: any free port
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def free_loopback_ports(
    n: int, avoid: Collection[int] = (), pool: tuple[int, int] = PROMISED_PORTS
) -> list[int]:
    """``n`` distinct free loopback ports, none of ``avoid``: two draws of :func:`free_loopback_port` can
    return the same port (each is free when drawn, none is held), which gave a test node its API on its
    own peer port, and a fault proxy the peer port of the node behind it. Pass what an earlier draw gave
    and is not bound yet as ``avoid``."""
    ports: list[int] = []
    while len(ports) < n:
        port = free_loopback_port(pool)
        if port not in ports and port not in avoid:
            ports.append(port)
    return ports


def free_peer_and_api_ports(names: Sequence[str]) -> tuple[dict[str, int], dict[str, int]]:
    """A peer port and an API port for each node of a loopback cluster, all distinct."""
    picked = free_loopback_ports(2 * len(names))
    return dict(zip(names, picked[: len(names)], strict=True)), dict(
        zip(names, picked[len(names) :], strict=True)
    )


def prepare_environment(data_dir: Path) -> dict[str, Any]:
    """Environment and ``logDefs`` for a node's ActorSystem; Thespian's own log goes to ``data_dir``."""
    os.environ["THESPIAN_BASE_IPADDR"] = LOOPBACK
    os.environ["THESPLOG_FILE"] = str(data_dir / "thespian-internal.log")
    os.environ.setdefault("THESPLOG_FILE_MAXSIZE", str(4 << 20))
    bind_loopback_only()
    frame_auth.install()  # before ActorSystem(): the admin and the actors are forked with the secret
    bound_transmit_timeout()
    poll_per_loop()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "file": {
                "class": "logging.FileHandler",
                "filename": str(data_dir / "thespian.log"),
                "level": logging.WARNING,
            }
        },
        "root": {"handlers": ["file"], "level": logging.WARNING},
    }


def processes_in_session(session: int) -> list[int]:
    """PIDs whose session id is ``session`` (Thespian's admin calls setsid; its actors inherit it)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the comm field: state ppid pgrp session ...
        if int(fields[3]) == session and fields[0] != "Z":
            pids.append(int(entry))
    return pids
