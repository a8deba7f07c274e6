"""``IncidentLogActor``: the single-node incident log. Orders proposed incidents, applies each
``incident_id`` once, and appends them to ``incidents/committed`` with their index.

Its interface is the two streams: it consumes ``incidents/proposed`` and produces ``incidents/committed``
(``{"index", "incident"}``). A Raft replica group can take its place behind the same streams: proposals go
into the replicated log instead, and the committed entries come out in the same shape.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from actors.args import ActorArgs
from actors.base import SupervisedActor
from actors.streams import COMMITTED_INCIDENTS, PROPOSED_INCIDENTS, offset_key

REQUIRED = ("incident_id", "timestamp", "type", "source_node", "sensor", "confidence", "payload")


def applied_key(incident_id: str) -> str:
    return f"incident/applied/{incident_id}"


class IncidentLogArgs(ActorArgs):
    """``IncidentLogActor``'s args."""

    poll_interval: float = Field(0.05, gt=0, le=3600)  # s between reads of ``incidents/proposed``


class IncidentLogActor(SupervisedActor):
    Args = IncidentLogArgs
    args: IncidentLogArgs

    def on_start(self, args: dict[str, Any]) -> None:
        self.poll = self.args.poll_interval
        self.offset_key = offset_key(f"incident-log/{self.path}")
        self.offset = int(self.event_log.get_value(self.offset_key, 0))
        self.index = self.event_log.last_seq(COMMITTED_INCIDENTS)
        self.subscribe(PROPOSED_INCIDENTS)

    def on_appended(self, stream: str) -> None:
        limit = self.input_limit(PROPOSED_INCIDENTS, 1024)
        records = self.event_log.read(PROPOSED_INCIDENTS, after=self.offset, limit=limit)
        if records:
            self._apply(records)
        if len(records) == limit:
            self.wake_again()  # a backlog: one batch per turn

    def _apply(self, records: list[Any]) -> None:
        committed: list[tuple[int, dict[str, Any]]] = []  # (index, incident)
        seen: set[str] = set()
        with self.event_log.batch() as batch:
            for rec in self.admit(records):
                incident = rec.payload
                missing = [k for k in REQUIRED if k not in incident]
                if missing:
                    batch.append(
                        "deadletters/incident-log", {"reason": f"missing {missing}", "payload": incident}
                    )
                    continue
                iid = incident["incident_id"]
                if iid in seen or self.event_log.get_value(applied_key(iid)) is not None:
                    continue  # same incident_id twice: applied once
                seen.add(iid)
                index = self.index + len(committed) + 1
                batch.append(COMMITTED_INCIDENTS, {"index": index, "incident": incident})
                batch.put_value(applied_key(iid), index)
                committed.append((index, incident))
            batch.put_value(self.offset_key, records[-1].seq)
        self.offset = records[-1].seq
        self.index += len(committed)
        for index, incident in committed:
            self.log.info(
                "incident_committed",
                index=index,
                incident_id=incident["incident_id"],
                type=incident["type"],
                sensor=incident["sensor"],
                confidence=incident["confidence"],
            )
