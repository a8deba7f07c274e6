"""The cluster's certificates against a real mosquitto that requires client certificates (TLS listener on
127.0.0.1, `require_certificate true`, `use_identity_as_username true`): the MQTT bridge of a real node
connects with its node certificate and a published reading reaches `readings`; the MQTT sink delivers an
incident; a client without a certificate, or with one from another CA, is refused by the broker."""

from __future__ import annotations

import getpass
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from actors.dispatch.sinks import Delivery, DeliveryFailed, build_sink
from actors.eventlog import open_event_log
from actors.streams import READINGS
from models.readings import readings_in
from supervisors.certs import NodeFiles, init_ca, issue_node_cert
from tests.harness.mosquitto import running_mosquitto
from tests.system.conftest import _mosquitto_binary
from tests.system.nodes import LiveNode, supervisor, worker, write_topology

pytestmark = [pytest.mark.system, pytest.mark.mqtt, pytest.mark.timeout(120)]


@dataclass
class TlsBroker:
    port: int
    certs: Path
    log: Path

    def files(self, name: str) -> NodeFiles:
        return NodeFiles(self.certs / "ca.pem", self.certs / f"{name}.pem", self.certs / f"{name}.key")

    def tls_args(self, name: str) -> dict[str, str]:
        f = self.files(name)
        return {"ca_certs": str(f.ca), "certfile": str(f.cert), "keyfile": str(f.key)}


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[TlsBroker]:
    _mosquitto_binary()
    certs = tmp_path / "certs"
    init_ca(certs)
    for name in ("broker", "edge-1", "publisher", "dispatcher"):
        issue_node_cert(certs, name)
    listener = (
        f"cafile {certs / 'ca.pem'}\ncertfile {certs / 'broker.pem'}\nkeyfile {certs / 'broker.key'}\n"
        "require_certificate true\nuse_identity_as_username true\nallow_anonymous false\n"
        # run as ourselves: as root mosquitto would switch to its own user, who cannot read the 0700 certs dir
        f"user {getpass.getuser()}"
    )
    with running_mosquitto(tmp_path / "broker", listener) as broker:
        yield TlsBroker(broker.port, certs, broker.log_path)


