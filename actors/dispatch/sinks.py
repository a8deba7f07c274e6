"""Where committed incidents go: a JSON-lines file, a webhook, an MQTT topic.

Every sink has one method that matters, :meth:`Sink.deliver`, which either returns once the incident is
durably handed over (file fsynced, HTTP 2xx, MQTT PUBACK) or raises :class:`DeliveryFailed` saying whether
trying again can help. Sinks run in the dispatcher's process and block it while they work; every network
call has an explicit timeout so that a dead endpoint costs bounded time.

Exactly-once into the file (across crashes): the dispatcher writes a line, fsyncs, and only then commits
its offset. A crash between the two leaves lines the offset does not cover; they are always the file's
last lines and all come from one input (the committed stream or the replay stream), so on open the sink
reads its last line and skips what that line says was already written. A torn last line (crash during
the write, never fsynced as a whole) is cut off and written again.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

__all__ = [
    "Delivery",
    "DeliveryFailed",
    "FileSink",
    "MqttSink",
    "Sink",
    "SinkConfigError",
    "WebhookSink",
    "build_sink",
    "sink_name",
]


class SinkConfigError(ValueError):
    """A sink entry of the dispatcher's ``args.sinks`` is invalid (the message names the entry)."""


class DeliveryFailed(Exception):
    """One delivery attempt failed. ``retryable`` False means retrying cannot help (HTTP 4xx, an
    incident the sink cannot encode): the item goes to the dead letters at once."""

    def __init__(self, reason: str, *, retryable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class Delivery:
    """One item to deliver: a committed incident with its index; ``replay`` is the sequence number in the
    sink's replay stream when the item is a replayed dead letter (None for first deliveries)."""

    index: int
    incident: dict[str, Any]
    replay: int | None = None

    @property
    def incident_id(self) -> str:
        return str(self.incident.get("incident_id", ""))

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "incident": self.incident}
        if self.replay is not None:
            out["replay"] = self.replay
        return out


class Sink(Protocol):
    name: str
    kind: str

    def already_delivered(self, item: Delivery) -> bool:
        """True when ``item`` is known to be delivered already (only the file sink can know)."""
        ...

    def deliver(self, item: Delivery) -> None:
        """Hand ``item`` over durably or raise :class:`DeliveryFailed`."""
        ...

    def close(self) -> None: ...


class FileSink:
    """Appends one JSON line per incident: ``{"index", "incident"[, "replay"]}``, flushed and fsynced."""

    kind = "file"

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        self._file = open(self.path, "ab")  # noqa: SIM115 - kept open for the sink's lifetime
        if created:
            _fsync_dir(self.path.parent)  # the file's directory entry must survive a power cut too
        self.resume_index, self.resume_replay = self._recover_tail()

    def _recover_tail(self) -> tuple[int, int]:
        """Cut a torn last line; return what the last complete line says was written last."""
        size = self._file.seek(0, os.SEEK_END)
        if size == 0:
            return 0, 0
        with open(self.path, "rb") as reader:
            tail, start = _read_tail(reader, size)
        complete_end = tail.rfind(b"\n") + 1
        if complete_end < len(tail):  # torn line: it was never fsynced as a whole, so never counted
            os.truncate(self.path, start + complete_end)
            os.fsync(self._file.fileno())
            tail = tail[:complete_end]
        last = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]
        if not last:
            return 0, 0
        try:
            record = json.loads(last)
            index = int(record["index"])
        except (ValueError, KeyError, TypeError) as exc:
            raise SinkConfigError(
                f"{self.path}: the last line is not a garrison incident line ({exc}); "
                "point the file sink at a file only garrison writes"
            ) from exc
        replay = record.get("replay")
        if replay is not None:
            return 0, int(replay)
        return index, 0

    def already_delivered(self, item: Delivery) -> bool:
        if item.replay is not None:
            return item.replay <= self.resume_replay
        return item.index <= self.resume_index

    def deliver(self, item: Delivery) -> None:
        line = json.dumps(item.body(), separators=(",", ":"), sort_keys=True, allow_nan=False) + "\n"
        try:
            self._file.write(line.encode())
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as exc:
            raise DeliveryFailed(f"cannot append to {self.path}: {exc}") from exc
        # only for the skip-after-crash check: both lanes move forward, so remember the newest of each
        if item.replay is None:
            self.resume_index = max(self.resume_index, item.index)
        else:
            self.resume_replay = max(self.resume_replay, item.replay)

    def close(self) -> None:
        self._file.close()


