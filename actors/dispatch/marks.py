"""The replicated dispatch progress of a cluster, one offset per sink (pure: no I/O).

The leader's dispatcher proposes a ``dispatch_mark`` entry after each batch: ``through`` is the lowest offset
of its sinks in ``incidents/committed`` (what every sink has) and ``sinks`` each sink's own offset. Every
replica applies it into one value, ``{"through": N, "sinks": {name: offset}}``. A dispatcher that becomes the
leader's resumes each sink after that sink's own mark, so a sink stuck behind failures holds back only
itself: the others' batches past it are not delivered again after a failover.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AppliedMarks", "merge_mark", "resume_after", "stored_marks"]

# {"through": int, "sinks": {sink name: int}}
AppliedMarks = dict[str, Any]

MAX_SINKS = 50  # as DispatcherArgs.sinks: a mark naming more is not a dispatcher's


def empty() -> AppliedMarks:
    return {"through": 0, "sinks": {}}


def stored_marks(marks: AppliedMarks | None, dispatched: int | None) -> AppliedMarks | None:
    """The applied marks as a replica stored them: its ``dispatch_marks``, or on a log whose marks were all
    applied before they were per sink, its single ``dispatched`` offset (what every sink had)."""
    if marks is not None:
        return marks
    return {"through": int(dispatched), "sinks": {}} if dispatched else None


def merge_mark(applied: AppliedMarks | None, payload: Any) -> AppliedMarks | None:
    """``applied`` moved forward by a mark's ``payload``; None when it moves nothing (or is malformed: a mark
    only ever comes from a leader's dispatcher, but a replica must not crash on a bad entry)."""
    if not isinstance(payload, dict):
        return None
    current = applied if applied is not None else empty()
    through = payload.get("through")
    sinks = payload.get("sinks")
    new_through = current["through"]
    if type(through) is int and through > new_through:
        new_through = through
    new_sinks = dict(current["sinks"])
    if isinstance(sinks, dict) and len(sinks) <= MAX_SINKS:
        for name, offset in sinks.items():
            if type(name) is str and type(offset) is int and offset > new_sinks.get(name, 0):
                new_sinks[name] = offset
    if new_through == current["through"] and new_sinks == current["sinks"]:
        return None
    return {"through": new_through, "sinks": new_sinks}


def resume_after(applied: AppliedMarks | None, sink: str) -> int:
    """Where ``sink``'s lane starts on a dispatcher that becomes the leader's: after its own mark, never
    before what every sink had (a mark of an older version carries only ``through``)."""
    if applied is None:
        return 0
    return max(int(applied.get("through", 0)), int(applied.get("sinks", {}).get(sink, 0)))
