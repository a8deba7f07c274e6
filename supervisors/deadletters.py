"""On-call tools for dead letters: list them, and replay the dispatcher's ones.

A dead letter is a record of stream ``deadletters/<component>`` (``dispatch/<sink>``, ``mqtt-bridge``,
``incident-log``, ...). Replaying one of ``dispatch/<sink>`` appends its incident to
``dispatch/replay/<sink>``, which the running (or next) dispatcher delivers to that sink like a new item,
with the same retries, breaker and dead-lettering. The replay and its mark
(value ``deadletters/replayed/<component>/<seq>``) are written in one transaction, so a dead letter is
replayed at most once, however often the command runs. Replaying ``poison`` (inputs a supervisor
quarantined after they crashed a child ``poison_after`` times in a row) appends each quarantined record to
its stream again, or lets a quarantined message through again: do it once the bug is fixed. Other
components' dead letters (malformed MQTT payloads, invalid proposals) have nothing to be delivered again:
replaying them is refused. A running node picks replays up at once; a stopped one on its next start.

These functions open the node's event log themselves; LMDB lets them run next to a live node.

A damaged ``data.mdb`` is reported, naming the file, never a traceback or a crash: the header is checked
before LMDB maps the file (a truncated file would be mapped past its end, and reading there is SIGBUS),
and the commands read the log in a child process, so that corruption the header cannot show (a garbage
page pointing past the end of a record) kills the child, not the command.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click

from actors.eventlog import EventLog, UnreadableEventLog, open_event_log
from actors.streams import dead_letter_stream

__all__ = ["ReplayRefused", "list_dead_letters", "register", "replay_dead_letters"]

_PREFIX = "deadletters/"
_DISPATCH = "dispatch/"
_POISON = "poison"  # inputs quarantined by a supervisor after crashing a child N times in a row


class ReplayRefused(ValueError):
    """The component's dead letters cannot be replayed (the message says why and what to do)."""


def _log(data_dir: str | Path) -> EventLog:
    path = Path(data_dir) / "eventlog"
    if not (path / "data.mdb").exists():
        raise FileNotFoundError(f"{path}: no event log here; is {data_dir} a node's data_dir?")
    check_lmdb_header(path / "data.mdb")
    return open_event_log(path)


# LMDB's two meta pages (lmdb.h/mdb.c, native byte order, 64-bit): a 16-byte page header (pgno, pad,
# flags, lower/upper), then MDB_meta: magic, version, address, mapsize, two MDB_db of 48 bytes (the first
# one's md_pad is the page size), last_pg, txnid.
_PAGE_HEADER = struct.Struct("=QHHI")
_META = struct.Struct("=IIQQ")
_META_TAIL = struct.Struct("=QQ")  # last_pg, txnid
_PSIZE_AT, _TAIL_AT = 16 + _META.size, 16 + _META.size + 96
_P_META, _MAGIC = 0x08, 0xBEEFC0DE
_REMEDY = "restore it from a backup, or move the data_dir aside and start the node with a new one"


def check_lmdb_header(data_file: Path) -> None:
    """Raise :class:`UnreadableEventLog` unless ``data_file`` has two LMDB meta pages and is as long as
    the newest of them says. LMDB maps the file and trusts that length: reading a truncated file is a
    SIGBUS, and an empty one is silently made a new, empty environment."""
    try:
        with open(data_file, "rb") as handle:
            head = handle.read(2 * 65536)
            size = os.fstat(handle.fileno()).st_size  # after the metas: pages are written before them
    except OSError as exc:
        raise UnreadableEventLog(f"{data_file}: cannot read ({exc.strerror or exc})") from None
    if len(head) < _TAIL_AT + _META_TAIL.size:
        raise UnreadableEventLog(f"{data_file}: truncated or empty ({size} bytes); {_REMEDY}")
    page_size = struct.unpack_from("=I", head, _PSIZE_AT)[0]
    if page_size < 512 or page_size > 65536 or page_size & (page_size - 1):
        raise UnreadableEventLog(f"{data_file}: not an LMDB file (no valid header); {_REMEDY}")
    metas = []
    for offset in (0, page_size):
        if len(head) < offset + _TAIL_AT + _META_TAIL.size:
            raise UnreadableEventLog(f"{data_file}: truncated ({size} bytes, within its header); {_REMEDY}")
        flags = _PAGE_HEADER.unpack_from(head, offset)[2]
        magic = _META.unpack_from(head, offset + 16)[0]
        if not flags & _P_META or magic != _MAGIC:
            raise UnreadableEventLog(f"{data_file}: not an LMDB file (no valid header); {_REMEDY}")
        metas.append(_META_TAIL.unpack_from(head, offset + _TAIL_AT))
    last_page, _txnid = max(metas, key=lambda meta: meta[1])
    needed = (last_page + 1) * page_size
    if size < needed:
        raise UnreadableEventLog(
            f"{data_file}: truncated ({size} bytes, its header says {needed}); {_REMEDY}"
        )


