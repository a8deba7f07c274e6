"""A node's identity: how a node knows it had state, so that a lost event log stops it instead of being
silently replaced by an empty one.

Two witnesses of one random log id: ``<data_dir>/identity.json`` (node name, log id, created_at; 0600)
and a value inside the event log. The log id is written into the log first and the file second, so a
crash between the two leaves a log that names itself (the file is then restored from it), never a file
whose log is missing. At start:

- file present, log missing / zero-length / without data / with another log id: refuse
  (:class:`NodeStateMismatch`, exit 3). ``--reinit`` starts a new, empty log, and only when the old one
  has been moved away: garrison never deletes data by itself.
- file absent: a first start (empty log) creates both; a log that names itself restores the file; a log
  written before identities existed is adopted.

Also here: the data_dir is made owner-only at start (0700; group and other bits taken off what an older
version or a 022 umask left readable), because it holds incidents, keys and logs. data_dir is the node's
own directory: do not point it at a directory shared with other files.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from actors.eventlog import DATA_DIR_MODE, DATA_FILE_MODE, CorruptRecord, EventLog

__all__ = [
    "IDENTITY_FILE",
    "LOG_ID_KEY",
    "Identity",
    "NodeStateMismatch",
    "check_identity",
    "secure_data_dir",
]

IDENTITY_FILE = "identity.json"
LOG_ID_KEY = "node/identity"
EVENTLOG_DIR = "eventlog"  # where actors.base opens the node's log
_GROUP_OTHER = 0o077


class NodeStateMismatch(Exception):
    """The data_dir says the node had state that its event log no longer holds (or holds another's)."""


@dataclass(frozen=True, slots=True)
class Identity:
    node: str
    log_id: str
    created_at: float

    @classmethod
    def new(cls, node: str) -> Identity:
        return cls(node=node, log_id=secrets.token_hex(16), created_at=time.time())

    @classmethod
    def from_json(cls, raw: Any, where: str) -> Identity:
        try:
            return cls(node=str(raw["node"]), log_id=str(raw["log_id"]), created_at=float(raw["created_at"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise NodeStateMismatch(
                f"{where}: not a garrison node identity ({exc!r}); restore it from a backup, or move it "
                "away to let the node adopt its event log"
            ) from exc


def secure_data_dir(data_dir: Path) -> None:
    """Create ``data_dir`` 0700 and take group and other permissions off everything already in it (what
    an older version or a 022 umask left readable); owner bits are left alone."""
    data_dir.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
    os.chmod(data_dir, DATA_DIR_MODE)
    for root, dirs, files in os.walk(data_dir):  # does not follow symlinks
        for name in dirs + files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            if not stat.S_ISLNK(st.st_mode) and stat.S_IMODE(st.st_mode) & _GROUP_OTHER:
                os.chmod(path, stat.S_IMODE(st.st_mode) & ~_GROUP_OTHER)


def check_identity(data_dir: Path, node: str, *, reinit: bool = False) -> tuple[Identity, str]:
    """Verify (or create) the node's identity against its event log; return it and what was done:
    ``verified``, ``created``, ``reinitialised``, ``restored`` or ``adopted``. Raises
    :class:`NodeStateMismatch` (or the event log's own errors) with a message saying what to do."""
    identity_file = data_dir / IDENTITY_FILE
    log_dir = data_dir / EVENTLOG_DIR
    data_file = log_dir / "data.mdb"
    recorded = _read_identity(identity_file)
    if recorded is not None and recorded.node != node:
        raise NodeStateMismatch(
            f"{identity_file}: this data_dir belongs to node {recorded.node!r}, not {node!r}; give each "
            "node its own data_dir in the topology"
        )
    on_disk = data_file.exists() and data_file.stat().st_size > 0
    if recorded is not None and not reinit and not on_disk:
        what = "is missing" if not data_file.exists() else "is empty (zero bytes)"
        raise NodeStateMismatch(
            f"{data_file} {what}, but {identity_file} says node {node!r} had state (log "
            f"{recorded.log_id}, created {_iso(recorded.created_at)}): its incidents and offsets are not "
            f"there. Restore {log_dir} from a backup, or move {log_dir} and the file sink's output aside "
            "and run `garrison run --reinit` to start over with an empty log"
        )
    log = EventLog(log_dir)
    try:
        return _reconcile(log, recorded, node, identity_file, reinit)
    finally:
        log.close()


def _reconcile(
    log: EventLog, recorded: Identity | None, node: str, identity_file: Path, reinit: bool
) -> tuple[Identity, str]:
    data_file = log.path / "data.mdb"
    raw = log.get_value(LOG_ID_KEY)
    in_log = Identity.from_json(raw, f"{data_file}: value {LOG_ID_KEY!r}") if raw is not None else None
    if reinit:
        if in_log is not None or _has_data(log):
            raise NodeStateMismatch(
                f"--reinit starts an empty event log, but {data_file} holds data"
                + (f" (log {in_log.log_id})" if in_log else "")
                + f": move {log.path} aside first (garrison never deletes data), then run --reinit again"
            )
        return _create(log, node, identity_file), "reinitialised"
    if recorded is not None:
        if in_log is not None and in_log.log_id == recorded.log_id:
            return recorded, "verified"
        found = f"log {in_log.log_id} of node {in_log.node!r}" if in_log else "a log without an identity"
        raise NodeStateMismatch(
            f"{data_file} holds {found}, but {identity_file} names log {recorded.log_id}: this is not "
            f"the node's own event log. Put the right {log.path} back, or move {log.path} and the file "
            "sink's output aside and run `garrison run --reinit` to start over"
        )
    if in_log is not None:
        if in_log.node != node:
            raise NodeStateMismatch(
                f"{data_file}: this event log belongs to node {in_log.node!r}, not {node!r}; give each "
                "node its own data_dir in the topology"
            )
        _write_identity(identity_file, in_log)  # lost or never written (crash between the two writes)
        return in_log, "restored"
    done = "adopted" if _has_data(log) else "created"
    return _create(log, node, identity_file), done


def _has_data(log: EventLog) -> bool:
    if log.streams():
        return True
    try:
        return bool(log.values_with_prefix(""))
    except CorruptRecord:  # a damaged value is data too; the actor that reads it reports it
        return True


def _create(log: EventLog, node: str, identity_file: Path) -> Identity:
    identity = Identity.new(node)
    log.put_value(LOG_ID_KEY, asdict(identity))  # the log first: see the module docstring
    _write_identity(identity_file, identity)
    return identity


def _read_identity(path: Path) -> Identity | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise NodeStateMismatch(
            f"{path}: unreadable node identity ({exc}); restore it from a backup, or move it away to "
            "let the node adopt its event log"
        ) from exc
    return Identity.from_json(raw, str(path))


def _write_identity(path: Path, identity: Identity) -> None:
    """Atomically (write, fsync, rename, fsync the directory) and owner-only."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, DATA_FILE_MODE)
    try:
        os.fchmod(fd, DATA_FILE_MODE)
        os.write(fd, (json.dumps(asdict(identity), indent=2, sort_keys=True) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