def _read_tail(reader: Any, size: int, chunk: int = 65536) -> tuple[bytes, int]:
    """The end of the file and its offset: enough to hold the last complete line and any torn bytes
    after it (two line breaks in view), or the whole file when it is shorter."""
    start, tail = size, b""
    while start > 0 and tail.count(b"\n") < 2:
        start = max(0, start - chunk)
        reader.seek(start)
        tail = reader.read(size - start)
    return tail, start


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WebhookSink:
    """HTTP POST of ``{"index", "incident"}`` as JSON with ``Idempotency-Key: <incident_id>``, so a
    receiver can drop the duplicates that at-least-once delivery produces. 2xx = delivered; 408, 429,
    5xx, timeouts and connection errors are retryable; other statuses are not."""

    kind = "webhook"

    def __init__(self, name: str, url: str, timeout: float = 2.0, headers: dict[str, str] | None = None):
        if not url.startswith(("http://", "https://")):
            raise SinkConfigError(f"sink {name!r}: url must start with http:// or https://, got {url!r}")
        self.name = name
        self.url = url
        # connect, read, write and pool each bounded: a stalled endpoint cannot hang the dispatcher
        self._client = httpx.Client(timeout=httpx.Timeout(timeout), headers=headers or {})

    def already_delivered(self, item: Delivery) -> bool:
        return False

    def deliver(self, item: Delivery) -> None:
        try:
            response = self._client.post(
                self.url, json=item.body(), headers={"Idempotency-Key": item.incident_id}
            )
        except httpx.TimeoutException as exc:
            raise DeliveryFailed(f"POST {self.url}: timed out ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"POST {self.url}: {type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if 200 <= status < 300:
            return
        retryable = status in (408, 429) or status >= 500
        raise DeliveryFailed(f"POST {self.url}: HTTP {status}", retryable=retryable)

    def close(self) -> None:
        self._client.close()


class MqttSink:
    """Publishes ``{"index", "incident"}`` with QoS 1 to ``<prefix>/<incident type>`` and waits for the
    PUBACK (bounded by ``timeout``). paho's network loop runs in its own thread and reconnects by itself."""

    kind = "mqtt"

    def __init__(
        self,
        name: str,
        host: str,
        port: int = 1883,
        *,
        client_id: str = "",
        username: str | None = None,
        password: str | None = None,
        tls: dict[str, Any] | None = None,
        topic_prefix: str = "incident",
        timeout: float = 5.0,
        keepalive: int = 30,
    ) -> None:
        import paho.mqtt.client as mqtt

        self.name = name
        self.topic_prefix = topic_prefix
        self.timeout = timeout
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        if tls:
            self._client.tls_set(
                ca_certs=tls.get("ca_certs"), certfile=tls.get("certfile"), keyfile=tls.get("keyfile")
            )
        self._client.on_socket_open = _set_nodelay
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        # a dead broker must not let retried publishes pile up in paho's queue without bound
        self._client.max_queued_messages_set(1000)
        self._client.connect_async(host, port, keepalive)
        self._client.loop_start()

    def already_delivered(self, item: Delivery) -> bool:
        return False

    def deliver(self, item: Delivery) -> None:
        kind = str(item.incident.get("type", "unknown")) or "unknown"
        if any(c in kind for c in "+#/"):
            raise DeliveryFailed(f"incident type {kind!r} is not a valid topic level", retryable=False)
        topic = f"{self.topic_prefix}/{kind}"
        payload = json.dumps(item.body(), separators=(",", ":"), sort_keys=True)
        info = self._client.publish(topic, payload, qos=1)
        try:
            info.wait_for_publish(self.timeout)
        except (RuntimeError, ValueError) as exc:
            raise DeliveryFailed(f"publish to {topic}: {exc}") from exc
        if not info.is_published():
            raise DeliveryFailed(f"publish to {topic}: no PUBACK within {self.timeout}s")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def _set_nodelay(client: Any, userdata: Any, sock: Any) -> None:
    # Nagle + delayed ACK cost ~88 ms per QoS 1 round trip (anchors/perf.md); small packets must go now
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def sink_name(spec: dict[str, Any]) -> str:
    return str(spec.get("name") or spec.get("kind") or "file")


def build_sink(spec: dict[str, Any], data_dir: Path, default_client_id: str = "") -> Sink:
    """A sink from one ``args.sinks`` entry; a relative file ``path`` resolves under ``data_dir``."""
    kind = spec.get("kind", "file")
    name = sink_name(spec)
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise SinkConfigError(f"sink name {name!r}: use letters, digits, '-', '_' or '.'")
    if kind == "file":
        path = Path(spec.get("path", "incidents.jsonl"))
        return FileSink(name, path if path.is_absolute() else data_dir / path)
    if kind == "webhook":
        if "url" not in spec:
            raise SinkConfigError(f"sink {name!r}: a webhook sink needs a url")
        return WebhookSink(name, spec["url"], float(spec.get("timeout", 2.0)), spec.get("headers"))
    if kind == "mqtt":
        return MqttSink(
            name,
            spec.get("host", "127.0.0.1"),
            int(spec.get("port", 1883)),
            client_id=spec.get("client_id", f"{default_client_id}-{name}" if default_client_id else ""),
            username=spec.get("username"),
            password=spec.get("password"),
            tls=spec.get("tls"),
            topic_prefix=spec.get("topic_prefix", "incident"),
            timeout=float(spec.get("timeout", 5.0)),
        )
    raise SinkConfigError(f"sink {name!r}: unknown kind {kind!r} (file, webhook or mqtt)")
