"""Peer-link config validation, SAN -> node identification, TLS context settings, and the send path
(bounded queues, drops, on_unreachable, role checks) without any socket."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from supervisors import certs
from supervisors.peer import (
    ForwardFrame,
    GossipFrame,
    Heartbeat,
    Lane,
    LaneNotAllowed,
    PeerConfig,
    PeerConfigError,
    PeerLinks,
    PeerNode,
    PeerRefused,
    RaftFrame,
    SnapshotChunk,
    UnknownPeer,
)
from supervisors.peer.tls import client_context, dns_names, identify, server_context

NODES = (
    PeerNode("gw1", "gateway", "127.0.0.1", 7001),
    PeerNode("gw2", "gateway", "127.0.0.1", 7002),
    PeerNode("edge1", "edge", "127.0.0.1", 7003),
)


@pytest.fixture(scope="module")
def certs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("certs")
    certs.init_ca(d)
    for node in ("gw1", "edge1"):
        certs.issue_node_cert(d, node)
    return d


def make(node: str = "gw1", **fields: object) -> PeerConfig:
    base: dict[str, object] = {
        "nodes": NODES,
        "ca": Path("ca.pem"),
        "cert": Path("c.pem"),
        "key": Path("k.pem"),
    }
    return PeerConfig(node=node, **{**base, **fields})  # type: ignore[arg-type]


# ---- config --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"node": "gw9"}, "node 'gw9' is not among the nodes"),
        ({"nodes": (*NODES, PeerNode("GW1", "gateway", "127.0.0.1", 7009))}, "compare case-insensitively"),
        (
            {"nodes": (*NODES[:2], PeerNode("edge1", "sensor", "127.0.0.1", 7003))},
            "role 'sensor' must be one of",
        ),
        ({"nodes": (*NODES[:2], PeerNode("edge1", "edge", "127.0.0.1", 7002))}, "127.0.0.1:7002"),
        ({"nodes": (*NODES[:2], PeerNode("edge1", "edge", "127.0.0.1", 0))}, "is not a TCP port"),
        ({"peers": ("gw1",)}, "peers entry 'gw1' is not another node"),
        ({"heartbeat_ms": 0}, "heartbeat_ms must be > 0"),
        ({"suspect_after_missed": 5, "down_after_missed": 5}, "suspect_after_missed < down_after_missed"),
        ({"backoff_min_ms": 100, "backoff_max_ms": 10}, "backoff_max_ms"),
        ({"queue_sizes": {Lane.RAFT: 0}}, r"queue_sizes\[RAFT\]"),
    ],
)
def test_config_errors_name_the_field(fields: dict[str, object], message: str) -> None:
    with pytest.raises(PeerConfigError, match=message):
        make(**fields).validate()  # type: ignore[arg-type]


def test_config_round_trips_through_json() -> None:
    config = make(
        peers=("gw2",), queue_sizes={Lane.RAFT: 3, Lane.GOSSIP: 4, Lane.FORWARD: 5, Lane.SNAPSHOT: 6}
    )
    again = PeerConfig.from_json(config.to_json())
    assert again == config
    assert again.peer_names() == ("gw2",) and make().peer_names() == ("gw2", "edge1")
    with pytest.raises(PeerConfigError, match="unknown keys"):
        PeerConfig.from_json({**config.to_json(), "heartbeat": 1})


# ---- who a certificate names ---------------------------------------------------------------------------


def test_identify_accepts_exactly_one_topology_node() -> None:
    peers = ["gw2", "edge1"]
    assert identify(["gw2.garrison", "localhost"], peers, "gw1") == "gw2"
    assert identify(["EDGE1.Garrison"], peers, "gw1") == "edge1"  # DNS names compare case-insensitively
    for names, reason in [
        (["mallory.garrison", "localhost"], "names no node"),
        (["gw2.garrison.evil.com"], "names no node"),
        (["gw2"], "names no node"),
        ([], "names no node"),
        (["gw2.garrison", "edge1.garrison"], "several nodes"),
        (["gw1.garrison"], "this node itself"),
    ]:
        with pytest.raises(PeerRefused, match=reason) as error:
            identify(names, peers, "gw1")
        assert error.value.names == names


def test_dns_names_reads_only_dns_sans() -> None:
    cert = {"subjectAltName": (("DNS", "gw2.garrison"), ("IP Address", "127.0.0.1"), ("DNS", "localhost"))}
    assert dns_names(cert) == ["gw2.garrison", "localhost"]
    assert dns_names(None) == [] and dns_names({}) == []


def test_tls_contexts_require_client_certs_and_trust_only_the_cluster_ca(certs_dir: Path) -> None:
    files = certs.node_files(certs_dir, "gw1")
    for ctx in (
        server_context(files.ca, files.cert, files.key),
        client_context(files.ca, files.cert, files.key),
    ):
        assert ctx.verify_mode == ssl.CERT_REQUIRED
        assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
        cas = ctx.get_ca_certs()
        assert len(cas) == 1 and "garrison cluster CA" in str(cas[0]["subject"])  # no system store
    assert client_context(files.ca, files.cert, files.key).check_hostname
    assert server_context(files.ca, files.cert, files.key).protocol == ssl.PROTOCOL_TLS_SERVER


# ---- sending: never blocks, bounded, role-checked ------------------------------------------------------


def test_full_queue_drops_counts_and_reports_unreachable() -> None:
    unreachable: list[tuple[str, Lane]] = []
    links = PeerLinks(
        make(queue_sizes={Lane.RAFT: 2, Lane.GOSSIP: 1, Lane.FORWARD: 1, Lane.SNAPSHOT: 1}),
        on_frame=lambda peer, body: None,
        on_unreachable=lambda peer, lane: unreachable.append((peer, lane)),
    )
    frame = RaftFrame(sender="gw1", recipient="gw2", payload=b"m")
    assert [links.send("gw2", frame) for _ in range(4)] == [True, True, False, False]
    assert links.send("gw2", GossipFrame(sender="gw1", payload=b"g"))  # another lane has its own queue
    assert links.send("edge1", GossipFrame(sender="gw1", payload=b"g"))  # and another peer too
    assert unreachable == [("gw2", Lane.RAFT), ("gw2", Lane.RAFT)]
    status = links.status()
    assert status["gw2"]["dropped"] == {"raft": 2} and status["gw2"]["queued"]["raft"] == 2
    assert status["gw2"]["state"] == "down" and status["edge1"]["dropped"] == {}


def test_send_refuses_unknown_peers_heartbeats_and_lanes_the_role_may_not_use() -> None:
    gateway = PeerLinks(make(), on_frame=lambda peer, body: None)
    with pytest.raises(UnknownPeer, match="links with"):
        gateway.send("gw9", GossipFrame(sender="gw1", payload=b""))
    with pytest.raises(ValueError, match="heartbeats"):
        gateway.send("gw2", Heartbeat(seq=1, sent_ns=1))
    with pytest.raises(ValueError, match="send smaller chunks"):
        gateway.send("gw2", SnapshotChunk("gw1", "gw2", "s", 0, b"x" * (5 << 20)))
    edge = PeerLinks(make("edge1"), on_frame=lambda peer, body: None)
    for body in (RaftFrame("edge1", "gw1", b""), SnapshotChunk("edge1", "gw1", "s", 0, b"")):
        with pytest.raises(LaneNotAllowed, match="edge node may not send"):
            edge.send("gw1", body)
    assert edge.send("gw1", ForwardFrame(request_id=1, payload=b"p"))
    assert edge.send("gw2", GossipFrame(sender="edge1", payload=b"g"))
