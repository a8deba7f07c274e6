"""Structured logs: one JSON object per line on stderr (or readable console lines), stable keys.

Every process of a node (launcher, supervisors, actors) calls :func:`configure_logging` once; lines are
written to the inherited stderr with one ``write`` each, so lines of different processes do not interleave.
Stable keys: ``event``, ``ts``, ``level``, ``node``, then the event's own (``supervisor``, ``child``,
``reason``, ``restart_count``, ``strategy``, ``directive``, ...).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

LOG_FORMATS = ("json", "console")
_FIRST_KEYS = ("event", "ts", "level", "node", "supervisor", "child", "actor")


def _order_keys(_: Any, __: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    ordered = {k: event.pop(k) for k in _FIRST_KEYS if k in event}
    ordered.update(event)
    return ordered


def default_format(stream: TextIO = sys.stderr) -> str:
    return "console" if stream.isatty() else "json"


def configure_logging(fmt: str, node: str, stream: TextIO | None = None) -> None:
    if fmt not in LOG_FORMATS:
        raise ValueError(f"--log-format must be one of {', '.join(LOG_FORMATS)}, not {fmt!r}")
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(default=str)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False, pad_event_to=28)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.processors.dict_tracebacks,
            _order_keys,
            renderer,
        ],
        logger_factory=structlog.WriteLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(node=node)


def get_logger(**bound: Any) -> Any:
    return structlog.get_logger().bind(**bound)
