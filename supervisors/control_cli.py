"""``garrison ask`` / ``tell`` / ``status``: talk to a running node over its control socket.

Exit codes: 0 answered, 1 the actor did not answer in time, 2 bad input (the message is not JSON), 3 no
such actor, 4 no node running / reachable, 5 any other refusal by the node, 6 the actor crashed handling
the message (its supervisor restarts it).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from supervisors.client import (
    ActorCrashed,
    AskTimedOut,
    ControlError,
    NodeClient,
    NodeNotRunning,
    NoSuchActor,
    connect,
)

__all__ = ["register", "render_status"]

EXIT_TIMEOUT, EXIT_BAD_INPUT, EXIT_NO_SUCH_ACTOR = 1, 2, 3
EXIT_NOT_RUNNING, EXIT_REFUSED, EXIT_CRASHED = 4, 5, 6


def _where(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--topology", type=click.Path(dir_okay=False), help="Topology file of the node.")(f)
    f = click.option("--data-dir", "data_dir", type=click.Path(file_okay=False), help="The node's data_dir.")(
        f
    )
    f = click.option("--node", "node", help="Node name (default: the only node this user runs).")(f)
    return f


def _connect(node: str | None, data_dir: str | None, topology: str | None) -> NodeClient:
    try:
        return connect(data_dir=data_dir, topology=topology, node=node)
    except NodeNotRunning as exc:
        _fail(str(exc), EXIT_NOT_RUNNING)
    except ControlError as exc:
        _fail(str(exc), EXIT_REFUSED)
    except Exception as exc:  # a bad topology file: its own message names the file and line
        _fail(str(exc), EXIT_BAD_INPUT)
    raise AssertionError("unreachable")


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _message(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(
            f"MESSAGE_JSON is not JSON ({exc.msg} at column {exc.colno}); quote it for the shell, "
            """e.g. garrison ask root/counter '"incr"'""",
            EXIT_BAD_INPUT,
        )


def _run(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except AskTimedOut as exc:
        _fail(f"timeout: {exc}", EXIT_TIMEOUT)
    except NoSuchActor as exc:
        _fail(f"no such actor: {exc}", EXIT_NO_SUCH_ACTOR)
    except ActorCrashed as exc:
        _fail(f"the actor crashed handling the message: {exc}", EXIT_CRASHED)
    except NodeNotRunning as exc:
        _fail(str(exc), EXIT_NOT_RUNNING)
    except ControlError as exc:
        _fail(str(exc), EXIT_REFUSED)


@click.command(name="ask")
@click.argument("path")
@click.argument("message_json")
@_where
@click.option("--timeout", type=click.FloatRange(min=0.001, max=3600), default=5.0, show_default=True)
def ask_cmd(
    path: str, message_json: str, node: str | None, data_dir: str | None, topology: str | None, timeout: float
) -> None:
    """Send MESSAGE_JSON to the actor at PATH (e.g. root/counter) and print its reply as JSON."""
    message = _message(message_json)
    with _connect(node, data_dir, topology) as client:
        reply = _run(lambda: client.ask(path, message, timeout=timeout))
    click.echo(json.dumps(reply))


@click.command(name="tell")
@click.argument("path")
@click.argument("message_json")
@_where
def tell_cmd(
    path: str, message_json: str, node: str | None, data_dir: str | None, topology: str | None
) -> None:
    """Send MESSAGE_JSON to the actor at PATH without waiting for an answer."""
    message = _message(message_json)
    with _connect(node, data_dir, topology) as client:
        _run(lambda: client.tell(path, message))


@click.command(name="status")
@_where
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
@click.option("--watch", is_flag=True, help="Refresh every --interval seconds until Ctrl-C.")
@click.option("--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True)
def status_cmd(
    node: str | None, data_dir: str | None, topology: str | None, as_json: bool, watch: bool, interval: float
) -> None:
    """The supervision tree as running (state, pid, incarnation, uptime, restarts, backoff, last exit)
    and the node's streams (heads, consumer offsets and lag)."""
    with _connect(node, data_dir, topology) as client:
        while True:
            status = _run(client.status)
            text = json.dumps(status) if as_json else render_status(status)
            if watch and not as_json:
                click.clear()
            click.echo(text)
            if not watch:
                return
            try:
                time.sleep(interval)
            except KeyboardInterrupt:
                return


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _child_lines(child: dict[str, Any], prefix: str, last: bool, now: float) -> list[str]:
    branch = "└─ " if last else "├─ "
    state = str(child.get("status", "?"))
    if child.get("backoff_pending_s") is not None:
        state = f"backoff {child['backoff_pending_s']:.1f}s"
    parts = [f"{child.get('id', '?'):<16}", f"{state:<12}"]
    if child.get("pid"):
        parts.append(f"pid {child['pid']}")
    parts.append(f"inc {child.get('incarnation', 0)}")
    if child.get("uptime_s") is not None:
        parts.append(f"up {_ago(float(child['uptime_s']))}")
    period = child.get("period_s")
    window = f" in {period:g}s" if isinstance(period, int | float) else ""
    parts.append(
        f"restarts {child.get('restarts_in_period', 0)}{window} / {child.get('restarts_total', 0)} total"
    )
    if child.get("held_messages"):
        parts.append(f"held {child['held_messages']}")
    if child.get("supervisor"):
        parts.append("(supervisor)")
    lines = [prefix + branch + "  ".join(parts)]
    inner = prefix + ("   " if last else "│  ")
    exit_ = child.get("last_exit")
    if exit_:
        what = f"{exit_.get('kind')}: {exit_.get('reason')}"
        if exit_.get("message_type"):
            what += f" (handling {exit_['message_type']})"
        lines.append(
            f"{inner}   last exit {_ago(now - float(exit_.get('at', now)))} ago: {what} -> {exit_.get('directive')}"
        )
    kids = child.get("children") or []
    for i, kid in enumerate(kids):
        lines += _child_lines(kid, inner, i == len(kids) - 1, now)
    return lines


def render_status(status: dict[str, Any]) -> str:
    """The text on-call reads: an indented tree, then the streams."""
    now = float(status.get("at", time.time()))
    lines = [f"node {status.get('node')}  data_dir {status.get('data_dir')}"]
    tree = status.get("tree")
    if tree is None:
        lines.append("  the root supervisor did not answer")
    else:
        lines.append(str(tree.get("path")))
        kids = tree.get("children") or []
        for i, kid in enumerate(kids):
            lines += _child_lines(kid, "", i == len(kids) - 1, now)
    if status.get("unanswered"):
        lines.append(f"no answer from: {', '.join(status['unanswered'])}")
    streams = status.get("streams") or {}
    if "error" in streams:
        lines.append(f"streams: cannot read the event log: {streams['error']}")
        return "\n".join(lines)
    heads = streams.get("heads") or {}
    if heads:
        lines += ["", "streams                                   head"]
        lines += [f"  {name:<38}{head:>6}" for name, head in sorted(heads.items())]
    consumers = streams.get("consumers") or []
    if consumers:
        lines += ["", "consumers                                 offset  lag  stream"]
        for c in consumers:
            lag = "?" if c.get("lag") is None else str(c["lag"])
            lines.append(f"  {c['consumer']:<38}{c['offset']:>6}  {lag:>3}  {c.get('stream') or '?'}")
    return "\n".join(lines)


def register(main: click.Group) -> None:
    main.add_command(ask_cmd)
    main.add_command(tell_cmd)
    main.add_command(status_cmd)
