"""Starting Thespian safely: loopback-only sockets, a private admin port, its own log file.

Thespian's TCP transport unpickles whatever reaches its sockets, and ``IPActorAddress`` binds every actor's
listening socket to all interfaces (``bindname = ('', port)``) even when ``THESPIAN_BASE_IPADDR`` is set
(measured). :func:`bind_loopback_only` patches the bind address to the advertised loopback address before the
admin is forked, so the admin and every actor process (forked from it) inherit the patch.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
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


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def prepare_environment(data_dir: Path) -> dict[str, Any]:
    """Environment and ``logDefs`` for a node's ActorSystem; Thespian's own log goes to ``data_dir``."""
    os.environ["THESPIAN_BASE_IPADDR"] = LOOPBACK
    os.environ["THESPLOG_FILE"] = str(data_dir / "thespian-internal.log")
    os.environ.setdefault("THESPLOG_FILE_MAXSIZE", str(4 << 20))
    bind_loopback_only()
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
