"""``DispatcherActor``: delivers committed incidents to every configured sink, at least once each, and
exactly once into a file sink, across crashes.

Each sink is an independent lane with its own offsets in the event log: ``offset/dispatch/<sink>`` over
``incidents/committed`` and ``offset/dispatch/<sink>/replay`` over ``dispatch/replay/<sink>`` (dead letters
an operator replayed). A slow or dead sink therefore never holds back the others. Order of side effects
per item: deliver (file: write + fsync), then commit the lane's offset; a crash in between repeats the
delivery (webhook/MQTT receivers dedupe on the incident id) and the file sink skips it (see ``sinks``).
A lane commits its offset before it moves from one input stream to the other, so the lines a crash can
leave uncommitted always come from one stream, which is what the file sink's recovery relies on.

A failed attempt is retried after an exponential, jittered delay (a timer; other lanes go on); the sink's
circuit breaker stops attempts while the endpoint looks dead. After ``max_attempts`` failures (or at once
for a failure retrying cannot fix) the item becomes a dead letter in ``deadletters/dispatch/<sink>`` in
the same transaction as the offset that moves past it.
"""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors.base import SupervisedActor
from actors.dispatch.policy import CircuitBreaker, RetryPolicy, Transition
from actors.dispatch.sinks import Delivery, DeliveryFailed, Sink, build_sink, sink_name
from actors.streams import COMMITTED_INCIDENTS, dead_letter_stream, offset_key

__all__ = ["DispatcherActor", "replay_stream", "sink_component"]


def sink_component(sink: str) -> str:
    """The dead-letter component of a sink: its stream is ``deadletters/dispatch/<sink>``."""
    return f"dispatch/{sink}"


def replay_stream(sink: str) -> str:
    """Replayed dead letters of ``sink`` wait here for the dispatcher."""
    return f"dispatch/replay/{sink}"


@dataclass
class _Input:
    """One input stream of a lane and how far the lane has durably got in it."""

    stream: str
    offset_key: str
    offset: int
    is_replay: bool
    buffered: deque[tuple[int, Delivery]] = field(default_factory=deque)
    read_through: int = 0  # newest sequence already in ``buffered`` or handled (>= offset)

    def __post_init__(self) -> None:
        self.read_through = max(self.read_through, self.offset)


@dataclass
class _Lane:
    sink: Sink
    breaker: CircuitBreaker
    inputs: list[_Input]
    attempts: int = 0  # failed attempts of the item at the head of the current input
    waiting: bool = False  # a retry timer is pending: do not attempt before it fires


