"""``MqttBridgeActor``: sensor readings from an MQTT broker into the node's ``readings`` stream.

Delivery contract: QoS 1 on a persistent session (``clean_session=False``, a stable client id) with
**manual acks**. paho's network thread only queues what arrives; the actor drains the queue on a short
timer, validates, appends the valid readings (``"source": "mqtt"``) and the rejected ones (to
``deadletters/mqtt-bridge``) in ONE durable transaction, and only then sends the PUBACKs. A crash before
the commit leaves the messages unacknowledged, so the broker redelivers them to the next instance: a
reading is never lost, and may be appended twice if the crash falls between the commit and the acks
(at-least-once; downstream windows tolerate a duplicate reading).

A malformed payload never stops the bridge: it is counted, logged as ``reading_rejected`` with the
reason, kept as a dead letter (raw text, topic, reason) and acknowledged, because it is durably kept.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import socket
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import paho.mqtt.client as mqtt
from pydantic import Field, model_validator

from actors.args import ActorArgs
from actors.base import SupervisedActor
from actors.streams import READINGS, dead_letter_stream
from models.readings import ReadingColumns

__all__ = ["DEAD_LETTERS", "MAX_PAYLOAD", "MalformedReading", "MqttBridgeActor", "parse_reading"]

DEAD_LETTERS = dead_letter_stream("mqtt-bridge")
_MAX_RAW = 4096  # bytes of a rejected payload kept in its dead letter
# A reading is ~200 bytes of JSON; anything much larger is not one, and parsing it would cost memory and
# time (a 256 MB payload is a MemoryError away), so it is rejected on its size alone.
MAX_PAYLOAD = 64 * 1024
_MAX_TEXT = 256  # characters of a sensor, pollutant, unit or location name


class MalformedReading(ValueError):
    """A payload that is not a valid reading; ``reason`` says which field is wrong and why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class _Arrived:
    topic: str
    payload: bytes
    mid: int
    qos: int


@dataclass(frozen=True, slots=True)
class _Status:
    event: str
    fields: dict[str, Any]


def _finite_number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedReading(f"{field} must be a number, got {type(value).__name__}")
    try:
        number = float(value)  # an int of 400 digits does not fit a float: OverflowError
    except OverflowError:
        # only an int can overflow a float
        raise MalformedReading(
            f"{field} must be finite, got an integer of {_digits(int(value))} digits"
        ) from None
    if not math.isfinite(number):
        raise MalformedReading(f"{field} must be finite, got {value!r}")
    return number


def _digits(value: int) -> str:
    # str() of a huge int is itself refused above 4300 digits (ValueError): estimate from the bit length
    return f"~{int(value.bit_length() * 0.30103) + 1}"


def _text(doc: dict[str, Any], *names: str, required: bool = True) -> str | None:
    for name in names:
        if name in doc:
            value = doc[name]
            if not isinstance(value, str) or not value.strip():
                raise MalformedReading(f"{name} must be a non-empty string, got {_short(value)}")
            if len(value) > _MAX_TEXT:
                raise MalformedReading(f"{name} is longer than {_MAX_TEXT} characters")
            try:
                value.encode("utf-8")  # JSON may carry a lone surrogate ("\ud800"): the log cannot store it
            except UnicodeEncodeError:
                raise MalformedReading(f"{name} is not valid UTF-8 text (lone surrogate)") from None
            return value
    if required:
        raise MalformedReading(f"missing field {names[0]!r}")
    return None


def _timestamp(doc: dict[str, Any]) -> float:
    for name in ("ts", "timestamp"):
        if name in doc:
            value = doc[name]
            if isinstance(value, str):
                try:
                    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
                except ValueError:
                    raise MalformedReading(
                        f"{name} {_short(value)} is not ISO 8601 nor epoch seconds"
                    ) from None
                except (OverflowError, OSError):  # a naive year-1 time before the epoch in local time
                    raise MalformedReading(f"{name} {_short(value)} is out of the epoch's range") from None
            return _finite_number(value, name)
    raise MalformedReading("missing field 'timestamp' (or 'ts')")


def _location(doc: dict[str, Any]) -> list[float] | str | None:
    value = doc.get("location")
    if value is None:
        return None
    if isinstance(value, str):
        return _text(doc, "location")
    if isinstance(value, list) and 2 <= len(value) <= 3:
        return [_finite_number(v, "location[]") for v in value]
    raise MalformedReading(f"location must be [lat, lon(, alt)] or a name, got {_short(value)}")


