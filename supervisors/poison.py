"""Poison quarantine, the pure part: which input has crashed a child how many times in a row.

One bad input must never be a permanent outage. A crash report names the input being processed (a range of
event-log records, or a mailbox message by digest). When the same input crashes a child ``poison_after``
times in a row, the supervisor moves it to a dead letter and the next instance continues after it.

A batch consumer reports the whole batch it was on; the next instance is told the suspect range and reads
one record at a time through it (``SupervisedActor.input_limit``), so the next crash names a single record.
A crash on a record inside the previously reported range counts as the same input, so isolating a record
costs no extra crashes. No clock, no I/O: the supervisor shell persists :class:`PoisonTrack` and executes
the quarantine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["PoisonTrack", "input_keys", "track_crash"]


@dataclass(frozen=True, slots=True)
class PoisonTrack:
    """The input of a child's latest crash, narrowed as far as crashes allow, and how many crashes in a
    row were on it."""

    input_ref: dict[str, Any]
    crashes: int

    def to_json(self) -> dict[str, Any]:
        return {"input_ref": dict(self.input_ref), "crashes": self.crashes}

    @classmethod
    def from_json(cls, data: Any) -> PoisonTrack | None:
        if not isinstance(data, dict) or not isinstance(data.get("input_ref"), dict):
            return None
        return cls(dict(data["input_ref"]), int(data.get("crashes", 0)))


def _same_input(previous: dict[str, Any], new: dict[str, Any]) -> bool:
    if previous.get("kind") != new.get("kind"):
        return False
    if new.get("kind") == "stream":
        return (
            previous.get("stream") == new.get("stream")
            and int(previous["first"]) <= int(new["first"])
            and int(new["last"]) <= int(previous["last"])
        )
    return bool(
        previous.get("digest") == new.get("digest")
        and previous.get("message_type") == new.get("message_type")
    )


def track_crash(
    previous: PoisonTrack | None, input_ref: dict[str, Any] | None, poison_after: int
) -> tuple[PoisonTrack | None, dict[str, Any] | None]:
    """The track after one more crash, and the input to quarantine now (``None``: not yet).

    A crash on no identifiable input (a timer, ``on_start``, an escalation) breaks the run."""
    if input_ref is None or input_ref.get("kind") not in ("stream", "message"):
        return None, None
    if previous is not None and _same_input(previous.input_ref, input_ref):
        track = PoisonTrack(dict(input_ref), previous.crashes + 1)
    else:
        track = PoisonTrack(dict(input_ref), 1)
    if track.crashes >= max(1, poison_after):
        return None, track.input_ref  # quarantined: the next crash starts a new run
    return track, None


def input_keys(input_ref: dict[str, Any]) -> list[str]:
    """The keys a quarantined input is known by in ``quarantine/<path>`` (``stream@seq`` per record)."""
    if input_ref.get("kind") == "stream":
        first, last = int(input_ref["first"]), int(input_ref["last"])
        return [f"{input_ref['stream']}@{seq}" for seq in range(first, last + 1)]
    return [f"message:{input_ref['message_type']}:{input_ref['digest']}"]
