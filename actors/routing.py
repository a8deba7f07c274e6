"""Dead letters of name routing: a message for a path that does not exist, or that overflowed the hold of a
restarting target, is kept in the event log stream ``deadletters/routing`` and logged as
``message_dead_lettered`` (sender, target, message type, reason): never dropped without a trace.
"""

from __future__ import annotations

import time
from typing import Any

from actors.eventlog import EventLog
from actors.messages import Route
from actors.streams import dead_letter_stream

__all__ = ["ROUTING_DEAD_LETTERS", "dead_letter", "message_type_of"]

ROUTING_DEAD_LETTERS = dead_letter_stream("routing")
_BODY_LIMIT = 4000  # characters of the body's repr kept when the body itself is not plain data


def message_type_of(body: object) -> str:
    return type(body).__name__


def _plain(body: Any) -> Any:
    """The body as stored: plain data as is, anything else as a bounded repr (a dead letter must never
    fail to be written because its body is not serialisable)."""
    if body is None or isinstance(body, str | int | float | bool):
        return body if not isinstance(body, str) else body[:_BODY_LIMIT]
    if isinstance(body, list | tuple | dict):
        text = repr(body)
        if len(text) <= _BODY_LIMIT:
            try:
                from actors.eventlog import encode_envelope

                encode_envelope(body)
                return body
            except Exception:
                pass
    return {"repr": repr(body)[:_BODY_LIMIT]}


def dead_letter(log: Any, event_log: EventLog | None, route: Route, kind: str, reason: str, at: str) -> None:
    """Record ``route`` as a dead letter (``kind``: no_such_actor, hold_full, not_restarted, bad_path)."""
    letter = {
        "kind": kind,
        "reason": reason,
        "sender": route.sender_path,
        "target": route.path,
        "message_type": message_type_of(route.body),
        "body": _plain(route.body),
        "request_id": route.request_id,
        "at": at,
        "dead_lettered_at": time.time(),
    }
    seq = None
    if event_log is not None:
        try:
            with event_log.batch() as batch:
                batch.append(ROUTING_DEAD_LETTERS, letter)
            seq = batch.assigned[ROUTING_DEAD_LETTERS][-1]
        except Exception as exc:  # the log line below still says what was lost
            log.error("dead_letter_write_failed", stream=ROUTING_DEAD_LETTERS, reason=repr(exc)[:300])
    log.warning(
        "message_dead_lettered",
        sender=route.sender_path,
        target=route.path,
        message_type=letter["message_type"],
        kind=kind,
        reason=reason,
        request_id=route.request_id,
        dead_letters=ROUTING_DEAD_LETTERS,
        seq=seq,
    )