def _short(value: Any) -> str:
    """A bounded repr for a reason: a rejected field may be megabytes, or an int repr() refuses."""
    try:
        text = repr(value)
    except Exception:  # e.g. ValueError: int too large to convert to str
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def parse_reading(topic: str, payload: bytes, max_payload: int = MAX_PAYLOAD) -> dict[str, Any]:
    """The ``readings`` record for one MQTT message, or :class:`MalformedReading`, and nothing else.

    The payload is a JSON object: ``sensor`` (or ``sensor_id``; default: the topic's second level, as in
    ``sensor/<id>/raw``), ``pollutant``, ``value`` (finite number), ``unit``, ``timestamp`` (or ``ts``:
    epoch seconds or ISO 8601) and optional ``location``.

    Total on purpose: the bridge acks only after it stored a message, so any exception that escaped here
    would crash it before the ack and the broker would redeliver the same payload to every new instance
    (a permanent outage from one message). The size is bounded before parsing (no MemoryError, no slow
    parse of a huge document), and whatever else the parser or the checks raise (RecursionError on deep
    nesting, OverflowError, UnicodeDecodeError, ...) becomes a rejection with the exception as reason."""
    if not isinstance(payload, bytes | bytearray):
        raise MalformedReading(f"payload must be bytes, got {type(payload).__name__}")
    if len(payload) > max_payload:
        raise MalformedReading(f"payload of {len(payload)} bytes is larger than {max_payload} bytes")
    try:
        return _parse(topic, payload)
    except MalformedReading:
        raise
    except Exception as exc:  # total by design: see the docstring
        raise MalformedReading(f"unparseable payload: {type(exc).__name__}: {str(exc)[:200]}") from None


