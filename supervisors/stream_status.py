"""The node's streams for ``garrison status``: each stream's head and each consumer's offset and lag.

Consumers keep their offsets as event-log values under names of their own; this module knows the built-in
ones (``offset/<consumer>`` and the state values of inference and CRDT replicas that carry an offset) and
which stream each one reads. An offset whose stream is unknown is shown without a lag. Read only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from actors.eventlog import open_event_log
from actors.streams import COMMITTED_INCIDENTS, PROPOSED_INCIDENTS, READINGS

__all__ = ["consumer_offsets", "stream_status"]


def consumer_offsets(values: dict[str, Any]) -> list[dict[str, Any]]:
    """(consumer, stream, offset) for every offset found among the event-log ``values``. Pure."""
    found: list[dict[str, Any]] = []
    for key, value in sorted(values.items()):
        if key.startswith("offset/") and isinstance(value, int):
            consumer = key[len("offset/") :]
            found.append({"consumer": consumer, "stream": _stream_of(consumer), "offset": value})
        elif (
            key.startswith("inference/") and isinstance(value, dict) and isinstance(value.get("offset"), int)
        ):
            found.append({"consumer": key, "stream": READINGS, "offset": value["offset"]})
        elif key.startswith("crdt/") and isinstance(value, dict):
            replica = key[len("crdt/") :]
            if isinstance(value.get("readings_offset"), int):
                found.append({"consumer": key, "stream": READINGS, "offset": value["readings_offset"]})
            if isinstance(value.get("inbox_offset"), int):
                found.append(
                    {
                        "consumer": f"{key}/inbox",
                        "stream": f"gossip/{replica}",
                        "offset": value["inbox_offset"],
                    }
                )
    return found


def _stream_of(consumer: str) -> str | None:
    if consumer.startswith(("incident-log/", "raft/")):
        return PROPOSED_INCIDENTS
    if consumer.startswith("dispatch/"):
        sink = consumer[len("dispatch/") :]
        if sink.endswith("/replay"):
            return f"dispatch/replay/{sink[: -len('/replay')]}"
        return COMMITTED_INCIDENTS
    return None


def stream_status(data_dir: str | Path) -> dict[str, Any]:
    log = open_event_log(Path(data_dir) / "eventlog")
    heads = {stream: log.last_seq(stream) for stream in log.streams()}
    values: dict[str, Any] = {}
    for prefix in ("offset/", "inference/", "crdt/"):
        values.update(log.values_with_prefix(prefix))
    consumers = consumer_offsets(values)
    for consumer in consumers:
        stream = consumer["stream"]
        consumer["lag"] = max(0, heads.get(stream, 0) - consumer["offset"]) if stream else None
    return {"heads": heads, "consumers": consumers}