class DispatcherActor(SupervisedActor):
    """args: ``sinks`` (list of ``{"kind": "file"|"webhook"|"mqtt", "name"?, ...}``, default one file sink
    ``incidents.jsonl``), ``poll_interval`` (s, 0.05), ``max_attempts`` (5), ``backoff`` (``base`` 0.5,
    ``cap`` 30, ``factor`` 2, ``jitter`` 0.5), ``breaker`` (``failure_threshold`` 5, ``reset_timeout``
    10 s), ``batch`` (items per lane per poll, 100), ``seed`` (jitter; default: fresh entropy)."""

    def on_start(self, args: dict[str, Any]) -> None:
        self.poll = float(args.get("poll_interval", 0.05))
        self.batch_size = max(1, int(args.get("batch", 100)))
        backoff = args.get("backoff") or {}
        self.retry = RetryPolicy(
            max_attempts=int(args.get("max_attempts", 5)),
            base=float(backoff.get("base", 0.5)),
            cap=float(backoff.get("cap", 30.0)),
            factor=float(backoff.get("factor", 2.0)),
            jitter=float(backoff.get("jitter", 0.5)),
        )
        self.rng = random.Random(args.get("seed"))
        breaker = args.get("breaker") or {}
        specs = args.get("sinks") or [{"kind": "file", "path": "incidents.jsonl"}]
        names = [sink_name(s) for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"dispatcher sinks {names}: give sinks of the same kind distinct 'name's")
        assert self.config is not None
        data_dir = Path(self.config.data_dir)
        client_id = f"garrison-{self.config.node}-{self.path.replace('/', '-')}"
        self.lanes: dict[str, _Lane] = {}
        for spec in specs:
            sink = build_sink(spec, data_dir, client_id)
            self.lanes[sink.name] = _Lane(
                sink=sink,
                breaker=CircuitBreaker(
                    int(breaker.get("failure_threshold", 5)), float(breaker.get("reset_timeout", 10.0))
                ),
                inputs=[
                    self._input(COMMITTED_INCIDENTS, offset_key(f"dispatch/{sink.name}"), False),
                    self._input(replay_stream(sink.name), offset_key(f"dispatch/{sink.name}/replay"), True),
                ],
            )
        self.log.info(
            "dispatcher_started",
            sinks={n: lane.sink.kind for n, lane in self.lanes.items()},
            offsets={n: lane.inputs[0].offset for n, lane in self.lanes.items()},
        )
        self.schedule("poll", self.poll)

    def _input(self, stream: str, key: str, is_replay: bool) -> _Input:
        return _Input(stream, key, int(self.event_log.get_value(key, 0)), is_replay)

    # -- timers -------------------------------------------------------------------------------------

    def on_timer(self, name: str) -> None:
        if name == "poll":
            for lane in self.lanes.values():
                if not lane.waiting:
                    self._pump(lane)
            self.schedule("poll", self.poll)
        elif name.startswith("retry/"):
            lane = self.lanes.get(name.removeprefix("retry/"))
            if lane is not None:
                lane.waiting = False
                self._pump(lane)

    def on_stop(self) -> None:
        for lane in self.lanes.values():
            lane.sink.close()

    # -- one lane -----------------------------------------------------------------------------------

    def _pump(self, lane: _Lane) -> None:
        for source in lane.inputs:
            if not self._pump_input(lane, source):
                return  # the head item waits (retry or open breaker): keep the lane's order

    def _pump_input(self, lane: _Lane, source: _Input) -> bool:
        """Deliver up to ``batch`` items of ``source``; commit the offset reached. False when the head
        item has to wait."""
        done_through = source.offset
        drained = True
        try:
            for _ in range(self.batch_size):
                head = self._head(source)
                if head is None:
                    break
                seq, item = head
                outcome, reason = self._attempt(lane, item)
                if outcome == "wait":
                    drained = False
                    break
                if outcome == "dead":
                    self._commit(source, seq, dead_letter=(lane, item, reason))
                source.buffered.popleft()
                lane.attempts = 0
                done_through = seq
        finally:
            if done_through > source.offset:
                self._commit(source, done_through)
        return drained

    def _head(self, source: _Input) -> tuple[int, Delivery] | None:
        if not source.buffered:
            for rec in self.event_log.read(source.stream, after=source.read_through, limit=self.batch_size):
                source.read_through = rec.seq
                p = rec.payload
                source.buffered.append(
                    (rec.seq, Delivery(int(p["index"]), p["incident"], rec.seq if source.is_replay else None))
                )
        return source.buffered[0] if source.buffered else None

    def _attempt(self, lane: _Lane, item: Delivery) -> tuple[str, str]:
        """One delivery attempt: ("ok", ""), ("wait", "") to retry later, or ("dead", reason)."""
        sink = lane.sink
        if sink.already_delivered(item):  # written before a crash that lost the offset commit
            self.log.info("incident_already_delivered", sink=sink.name, index=item.index, replay=item.replay)
            return "ok", ""
        allowed, change = lane.breaker.allow(time.monotonic())
        self._log_transition(sink.name, change)
        if not allowed:
            return "wait", ""
        try:
            sink.deliver(item)
        except DeliveryFailed as exc:
            return self._failed(lane, item, exc)
        self._log_transition(sink.name, lane.breaker.record_success(time.monotonic()))
        self.log.info(
            "incident_dispatched",
            incident_id=item.incident_id,
            sink=sink.name,
            index=item.index,
            attempts=lane.attempts + 1,
            replay=item.replay,
        )
        return "ok", ""

    def _failed(self, lane: _Lane, item: Delivery, exc: DeliveryFailed) -> tuple[str, str]:
        now = time.monotonic()
        lane.attempts += 1
        if exc.retryable:
            self._log_transition(lane.sink.name, lane.breaker.record_failure(now))
        else:  # the endpoint answered: it is alive, only this item is unwanted
            self._log_transition(lane.sink.name, lane.breaker.record_success(now))
        if not exc.retryable or self.retry.gives_up_after(lane.attempts):
            return "dead", exc.reason
        delay = self.retry.delay(lane.attempts, self.rng)
        self.log.warning(
            "dispatch_failed",
            incident_id=item.incident_id,
            sink=lane.sink.name,
            index=item.index,
            attempt=lane.attempts,
            max_attempts=self.retry.max_attempts,
            reason=exc.reason,
            retry_in_s=round(delay, 4),
        )
        lane.waiting = True
        self.schedule(f"retry/{lane.sink.name}", delay)
        return "wait", ""

    def _commit(
        self, source: _Input, seq: int, dead_letter: tuple[_Lane, Delivery, str] | None = None
    ) -> None:
        """Move ``source``'s offset to ``seq`` (with the dead letter of the item at ``seq``, if any)."""
        with self.event_log.batch() as batch:
            if dead_letter is not None:
                lane, item, reason = dead_letter
                batch.append(
                    dead_letter_stream(sink_component(lane.sink.name)),
                    {
                        "reason": reason,
                        "ts": time.time(),
                        "sink": lane.sink.name,
                        "attempts": lane.attempts,
                        "index": item.index,
                        "incident_id": item.incident_id,
                        "replay": item.replay,
                        "payload": {"index": item.index, "incident": item.incident},
                    },
                )
            batch.put_value(source.offset_key, seq)
        source.offset = seq
        if dead_letter is not None:
            lane, item, reason = dead_letter
            self.log.error(
                "dispatch_dead_lettered",
                incident_id=item.incident_id,
                sink=lane.sink.name,
                index=item.index,
                attempts=lane.attempts,
                reason=reason,
            )

    def _log_transition(self, sink: str, change: Transition | None) -> None:
        if change is None:
            return
        event = {"open": "circuit_opened", "half_open": "circuit_half_open", "closed": "circuit_closed"}
        self.log.warning(
            event[change.after.value],
            sink=sink,
            previous=change.before.value,
            consecutive_failures=change.failures,
        )