def _parse(topic: str, payload: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedReading(f"not JSON: {str(exc)[:200]}") from None
    except RecursionError:
        raise MalformedReading("not JSON that can be read: nested too deeply") from None
    if not isinstance(doc, dict):
        raise MalformedReading(f"not a JSON object but {type(doc).__name__}")
    sensor = _text(doc, "sensor", "sensor_id", required=False)
    if sensor is None:
        levels = topic.split("/") if isinstance(topic, str) else []
        if len(levels) < 2 or not levels[1]:
            raise MalformedReading("missing field 'sensor' (and the topic names none)")
        sensor = levels[1]
        if len(sensor) > _MAX_TEXT:
            raise MalformedReading(f"the topic's sensor level is longer than {_MAX_TEXT} characters")
    if "value" not in doc:
        raise MalformedReading("missing field 'value'")
    return {
        "sensor": sensor,
        "pollutant": _text(doc, "pollutant"),
        "ts": _timestamp(doc),
        "value": _finite_number(doc["value"], "value"),
        "unit": _text(doc, "unit"),
        "location": _location(doc),
        "source": "mqtt",
    }


def _columns(reading: dict[str, Any]) -> ReadingColumns:
    """``reading`` as block columns; a reading the block format cannot hold is rejected like any other
    malformed message (never a crash before the ack: see ``parse_reading``)."""
    try:
        return ReadingColumns.from_dicts([reading])
    except ValueError as exc:
        raise MalformedReading(f"not storable as a reading: {exc}") from None


def _set_nodelay(client: Any, userdata: Any, sock: Any) -> None:
    # Nagle + delayed ACK cost ~88 ms per QoS 1 round trip (anchors/perf.md): send PUBACKs at once
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class TlsArgs(ActorArgs):
    """Files for TLS to the broker (PEM); ``ca_certs`` alone verifies the broker only."""

    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None


class MqttBridgeArgs(ActorArgs):
    """``MqttBridgeActor``'s args."""

    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(1883, ge=1, le=65535)
    topic: str = Field("sensor/+/raw", min_length=1)  # subscription filter; readings are JSON (README)
    client_id: str | None = Field(None, min_length=1)  # default: stable per node and actor path
    username: str | None = None
    password: str | None = None
    tls: TlsArgs | None = None
    qos: Literal[0, 1, 2] = 1  # 1 (or 2) for the at-least-once contract above; 0 may lose readings
    keepalive: int = Field(30, ge=1, le=65535)  # s
    reconnect_min: int = Field(1, ge=1, le=3600)  # s, first reconnect delay (doubles up to max)
    reconnect_max: int = Field(30, ge=1, le=3600)  # s
    drain_interval: float = Field(0.01, gt=0, le=60)  # s
    batch: int = Field(1000, ge=1, le=100_000)  # max messages per durable transaction
    max_payload: int = Field(MAX_PAYLOAD, ge=1, le=16 * 1024 * 1024)  # bytes; larger is rejected unparsed

    @model_validator(mode="after")
    def _delays_ordered(self) -> MqttBridgeArgs:
        if self.reconnect_min > self.reconnect_max:
            raise ValueError(
                f"reconnect_min ({self.reconnect_min}) must not exceed reconnect_max ({self.reconnect_max})"
            )
        return self


class MqttBridgeActor(SupervisedActor):
    """Args: :class:`MqttBridgeArgs`."""

    Args = MqttBridgeArgs
    args: MqttBridgeArgs

    def on_start(self, args: dict[str, Any]) -> None:
        assert self.config is not None
        a = self.args
        self.topic = a.topic
        self.qos = a.qos
        self.drain_interval = a.drain_interval
        self.batch_size = a.batch
        self.max_payload = a.max_payload
        self.counter_key = f"mqtt-bridge/{self.path}/counts"
        counts = self.event_log.get_value(self.counter_key) or {}
        self.accepted = int(counts.get("accepted", 0))
        self.rejected = int(counts.get("rejected", 0))
        self.inbox: queue.SimpleQueue[_Arrived | _Status] = queue.SimpleQueue()
        # a self-pipe: paho's network thread writes a byte after queueing, which wakes this actor through
        # Thespian's own select loop (rings coalesce: a full pipe already means "something to drain")
        self._bell_r, self._bell_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        client_id = a.client_id or f"garrison-{self.config.node}-{self.path.replace('/', '-')}"
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if a.username is not None:
            client.username_pw_set(a.username, a.password)
        if a.tls is not None:
            client.tls_set(ca_certs=a.tls.ca_certs, certfile=a.tls.certfile, keyfile=a.tls.keyfile)
        client.on_socket_open = _set_nodelay
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.reconnect_delay_set(min_delay=a.reconnect_min, max_delay=a.reconnect_max)
        self.client = client
        host, port = a.host, a.port
        # connect_async: the network thread connects (and reconnects with backoff); a broker that is down
        # at start is not a crash of the bridge
        client.connect_async(host, port, a.keepalive)
        client.loop_start()
        self.log.info(
            "mqtt_bridge_started", host=host, port=port, topic=self.topic, client_id=client_id, qos=self.qos
        )
        self.watch_fd(self._bell_r, "arrivals")  # paho's thread rings this pipe: no drain timer

    # -- paho's network thread: only hand over, never touch the event log or the logger -------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self._hand_over(_Status("mqtt_connect_failed", {"reason": str(reason)}))
            return
        client.subscribe(self.topic, qos=self.qos)
        self._hand_over(_Status("mqtt_connected", {"session_present": bool(flags.session_present)}))

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._hand_over(_Status("mqtt_disconnected", {"reason": str(reason)}))

    def _on_subscribe(self, client: Any, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        self._hand_over(
            _Status("mqtt_subscribed", {"topic": self.topic, "granted": [str(r) for r in reasons]})
        )

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            # paho decodes the topic on access; an exception here would stop its network thread for good,
            # so the message still goes through (and is rejected) instead
            topic = "<topic is not UTF-8>"
        self._hand_over(_Arrived(topic, bytes(msg.payload), msg.mid, msg.qos))

    def _hand_over(self, item: _Arrived | _Status) -> None:
        self.inbox.put(item)
        with contextlib.suppress(BlockingIOError):  # a full pipe of rings: a drain is already due
            os.write(self._bell_w, b"\1")

    # -- the actor's thread -------------------------------------------------------------------------

    def on_ready(self, name: str) -> None:
        # empty the pipe first: a ring written after this point is for items queued after it, which the
        # next wake-up picks up even if this drain already took them
        with contextlib.suppress(BlockingIOError):
            while os.read(self._bell_r, 4096):
                pass
        while True:
            arrived: list[_Arrived] = []
            while len(arrived) < self.batch_size:
                try:
                    item = self.inbox.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, _Status):
                    self.log.info(item.event, **item.fields)
                else:
                    arrived.append(item)
            if arrived:
                self._store(arrived)
            if len(arrived) < self.batch_size:
                return

    def _store(self, arrived: list[_Arrived]) -> None:
        now = time.time()
        rejections: list[tuple[_Arrived, str]] = []
        readings: list[ReadingColumns] = []
        with self.event_log.batch() as batch:
            for msg in arrived:
                try:
                    reading = parse_reading(msg.topic, msg.payload, self.max_payload)
                    reading["ingested_at"] = now
                    readings.append(_columns(reading))
                except MalformedReading as exc:
                    # the reason may quote the payload: keep it short and storable (no lone surrogates)
                    reason = exc.reason[:500].encode("utf-8", errors="replace").decode("utf-8")
                    rejections.append((msg, reason))
                    batch.append(
                        DEAD_LETTERS,
                        {
                            "reason": reason,
                            "ts": now,
                            "topic": msg.topic,
                            "raw": msg.payload[:_MAX_RAW].decode("utf-8", errors="replace"),
                            "truncated": len(msg.payload) > _MAX_RAW,
                        },
                    )
            if readings:  # the drain's readings as ONE block record (models/readings.py)
                batch.append(READINGS, ReadingColumns.concat(readings).to_record())
            accepted = self.accepted + len(arrived) - len(rejections)
            rejected = self.rejected + len(rejections)
            batch.put_value(self.counter_key, {"accepted": accepted, "rejected": rejected})
        self.accepted, self.rejected = accepted, rejected
        # durable now: only from here on may the broker forget these messages
        for msg in arrived:
            if msg.qos > 0:
                self.client.ack(msg.mid, msg.qos)
        before = self.rejected - len(rejections)
        for n, (msg, reason) in enumerate(rejections, 1):
            self.log.warning("reading_rejected", topic=msg.topic, reason=reason, rejected_total=before + n)

    def on_stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.log.info("mqtt_bridge_stopped", accepted=self.accepted, rejected=self.rejected)