def _mark_key(component: str, seq: int) -> str:
    return f"deadletters/replayed/{component}/{seq}"


def list_dead_letters(data_dir: str | Path, component: str | None = None) -> list[dict[str, Any]]:
    """Every dead letter of the node (or of one ``component``), oldest first per component:
    ``{"component", "seq", "reason", "ts", "replayed" (None or the replay mark), "record"}``."""
    log = _log(data_dir)
    streams = (
        [dead_letter_stream(component)]
        if component
        else sorted(s for s in log.streams() if s.startswith(_PREFIX))
    )
    out: list[dict[str, Any]] = []
    for stream in streams:
        name = stream.removeprefix(_PREFIX)
        marks = log.values_with_prefix(f"deadletters/replayed/{name}/")
        for rec in log.iter(stream):
            payload = rec.payload if isinstance(rec.payload, dict) else {"raw": rec.payload}
            out.append(
                {
                    "component": name,
                    "seq": rec.seq,
                    "reason": payload.get("reason"),
                    "ts": payload.get("ts"),
                    "replayed": marks.get(_mark_key(name, rec.seq)),
                    "record": payload,
                }
            )
    return out


def replay_dead_letters(
    data_dir: str | Path, component: str, seqs: Iterable[int] | None = None, *, now: float | None = None
) -> list[int]:
    """Queue the dead letters of ``component`` (all not yet replayed, or only ``seqs``) for delivery
    again; returns the dead-letter sequence numbers queued now (already replayed ones are skipped)."""
    if component == _POISON:
        return _replay_poison(data_dir, seqs, now=now)
    if not component.startswith(_DISPATCH) or component == _DISPATCH:
        raise ReplayRefused(
            f"{component!r}: only dispatcher dead letters (dispatch/<sink>) can be replayed; the others "
            "record input that was rejected, fix the producer and send it again"
        )
    sink = component.removeprefix(_DISPATCH)
    log = _log(data_dir)
    wanted = None if seqs is None else set(seqs)
    records = [r for r in log.iter(dead_letter_stream(component)) if wanted is None or r.seq in wanted]
    if wanted is not None and (missing := wanted - {r.seq for r in records}):
        raise ReplayRefused(f"{component!r} has no dead letter with seq {sorted(missing)}")
    marks = log.values_with_prefix(f"deadletters/replayed/{component}/")
    todo = [r for r in records if _mark_key(component, r.seq) not in marks]
    if not todo:
        return []
    stamp = time.time() if now is None else now
    with log.batch() as batch:
        for rec in todo:
            payload = rec.payload["payload"]
            batch.append(
                f"dispatch/replay/{sink}",
                {"index": payload["index"], "incident": payload["incident"], "deadletter_seq": rec.seq},
            )
            batch.put_value(_mark_key(component, rec.seq), {"ts": stamp})
    return [r.seq for r in todo]


def _replay_poison(data_dir: str | Path, seqs: Iterable[int] | None, *, now: float | None) -> list[int]:
    """Give quarantined inputs another chance (after the bug they hit is fixed): a quarantined stream
    record is appended again to its stream, as a new record the consumer will read; a quarantined message
    is let through again. Lifting the quarantine, the new records and the replay mark are one transaction."""
    log = _log(data_dir)
    stream = dead_letter_stream(_POISON)
    wanted = None if seqs is None else set(seqs)
    records = [r for r in log.iter(stream) if wanted is None or r.seq in wanted]
    if wanted is not None and (missing := wanted - {r.seq for r in records}):
        raise ReplayRefused(f"'poison' has no dead letter with seq {sorted(missing)}")
    marks = log.values_with_prefix(f"deadletters/replayed/{_POISON}/")
    todo = [r for r in records if _mark_key(_POISON, r.seq) not in marks]
    if not todo:
        return []
    stamp = time.time() if now is None else now
    held: dict[str, list[str]] = {}
    with log.batch() as batch:
        for rec in todo:
            letter = rec.payload
            ref = letter.get("input") or {}
            key = f"quarantine/{letter['actor']}"
            keys = held.setdefault(key, list(log.get_value(key) or []))
            if ref.get("kind") == "message":
                lifted = f"message:{ref['message_type']}:{ref['digest']}"
                keys[:] = [k for k in keys if k != lifted]
            for item in letter.get("records", []):
                batch.append(str(ref["stream"]), item["payload"])
            batch.put_value(_mark_key(_POISON, rec.seq), {"ts": stamp})
        for key, keys in held.items():
            batch.put_value(key, keys)
    return [r.seq for r in todo]


