"""Cross-process time stamps along one Raft commit's path, for ``python -m bench.commit_hops`` (off by default).

A serial commit crosses ~10 processes in a row (the client, both replicas, four gateway hops, the disk);
profiling one process cannot say where its milliseconds go. With ``GARRISON_HOPTRACE=<file>`` in a node's
environment (inherited by its actors and its peer gateway), every :func:`stamp` appends one line
``<perf_counter> <pid> <event>`` to that file. ``perf_counter`` is ``CLOCK_MONOTONIC`` on Linux, one clock
for every process of the machine, so stamps of different processes compare; ``O_APPEND`` keeps the short
lines of concurrent writers whole. Unset (always, outside that benchmark), a stamp is one test of a module
global.
"""

from __future__ import annotations

import os
import time

ENV = "GARRISON_HOPTRACE"
_path = os.environ.get(ENV) or None
_fd: int | None = None


def enabled() -> bool:
    return _path is not None


def stamp(event: str) -> None:
    """Record that this process reached ``event`` now (a no-op unless ``GARRISON_HOPTRACE`` is set)."""
    global _fd
    if _path is None:
        return
    if _fd is None:  # opened on first use; a forked actor shares it, and writes its own pid
        _fd = os.open(_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    os.write(_fd, f"{time.perf_counter():.6f} {os.getpid()} {event}\n".encode())
