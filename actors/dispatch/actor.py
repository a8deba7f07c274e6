"""``DispatcherActor``: delivers committed incidents to every configured sink, at least once each, and
exactly once into a file sink, across crashes.

Each sink is an independent lane with its own offsets in the event log: ``offset/dispatch/<sink>`` over
``incidents/committed`` and ``offset/dispatch/<sink>/replay`` over ``dispatch/replay/<sink>`` (dead letters
an operator replayed). A slow or dead sink therefore never holds back the others. Order of side effects
per item: deliver (file: write + fsync), then commit the lane's offset; a crash in between repeats the
delivery (webhook/MQTT receivers dedupe on the incident id) and the file sink skips it (see ``sinks``).
A lane commits its offset before it moves from one input stream to the other, so the lines a crash can
leave uncommitted always come from one stream, which is what the file sink's recovery relies on.

Cluster mode (``cluster: true``, on each gateway of a cluster): every gateway publishes the same
``incidents/committed`` (same records, same sequence numbers), but only the dispatcher next to the Raft
leader delivers; the others hold. The leader records its progress in the replicated log: after each batch
it proposes a ``dispatch_mark`` entry (each sink's offset, see ``marks``), which every replica applies into
``raft/<node>/dispatch_marks``, and it delivers the next batch only once that mark is applied. A dispatcher
that becomes the leader's starts each sink after that sink's own mark, so a sink sees again at most the old
leader's last batch in flight (always with its idempotency key), even while another sink is stuck behind
failures; a deposed leader that cannot commit its mark delivers nothing more, even before it learns it was
deposed.

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
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from actors.args import ActorArgs
from actors.base import SupervisedActor
from actors.dispatch.marks import AppliedMarks, resume_after, stored_marks
from actors.dispatch.policy import CircuitBreaker, RetryPolicy, Transition
from actors.dispatch.sinks import Delivery, DeliveryFailed, Sink, build_sink
from actors.streams import (
    COMMITTED_INCIDENTS,
    DISPATCH_MARK,
    PROPOSED_INCIDENTS,
    dead_letter_stream,
    offset_key,
)

__all__ = ["DispatcherActor", "replay_stream", "sink_component"]

LEADER_CHECK_S = 0.25  # cluster mode: how often the dispatcher looks at its replica's role
MARK_WAIT_S = 0.005  # cluster mode: how often a dispatcher whose last mark is in flight looks for its apply


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


_SINK_NAME = r"^[A-Za-z0-9_.-]+$"  # it names offsets and dead-letter streams


class FileSinkArgs(ActorArgs):
    kind: Literal["file"] = "file"
    name: str | None = Field(None, min_length=1, max_length=100, pattern=_SINK_NAME)  # default: the kind
    path: str = Field("incidents.jsonl", min_length=1)  # JSON lines; relative to the node's data_dir


class WebhookSinkArgs(ActorArgs):
    kind: Literal["webhook"]
    name: str | None = Field(None, min_length=1, max_length=100, pattern=_SINK_NAME)
    url: str  # http:// or https://; POSTed one incident per request, keyed by incident id
    timeout: float = Field(2.0, gt=0, le=300)  # s per request
    headers: dict[str, str] | None = None

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https:// (got {url[:60]!r})")
        return url


class SinkTlsArgs(ActorArgs):
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None


class MqttSinkArgs(ActorArgs):
    kind: Literal["mqtt"]
    name: str | None = Field(None, min_length=1, max_length=100, pattern=_SINK_NAME)
    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(1883, ge=1, le=65535)
    client_id: str | None = Field(None, min_length=1)  # default: stable per node, actor path and sink
    username: str | None = None
    password: str | None = None
    tls: SinkTlsArgs | None = None
    topic_prefix: str = Field("incident", min_length=1)  # incidents go to <topic_prefix>/<type>
    timeout: float = Field(5.0, gt=0, le=300)  # s to wait for the PUBACK


def _sink_kind(value: Any) -> str:
    kind = value.get("kind", "file") if isinstance(value, dict) else getattr(value, "kind", "file")
    return str(kind)


SinkArgs = Annotated[
    Annotated[FileSinkArgs, Tag("file")]
    | Annotated[WebhookSinkArgs, Tag("webhook")]
    | Annotated[MqttSinkArgs, Tag("mqtt")],
    Discriminator(_sink_kind),
]


class DispatchBackoffArgs(ActorArgs):
    """Retry delay ``min(cap, base * factor**(n-1))``, scaled down by up to ``jitter``."""

    base: float = Field(0.5, ge=0, le=3600)
    cap: float = Field(30.0, ge=0, le=86_400)
    factor: float = Field(2.0, ge=1, le=100)
    jitter: float = Field(0.5, ge=0, le=1)

    @model_validator(mode="after")
    def _base_below_cap(self) -> DispatchBackoffArgs:
        if self.cap < self.base:
            raise ValueError(f"backoff.cap ({self.cap}) must not be below backoff.base ({self.base})")
        return self


class BreakerArgs(ActorArgs):
    failure_threshold: int = Field(5, ge=1, le=10_000)  # consecutive failures that open the circuit
    reset_timeout: float = Field(10.0, ge=0, le=86_400)  # s open before one trial delivery


class DispatcherArgs(ActorArgs):
    """``DispatcherActor``'s args."""

    sinks: list[SinkArgs] = Field(default_factory=list, max_length=50)  # []: one file sink, incidents.jsonl
    poll_interval: float = Field(0.05, gt=0, le=3600)  # s
    max_attempts: int = Field(5, ge=1, le=1000)  # then the incident becomes a dead letter
    backoff: DispatchBackoffArgs = DispatchBackoffArgs()
    breaker: BreakerArgs = BreakerArgs()
    batch: int = Field(100, ge=1, le=4000)  # items per lane per poll (below the file sink's TAIL_LINES)
    seed: int | None = None  # of the retry jitter; None: fresh entropy
    cluster: bool = False  # deliver only while this node's Raft replica leads; replicate the progress

    @model_validator(mode="after")
    def _distinct_names(self) -> DispatcherArgs:
        names = [s.name or s.kind for s in self.sinks]
        if len(set(names)) != len(names):
            raise ValueError(f"sinks {names}: give sinks of the same kind distinct 'name's")
        return self

    def sink_specs(self) -> list[dict[str, Any]]:
        """The sinks as ``build_sink`` takes them (unset optional keys left out)."""
        if not self.sinks:
            return [{"kind": "file", "path": "incidents.jsonl"}]
        return [s.model_dump(exclude_none=True) for s in self.sinks]


