"""On-call tools for dead letters: list them, and replay the dispatcher's ones.

A dead letter is a record of stream ``deadletters/<component>`` (``dispatch/<sink>``, ``mqtt-bridge``,
``incident-log``, ...). Replaying one of ``dispatch/<sink>`` appends its incident to
``dispatch/replay/<sink>``, which the running (or next) dispatcher delivers to that sink like a new item,
with the same retries, breaker and dead-lettering. The replay and its mark
(value ``deadletters/replayed/<component>/<seq>``) are written in one transaction, so a dead letter is
replayed at most once, however often the command runs. Other components' dead letters (malformed MQTT
payloads, invalid proposals) have nothing to be delivered again: replaying them is refused.

These functions open the node's event log themselves; LMDB lets them run next to a live node.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click

from actors.eventlog import EventLog, open_event_log
from actors.streams import dead_letter_stream

__all__ = ["ReplayRefused", "list_dead_letters", "register", "replay_dead_letters"]

_PREFIX = "deadletters/"
_DISPATCH = "dispatch/"


class ReplayRefused(ValueError):
    """The component's dead letters cannot be replayed (the message says why and what to do)."""


def _log(data_dir: str | Path) -> EventLog:
    path = Path(data_dir) / "eventlog"
    if not (path / "data.mdb").exists():
        raise FileNotFoundError(f"{path}: no event log here; is {data_dir} a node's data_dir?")
    return open_event_log(path)


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


# -- click commands (the lead calls register(main) in supervisors/cli.py) ------------------------------


def _data_dir(data_dir: str | None, topology: str | None, node: str | None) -> Path:
    if data_dir:
        return Path(data_dir)
    from supervisors.topology import TopologyError, load_topology

    try:
        return load_topology(topology).node(node).data_dir
    except TopologyError as exc:
        raise click.ClickException(str(exc)) from None


_where = [
    click.option("--data-dir", type=click.Path(file_okay=False), help="The node's data_dir."),
    click.option("--topology", type=click.Path(dir_okay=False), help="Topology (default: embedded)."),
    click.option("--node", "node", help="Node of the topology (when it has several)."),
]


def _with_where(fn: Any) -> Any:
    for option in reversed(_where):
        fn = option(fn)
    return fn


def register(cli_group: click.Group) -> None:
    """Add ``dead-letters list`` and ``dead-letters replay`` to ``cli_group``."""

    @cli_group.group(name="dead-letters")
    def dead_letters() -> None:
        """List and replay dead letters of a node."""

    @dead_letters.command(name="list")
    @click.option("--component", help="Only this component (e.g. dispatch/webhook, mqtt-bridge).")
    @click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
    @_with_where
    def list_cmd(
        component: str | None, as_json: bool, data_dir: str | None, topology: str | None, node: str | None
    ) -> None:
        """Print the dead letters, oldest first per component."""
        try:
            items = list_dead_letters(_data_dir(data_dir, topology, node), component)
        except FileNotFoundError as exc:
            raise click.ClickException(str(exc)) from None
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
        """Deliver COMPONENT's dead letters again (dispatch/<sink> only); each is replayed once."""
        try:
            done = replay_dead_letters(_data_dir(data_dir, topology, node), component, seqs or None)
        except (FileNotFoundError, ReplayRefused) as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"replayed {len(done)} dead letter(s) of {component}: {done}")