# -- click commands (the lead calls register(main) in supervisors/cli.py) ------------------------------


def _data_dir(data_dir: str | None, topology: str | None, node: str | None) -> Path:
    if data_dir:
        return Path(data_dir)
    from supervisors.topology import TopologyError, load_topology

    try:
        return load_topology(topology).node(node).data_dir
    except TopologyError as exc:
        raise _BadEventLog(str(exc)) from None


_where = [
    click.option("--data-dir", type=click.Path(file_okay=False), help="The node's data_dir."),
    click.option("--topology", type=click.Path(dir_okay=False), help="Topology (default: embedded)."),
    click.option("--node", "node", help="Node of the topology (when it has several)."),
]


def _with_where(fn: Any) -> Any:
    for option in reversed(_where):
        fn = option(fn)
    return fn


class _BadEventLog(click.ClickException):
    exit_code = 2  # bad input, as for every garrison command


def _isolated(data_dir: Path, request: dict[str, Any]) -> Any:
    """Run ``request`` (``_child_main``) in a child process and return its result; a child killed by a
    signal means the log is corrupt in a way that crashes LMDB's reader."""
    data_file = data_dir / "eventlog" / "data.mdb"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), *filter(None, sys.path)]),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "supervisors.deadletters", json.dumps(request)],
        capture_output=True,
        text=True,
        env=env,
    )
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        raise _BadEventLog(f"{data_file}: corrupt (reading it crashed the reader with {name}); {_REMEDY}")
    lines = proc.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        why = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise _BadEventLog(f"{data_file}: cannot read ({why})") from None
    if "refused" in answer:
        raise click.ClickException(answer["refused"])
    if "error" in answer:
        raise _BadEventLog(answer["error"])
    return answer["ok"]


def _child_main(request: dict[str, Any]) -> dict[str, Any]:
    """The child's side of ``_isolated``: one JSON answer, whatever the log holds."""
    data_dir = Path(request["data_dir"])
    try:
        if request["op"] == "list":
            return {"ok": list_dead_letters(data_dir, request["component"])}
        return {"ok": replay_dead_letters(data_dir, request["component"], request["seqs"])}
    except ReplayRefused as exc:
        return {"refused": str(exc)}
    except (FileNotFoundError, UnreadableEventLog) as exc:
        return {"error": str(exc)}
    except Exception as exc:  # CorruptRecord, LMDB's MDB_CORRUPTED ...: the log is damaged
        data_file = data_dir / "eventlog" / "data.mdb"
        return {"error": f"{data_file}: corrupt ({type(exc).__name__}: {exc}); {_REMEDY}"}


def register(cli_group: click.Group) -> None:
    """Add ``dead-letters list`` and ``dead-letters replay`` to ``cli_group``."""

    @cli_group.group(name="dead-letters")
    def dead_letters() -> None:
        """List and replay dead letters of a node.

        Exit codes: 0 done, 1 replay refused, 2 bad input (no event log, or a damaged one).
        """

    @dead_letters.command(name="list")
    @click.option("--component", help="Only this component (e.g. dispatch/webhook, mqtt-bridge).")
    @click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
    @_with_where
    def list_cmd(
        component: str | None, as_json: bool, data_dir: str | None, topology: str | None, node: str | None
    ) -> None:
        """Print the dead letters, oldest first per component."""
        where = _data_dir(data_dir, topology, node)
        items = _isolated(where, {"op": "list", "data_dir": str(where), "component": component})
        for item in items:
            if as_json:
                click.echo(json.dumps(item, default=str, sort_keys=True))
            else:
                state = "replayed" if item["replayed"] else "pending"
                click.echo(f"{item['component']}\t{item['seq']}\t{state}\t{item['reason']}")
        if not as_json:
            click.echo(f"{len(items)} dead letter(s)", err=True)

    @dead_letters.command(name="replay")
    @click.argument("component")
    @click.option("--seq", "seqs", type=int, multiple=True, help="Only these (repeatable); default all.")
    @_with_where
    def replay_cmd(
        component: str, seqs: tuple[int, ...], data_dir: str | None, topology: str | None, node: str | None
    ) -> None:
        """Deliver COMPONENT's dead letters again (dispatch/<sink> or poison); each is replayed once.

        A running node delivers them at once; a stopped node on its next start."""
        where = _data_dir(data_dir, topology, node)
        request = {"op": "replay", "data_dir": str(where), "component": component, "seqs": list(seqs) or None}
        done = _isolated(where, request)
        click.echo(
            f"replayed {len(done)} dead letter(s) of {component}: {done} (a stopped node delivers them "
            "when it next starts)"
        )


if __name__ == "__main__":
    print(json.dumps(_child_main(json.loads(sys.argv[1])), default=str))