def try_connect(broker: TlsBroker, client_id: str, tls: dict[str, Any]) -> dict[str, Any]:
    """Connect a paho client with ``tls``; what happened: connected (CONNACK success) or why not."""
    outcome: dict[str, Any] = {}
    done = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.tls_set(**tls)

    def on_connect(c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
        outcome["connected"] = not reason.is_failure
        done.set()

    def on_disconnect(c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
        outcome.setdefault("connected", False)
        outcome["disconnected"] = str(reason)
        done.set()

    client.on_connect, client.on_disconnect = on_connect, on_disconnect
    try:
        client.connect("127.0.0.1", broker.port, keepalive=10)
        client.loop_start()
        done.wait(10)
    except OSError as exc:  # ssl.SSLError included: the handshake itself failed
        outcome.update(connected=False, error=f"{type(exc).__name__}: {exc}")
    finally:
        client.loop_stop()
        client.disconnect()
    return outcome


def publisher(broker: TlsBroker) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="publisher")
    client.tls_set(**broker.tls_args("publisher"))
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    return client


def test_bridge_connects_with_its_node_cert_and_clients_without_one_are_refused(
    tmp_path: Path, tls_broker: TlsBroker
) -> None:
    # the broker refuses what it must: no client certificate, and a certificate from another CA
    anonymous = try_connect(tls_broker, "anonymous", {"ca_certs": str(tls_broker.files("broker").ca)})
    assert anonymous.get("connected") is False, anonymous
    init_ca(tmp_path / "other-ca")
    stranger = issue_node_cert(tmp_path / "other-ca", "edge-1")
    foreign = try_connect(
        tls_broker,
        "stranger",
        {
            "ca_certs": str(tls_broker.files("broker").ca),
            "certfile": str(stranger.cert),
            "keyfile": str(stranger.key),
        },
    )
    assert foreign.get("connected") is False, foreign
    broker_log = tls_broker.log.read_text()
    assert "peer did not return a certificate" in broker_log, broker_log  # refused for the missing cert
    assert "certificate verify failed" in broker_log or "unknown ca" in broker_log.lower(), broker_log

    args = {
        "host": "127.0.0.1",
        "port": tls_broker.port,
        "topic": "sensor/+/raw",
        "client_id": "edge-1-bridge",
        "reconnect_max": 2,
        "tls": tls_broker.tls_args("edge-1"),
    }
    bridge = worker("bridge", "actors.pipeline.mqtt_bridge.MqttBridgeActor", args=args)
    node = LiveNode(write_topology(tmp_path, supervisor("root", [bridge], intensity=5)), duration=60)
    try:
        node.wait_until(lambda: node.named("mqtt_subscribed"), 30, "the bridge's subscription over TLS")
        assert not node.named("mqtt_connect_failed")
        pub = publisher(tls_broker)
        try:
            reading = {"sensor": "s1", "pollutant": "NO2", "value": 41.5, "unit": "ppb", "ts": 1_700_000_000}
            pub.publish("sensor/s1/raw", json.dumps(reading), qos=1).wait_for_publish(10)
            log = open_event_log(tmp_path / "data" / "eventlog")
            node.wait_until(lambda: log.read(READINGS), 20, "the reading in the event log")
        finally:
            pub.loop_stop()
            pub.disconnect()
    finally:
        run = node.finish(stop=True)
    assert run.code == 0, run.stderr[-3000:]
    stored = readings_in(r.payload for r in log.read(READINGS))
    assert [(r["sensor"], r["value"], r["source"]) for r in stored] == [("s1", 41.5, "mqtt")]
    # the broker knew the bridge by its certificate (use_identity_as_username): CN edge-1
    assert "as edge-1-bridge" in tls_broker.log.read_text() and "u'edge-1'" in tls_broker.log.read_text()


def test_mqtt_sink_delivers_over_tls_with_a_client_cert_and_fails_without_one(
    tmp_path: Path, tls_broker: TlsBroker
) -> None:
    received: list[dict[str, Any]] = []
    subscribed = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="subscriber")
    sub.tls_set(**tls_broker.tls_args("publisher"))
    sub.on_connect = lambda c, u, f, r, p: c.subscribe("incident/#", qos=1)
    sub.on_subscribe = lambda c, u, mid, r, p: subscribed.set()
    sub.on_message = lambda c, u, msg: received.append(json.loads(msg.payload))
    sub.connect("127.0.0.1", tls_broker.port)
    sub.loop_start()
    sink = build_sink(
        {
            "kind": "mqtt",
            "host": "127.0.0.1",
            "port": tls_broker.port,
            "tls": tls_broker.tls_args("dispatcher"),
        },
        tmp_path,
        default_client_id="gw-1",
    )
    bare = build_sink(
        {
            "kind": "mqtt",
            "name": "bare",
            "host": "127.0.0.1",
            "port": tls_broker.port,
            "timeout": 2,
            "tls": {"ca_certs": tls_broker.tls_args("dispatcher")["ca_certs"]},
        },
        tmp_path,
        default_client_id="gw-1",
    )
    try:
        assert subscribed.wait(10), tls_broker.log.read_text()
        incident = {"incident_id": "inc-1", "type": "gas_leak", "confidence": 0.97}
        # the sink's network thread connects in the background (a publish before that would be queued)
        deadline = time.monotonic() + 15
        while not sink._client.is_connected() and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.05)
        sink.deliver(Delivery(index=7, incident=incident))
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert received == [{"index": 7, "incident": incident}]
        with pytest.raises(DeliveryFailed):
            bare.deliver(Delivery(index=8, incident={**incident, "incident_id": "inc-2"}))
        time.sleep(0.5)
        assert len(received) == 1  # nothing from the client the broker refused
    finally:
        sink.close()
        bare.close()
        sub.loop_stop()
        sub.disconnect()
    assert "u'dispatcher'" in tls_broker.log.read_text()
