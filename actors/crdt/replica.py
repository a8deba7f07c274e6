"""``CrdtReplicaActor``: per-pollutant exposure counters (a delta-state CRDT) fed by ``readings``.

The shell around ``actors.crdt.gossip.GossipCore``. Exposure is counted in integer micro-units of
``unit x seconds`` (a reading of ``v`` held for ``reading_interval_s``). Each batch of readings is added to
the state and persisted together with the input offset in one durable transaction (exactly once across
crashes); readings that arrive within ``merge_delay`` of each other share a batch. Gossip goes through
the event log: messages for replica ``R`` are appended to ``gossip/R`` and R reads them after its own
offset. The log is the bus between replicas of one node; the core tolerates loss,
duplication and reordering, so an inter-node channel can later carry the same encoded messages.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field

from actors.args import ActorArgs
from actors.base import SupervisedActor
from actors.crdt.codec import decode, decode_message, encode
from actors.crdt.exposure import Exposure
from actors.crdt.gossip import GossipCore, GossipMessage
from actors.streams import READINGS
from models.readings import ReadingColumns

MICRO = 1_000_000
READING_RECORDS = 256  # records of ``readings`` merged per turn


def gossip_stream(replica: str) -> str:
    return f"gossip/{replica}"


class CrdtReplicaArgs(ActorArgs):
    """``CrdtReplicaActor``'s args."""

    replica: str | None = Field(None, min_length=1, max_length=200)  # replica id; default the child id
    peers: list[str] = Field(default_factory=list, max_length=100)  # replica ids to gossip with
    consume_readings: bool = True  # count the node's readings (one replica per node should)
    reading_interval_s: float = Field(10.0, gt=0, le=86_400)  # s a reading's value is held for
    gossip_interval: float = Field(1.0, gt=0, le=3600)  # s between gossip rounds
    report_interval: float = Field(5.0, gt=0, le=86_400)  # s between ``exposure`` log events
    # s between being woken by new readings or deltas and merging them: what arrives meanwhile shares one
    # durable commit. Exposure is a running total, not an alarm, and the detection path shares the disk
    # and the cores: one commit per MQTT reading was most of this actor's cost. 0: merge at once.
    merge_delay: float = Field(0.25, ge=0, le=60)


class CrdtReplicaActor(SupervisedActor):
    """Args: :class:`CrdtReplicaArgs`."""

    Args = CrdtReplicaArgs
    args: CrdtReplicaArgs

    def on_start(self, args: dict[str, Any]) -> None:
        self.replica = self.args.replica or self.child_id
        self.consume = self.args.consume_readings
        self.interval_s = self.args.reading_interval_s
        self.key = f"crdt/{self.replica}"
        saved = self.event_log.get_value(self.key) or {}
        state = decode(saved["state"], Exposure) if "state" in saved else Exposure()
        self.readings_offset = int(saved.get("readings_offset", 0))
        self.inbox_offset = int(saved.get("inbox_offset", 0))
        incarnation = int(saved.get("incarnation", 0)) + 1
        peers = [p for p in self.args.peers if p != self.replica]
        self.core = GossipCore(self.replica, peers, state, incarnation=incarnation)
        self._save(outgoing=[])  # the new incarnation number must be durable before it is used
        self.gossip_interval = self.args.gossip_interval
        self.report_interval = self.args.report_interval
        self.merge_delay = self.args.merge_delay
        self._merge_due = False  # a "merge" timer is set
        self._backlog = False  # the last merge stopped at its batch limit: go on at once
        self.log.info("exposure_recovered", replica=self.replica, exposure=self._report())
        self.schedule("work", self.gossip_interval)
        self.schedule("report", self.report_interval)
        inputs = [gossip_stream(self.replica)] + ([READINGS] if self.consume else [])
        self.subscribe(*inputs)  # readings and deltas are merged when they arrive; gossip goes out per tick

    def _report(self) -> dict[str, float]:
        return {p: v / MICRO for p, v in sorted(self.core.state.value().items())}

    def _save(self, outgoing: list[GossipMessage]) -> None:
        with self.event_log.batch() as batch:
            for msg in outgoing:
                batch.append(gossip_stream(msg.recipient), encode(msg))
            batch.put_value(
                self.key,
                {
                    "state": encode(self.core.state),
                    "readings_offset": self.readings_offset,
                    "inbox_offset": self.inbox_offset,
                    "incarnation": self.core.incarnation,
                },
            )

    def on_timer(self, name: str) -> None:
        if name == "report":
            self.log.info("exposure", replica=self.replica, exposure=self._report())
            self.schedule("report", self.report_interval)
            return
        if name == "merge":
            self._merge_due = False
            self._work(gossip=False)
            return
        self._work(gossip=True)
        self.schedule("work", self.gossip_interval)

    def on_appended(self, stream: str) -> None:
        if self._backlog or self.merge_delay == 0:
            self._work(gossip=False)
        elif not self._merge_due:
            self._merge_due = True
            self.schedule("merge", self.merge_delay)

    def _work(self, gossip: bool) -> None:
        outgoing: list[GossipMessage] = []
        changed = backlog = False
        if self.consume:
            # records are blocks (a producer's commit each, tens of readings): 256 of them is a turn
            records = self.event_log.read(READINGS, after=self.readings_offset, limit=READING_RECORDS)
            backlog = len(records) == READING_RECORDS
            for rec in self.admit(records):
                block = ReadingColumns.from_record(rec.payload)
                pollutants = [d[1] for d in block.descriptors]
                for code, value in zip(block.index.tolist(), block.value.tolist(), strict=True):
                    if not math.isfinite(value) or value <= 0:
                        continue
                    self.core.add(pollutants[code], round(value * self.interval_s * MICRO))
            if records:
                self.readings_offset, changed = records[-1].seq, True
        inbox = self.event_log.read(gossip_stream(self.replica), after=self.inbox_offset, limit=1024)
        for rec in self.admit(inbox):
            outgoing.extend(self.core.receive(decode_message(rec.payload)))
        if inbox:
            self.inbox_offset, changed = inbox[-1].seq, True
        if gossip:
            outgoing.extend(self.core.tick())
        if changed or outgoing:
            self._save(outgoing)
        self._backlog = backlog or len(inbox) == 1024
        if self._backlog:
            self.wake_again()  # a backlog: one batch per turn, the next one at once

    def on_message(self, msg: object, sender: Any) -> None:
        if msg == "exposure":
            self.send(sender, self.core.state.value())
