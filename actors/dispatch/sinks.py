"""Where committed incidents go: a JSON-lines file, a webhook, an MQTT topic.

Every sink has one method that matters, :meth:`Sink.deliver`, which either returns once the incident is
durably handed over (file fsynced, HTTP 2xx, MQTT PUBACK) or raises :class:`DeliveryFailed` saying whether
trying again can help. Sinks run in the dispatcher's process and block it while they work; every network
call has an explicit timeout so that a dead endpoint costs bounded time.

Exactly-once into the file (across crashes): the dispatcher writes a line, fsyncs, and only then commits
its offset. A crash between the two leaves lines the offset does not cover; they are always the file's
last lines and all come from one input (the committed stream or the replay stream), so on open the sink
reads that trailing run and skips an item only when its index (or replay seq) AND its incident id are
there: a fresh event log numbers from 1 again, and its incident 1 is not the old file's line 1. A torn
last line (crash during the write, never fsynced as a whole) is cut off and written again; a write that
fails (a full disk) is cut back to the size before it, so its retry is written exactly once.
"""

from __future__ import annotations

import errno
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

# Trailing lines the file sink remembers: a crash leaves at most one dispatcher batch (default 100)
# uncovered by the offset, so this must exceed the dispatcher's ``batch``.
TAIL_LINES = 4096
DATA_FILE_MODE = 0o600
DATA_DIR_MODE = 0o700

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
    """Appends one JSON line per incident: ``{"index", "incident"[, "replay"]}``, written and fsynced."""

    kind = "file"

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self.path.parent.mkdir(mode=DATA_DIR_MODE, parents=True, exist_ok=True)
        created = not self.path.exists()
        # unbuffered: a failed write must leave no bytes behind in a buffer that a later write would
        # flush (that wrote the retried incident twice after a full disk)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, DATA_FILE_MODE)
        os.fchmod(self._fd, DATA_FILE_MODE)  # incidents are node-private, whatever the umask or old mode
        if created:
            _fsync_dir(self.path.parent)  # the file's directory entry must survive a power cut too
        # (lane, index or replay seq) -> incident id of the file's trailing lines: what a crash may have
        # written without the dispatcher's offset covering it
        self._written: dict[tuple[str, int], str] = {}
        self.resume_index, self.resume_replay = self._recover_tail()

    def _recover_tail(self) -> tuple[int, int]:
        """Cut a torn last line; remember the trailing lines; return the newest index / replay seq."""
        size = os.lseek(self._fd, 0, os.SEEK_END)
        if size == 0:
            return 0, 0
        with open(self.path, "rb") as reader:
            tail, start = _read_tail(reader, size, lines=TAIL_LINES)
        complete_end = tail.rfind(b"\n") + 1
        if complete_end < len(tail):  # torn line: it was never fsynced as a whole, so never counted
            os.truncate(self.path, start + complete_end)
            os.fsync(self._fd)
            tail = tail[:complete_end]
        trailing: list[tuple[tuple[str, int], str]] = []
        for raw in reversed(tail.rstrip(b"\n").split(b"\n")[-TAIL_LINES:]):
            if not raw:
                break
            key, incident_id = self._parse_line(raw, last=not trailing)
            if key is None:
                break  # the chunk started mid-line
            # the run of lines one crash can leave uncovered: one lane, sequence growing to the end
            if trailing and (key[0] != trailing[-1][0][0] or key[1] >= trailing[-1][0][1]):
                break
            trailing.append((key, incident_id))
        self._written = dict(reversed(trailing))
        if not trailing:
            return 0, 0
        (lane, seq), _ = trailing[0]
        return (0, seq) if lane == "replay" else (seq, 0)

    def _parse_line(self, raw: bytes, *, last: bool) -> tuple[tuple[str, int] | None, str]:
        try:
            record = json.loads(raw)
            index = int(record["index"])
            incident_id = str(record["incident"].get("incident_id", ""))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            if not last:
                return None, ""
            raise SinkConfigError(
                f"{self.path}: the last line is not a garrison incident line ({exc}); "
                "point the file sink at a file only garrison writes"
            ) from exc
        replay = record.get("replay")
        return (("replay", int(replay)) if replay is not None else ("index", index)), incident_id

    @staticmethod
    def _key(item: Delivery) -> tuple[str, int]:
        return ("replay", item.replay) if item.replay is not None else ("index", item.index)

    def already_delivered(self, item: Delivery) -> bool:
        # the incident id must match too: a fresh event log (``--reinit``) numbers from 1 again, and an
        # equal index of another incident is new, not delivered
        return self._written.get(self._key(item)) == item.incident_id

    def deliver(self, item: Delivery) -> None:
        line = json.dumps(item.body(), separators=(",", ":"), sort_keys=True, allow_nan=False) + "\n"
        data = line.encode()
        size = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            rest = memoryview(data)
            while rest:  # a short write is followed by the real error (ENOSPC) on the next one
                written = os.write(self._fd, rest)
                if written == 0:
                    raise OSError(errno.ENOSPC, "write wrote nothing")
                rest = rest[written:]
            os.fsync(self._fd)
        except OSError as exc:
            self._undo_to(size)
            full = exc.errno == errno.ENOSPC
            why = "disk full; free space on its file system (the incident is retried)" if full else exc
            raise DeliveryFailed(f"cannot append to {self.path}: {why}") from exc
        key = self._key(item)
        if self._written and (key[0] != next(reversed(self._written))[0] or len(self._written) >= TAIL_LINES):
            self._written.clear()  # a new run (the lane changed) or an old entry no crash can need
        self._written[key] = item.incident_id
        # only for the skip-after-crash check: both lanes move forward, so remember the newest of each
        if item.replay is None:
            self.resume_index = max(self.resume_index, item.index)
        else:
            self.resume_replay = max(self.resume_replay, item.replay)

    def _undo_to(self, size: int) -> None:
        """Cut what a failed write left after ``size`` so that the retry writes the line exactly once."""
        try:
            os.ftruncate(self._fd, size)
            os.fsync(self._fd)
        except OSError:  # cannot even truncate: reopen and try once more before giving up loudly
            os.close(self._fd)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            os.ftruncate(self._fd, size)

    def close(self) -> None:
        os.close(self._fd)


def _read_tail(
    reader: Any, size: int, lines: int = 1, chunk: int = 65536, max_bytes: int = 16 << 20
) -> tuple[bytes, int]:
    """The end of the file and its offset: enough to hold the last ``lines`` complete lines and any torn
    bytes after them (``lines + 1`` line breaks in view), or the whole file when it is shorter. Past
    ``max_bytes`` it stops at the last complete line (a crash's few uncovered lines are the newest)."""
    start, chunks, breaks = size, [], 0
    while start > 0 and breaks < lines + 1 and (breaks < 2 or size - start < max_bytes):
        end, start = start, max(0, start - chunk)
        reader.seek(start)
        chunks.append(reader.read(end - start))
        breaks += chunks[-1].count(b"\n")
    return b"".join(reversed(chunks)), start


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
