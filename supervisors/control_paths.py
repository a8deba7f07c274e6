"""Where a node's control socket lives, and how a client finds it.

The socket is ``<data_dir>/control.sock`` (mode 0600 inside the owner-only data_dir). AF_UNIX paths are at
most 107 bytes on Linux; a data_dir deeper than that gets its socket in the user's runtime directory
(``$XDG_RUNTIME_DIR/garrison``, else ``/tmp/garrison-<uid>``, created 0700 and refused when another user
owns it) and ``<data_dir>/control.sock`` is a symlink to it. Every running node also has an entry in
``<runtime>/nodes/`` so ``garrison ask`` finds the node without being told where it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from supervisors.process_tree import pid_alive

__all__ = [
    "CONTROL_SOCKET",
    "NodeEntry",
    "UnsafeRuntimeDir",
    "bind_path",
    "connect_path",
    "live_nodes",
    "register_node",
    "runtime_dir",
    "unregister_node",
]

CONTROL_SOCKET = "control.sock"
_SUN_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 on Linux


class UnsafeRuntimeDir(RuntimeError):
    """The runtime directory exists but is not this user's private directory."""


def runtime_dir() -> Path:
    """This user's private directory for sockets and the running-node registry (created 0700)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(xdg) / "garrison" if xdg and os.path.isdir(xdg) else Path(f"/tmp/garrison-{os.getuid()}")
    with contextlib.suppress(FileExistsError):
        os.mkdir(base, 0o700)
    st = os.lstat(base)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise UnsafeRuntimeDir(
            f"{base}: not a private directory of this user (owner uid {st.st_uid}, mode "
            f"{stat.S_IMODE(st.st_mode):o}); remove it or set XDG_RUNTIME_DIR to a private directory"
        )
    return base


def _key(data_dir: str | Path) -> str:
    return hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:16]


def bind_path(data_dir: str | Path) -> tuple[Path, Path | None]:
    """Where the endpoint binds, and the symlink in the data_dir pointing there (None when it binds in the
    data_dir itself)."""
    in_data_dir = Path(data_dir).resolve() / CONTROL_SOCKET
    if len(os.fsencode(in_data_dir)) <= _SUN_PATH_MAX:
        return in_data_dir, None
    return runtime_dir() / f"{_key(data_dir)}.sock", in_data_dir


def connect_path(data_dir: str | Path) -> Path:
    """The socket to connect to for the node on ``data_dir`` (through the symlink when there is one)."""
    path = Path(data_dir).resolve() / CONTROL_SOCKET
    if path.is_symlink():
        return Path(os.readlink(path))
    return path


@dataclass(frozen=True)
class NodeEntry:
    node: str
    data_dir: str
    socket: str
    pid: int


def register_node(entry: NodeEntry) -> Path:
    nodes = runtime_dir() / "nodes"
    with contextlib.suppress(FileExistsError):
        os.mkdir(nodes, 0o700)
    path = nodes / f"{_key(entry.data_dir)}.json"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(entry.__dict__, handle)
    os.replace(tmp, path)
    return path


def unregister_node(data_dir: str | Path) -> None:
    with contextlib.suppress(OSError, UnsafeRuntimeDir):
        (runtime_dir() / "nodes" / f"{_key(data_dir)}.json").unlink()


def live_nodes() -> list[NodeEntry]:
    """The registered nodes whose endpoint process is still alive (stale entries are ignored)."""
    try:
        nodes = runtime_dir() / "nodes"
    except (OSError, UnsafeRuntimeDir):
        return []
    found = []
    for path in sorted(nodes.glob("*.json")) if nodes.is_dir() else []:
        try:
            entry = NodeEntry(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            continue
        if pid_alive(entry.pid) and os.path.exists(entry.socket):
            found.append(entry)
    return found


def remove_control_files(data_dir: str | Path) -> None:
    """After the node stopped: its socket (and the symlink to it) and its registry entry, if still there
    (the endpoint removes them itself unless it was killed)."""
    link = Path(data_dir).resolve() / CONTROL_SOCKET
    with contextlib.suppress(OSError):
        if link.is_symlink():
            with contextlib.suppress(OSError):
                os.unlink(os.readlink(link))
        link.unlink()
    unregister_node(data_dir)