class DispatcherActor(SupervisedActor):
    """Args: :class:`DispatcherArgs`."""

    Args = DispatcherArgs
    args: DispatcherArgs

    def on_start(self, args: dict[str, Any]) -> None:
        a = self.args
        self.poll = a.poll_interval
        self.batch_size = a.batch
        self.retry = RetryPolicy(
            max_attempts=a.max_attempts,
            base=a.backoff.base,
            cap=a.backoff.cap,
            factor=a.backoff.factor,
            jitter=a.backoff.jitter,
        )
        self.rng = random.Random(a.seed)
        specs = a.sink_specs()
        assert self.config is not None
        data_dir = Path(self.config.data_dir)
        client_id = f"garrison-{self.config.node}-{self.path.replace('/', '-')}"
        self.lanes: dict[str, _Lane] = {}
        for spec in specs:
            sink = build_sink(spec, data_dir, client_id)
            self.lanes[sink.name] = _Lane(
                sink=sink,
                breaker=CircuitBreaker(a.breaker.failure_threshold, a.breaker.reset_timeout),
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
        self.cluster = a.cluster
        self.leading = not a.cluster
        self.raft_prefix = f"raft/{self.config.node}/"  # the cluster-mode replica's id is the node name
        # sink -> its offset in the last mark this dispatcher proposed
        self.mark_proposed: dict[str, int] = {}
        self.mark_wait_armed = False
        if self.cluster:
            self.schedule("leader_check", LEADER_CHECK_S)
        self.subscribe(COMMITTED_INCIDENTS, *(replay_stream(name) for name in self.lanes))

    def _input(self, stream: str, key: str, is_replay: bool) -> _Input:
        return _Input(stream, key, int(self.event_log.get_value(key, 0)), is_replay)

    # -- timers -------------------------------------------------------------------------------------

    def on_appended(self, stream: str) -> None:
        if self.cluster and not self._check_leading():
            return
        if self.cluster and self._awaiting_mark():
            return
        for lane in self.lanes.values():
            self._pump_some(lane)
        if self.cluster:
            self._propose_mark()

    # -- cluster mode: only the leader's dispatcher delivers ---------------------------------------

    def _check_leading(self) -> bool:
        role = self.event_log.get_value(self.raft_prefix + "role") or {}
        leading = role.get("role") == "leader"
        if leading and not self.leading:
            marks = self._applied_marks()
            for name, lane in self.lanes.items():
                source = lane.inputs[0]  # incidents/committed (replays are this node's own business)
                source.buffered.clear()
                mark = resume_after(marks, name)
                if mark > source.offset:
                    self._commit(source, mark)
                source.read_through = source.offset
                self.mark_proposed[name] = mark
            self.log.info(
                "dispatch_leading",
                term=role.get("term"),
                resume_after={name: lane.inputs[0].offset for name, lane in self.lanes.items()},
            )
        elif not leading and self.leading:
            for lane in self.lanes.values():
                lane.inputs[0].buffered.clear()
                lane.inputs[0].read_through = lane.inputs[0].offset
            self.log.info("dispatch_holding", leader=role.get("leader"), term=role.get("term"))
        self.leading = leading
        return leading

    def _awaiting_mark(self) -> bool:
        """Whether the mark of the last batch is not applied yet: the next batch waits for it (looking every
        MARK_WAIT_S; the apply of a mark rings nobody). That bounds what a new leader delivers again to
        the batch in flight, and fences a leader cut off from the majority: its mark cannot commit."""
        marks = self._applied_marks()
        if all(offset <= resume_after(marks, name) for name, offset in self.mark_proposed.items()):
            return False
        if not self.mark_wait_armed:
            self.mark_wait_armed = True
            self.schedule("mark_wait", MARK_WAIT_S)
        return True

    def _applied_marks(self) -> AppliedMarks | None:
        return stored_marks(
            self.event_log.get_value(self.raft_prefix + "dispatch_marks"),
            self.event_log.get_value(self.raft_prefix + "dispatched"),
        )

    def _propose_mark(self) -> None:
        """Mark each sink's progress once any sink moved: per sink, so a stuck sink holds back only itself."""
        offsets = {name: lane.inputs[0].offset for name, lane in self.lanes.items()}
        if all(offset <= self.mark_proposed.get(name, 0) for name, offset in offsets.items()):
            return
        assert self.config is not None
        node = self.config.node
        through = min(offsets.values())
        mark = {
            # unique per mark (a replica applies an incident_id once): the offsets only grow
            "incident_id": f"dispatched-{node}-{through}-{sum(offsets.values())}",
            "timestamp": time.time(),
            "type": DISPATCH_MARK,
            "source_node": node,
            "sensor": "-",
            "confidence": 1.0,
            "payload": {"through": through, "sinks": offsets},
        }
        self.event_log.append(PROPOSED_INCIDENTS, [mark])  # the replica signs and proposes it
        self.mark_proposed = offsets
        self._awaiting_mark()  # look for its apply from now on

    def _pump_some(self, lane: _Lane) -> None:
        """Deliver one batch per input; when that made progress, come back for more after Thespian's
        turn (nothing else wakes the lane for records that are already there)."""
        if lane.waiting:
            return
        before = [source.offset for source in lane.inputs]
        self._pump(lane)
        if not lane.waiting and [source.offset for source in lane.inputs] != before:
            self.wake_again()

    def on_timer(self, name: str) -> None:
        if name == "mark_wait":
            self.mark_wait_armed = False
            self.on_appended(COMMITTED_INCIDENTS)
            return
        if name == "leader_check":
            self.on_appended(COMMITTED_INCIDENTS)
            self.schedule("leader_check", LEADER_CHECK_S)
            return
        if name.startswith("retry/"):
            lane = self.lanes.get(name.removeprefix("retry/"))
            if lane is not None:
                lane.waiting = False
                if self.cluster and not self.leading:
                    return  # no longer the leader's: the new leader's dispatcher retries it
                self._pump_some(lane)

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
                self.mark_input(source.stream, seq)
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
            limit = self.input_limit(source.stream, self.batch_size)
            records = self.event_log.read(source.stream, after=source.read_through, limit=limit)
            if records:
                source.read_through = records[-1].seq
            for rec in self.admit(records):
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
            # nothing polls any more: come back when the breaker lets a trial through
            reopens = lane.breaker.reopens_at()
            if reopens is not None and not lane.waiting:
                lane.waiting = True
                self.schedule(f"retry/{sink.name}", max(0.0, reopens - time.monotonic()))
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
