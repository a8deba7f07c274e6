"""The topology's cluster section: parsed into NodeConfig/ClusterConfig, and every mistake an error with
file:line and path (unknown member, duplicate address, member without a peer address, edge as a Raft
member, a node named twice, bad keys); a topology without `cluster:` stays as it was."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from click.testing import CliRunner

from supervisors.cli import main
from supervisors.topology import DEFAULT_TOPOLOGY, TopologyError, load_topology, parse_topology
from supervisors.topology_cluster import Address, parse_address

TREE = "{id: root, children: [{id: counter, actor: actors.examples.Counter}]}"
KEY = base64.b64encode(bytes(range(32))).decode()


def node(name: str, role: str | None = "gateway", peer: str | None = None, api: str | None = None) -> str:
    lines = [f"  - name: {name}", f"    data_dir: ./data/{name}"]
    if role is not None:
        lines.append(f"    role: {role}")
    if peer is not None:
        lines.append(f"    peer: {peer}")
    if api is not None:
        lines.append(f"    api: {api}")
    lines.append(f"    tree: {TREE}")
    return "\n".join(lines) + "\n"


CITY = (
    "nodes:\n"
    + node("gw-1", peer="127.0.0.1:7101", api="127.0.0.1:8101")
    + node("gw-2", peer="127.0.0.1:7102", api="127.0.0.1:8102")
    + node("edge-1", role="edge", peer="127.0.0.1:7111")
    + f"cluster:\n  certs_dir: certs\n  trusted_keys: {{gw-1: {KEY}}}\n  heartbeat_ms: 250\n"
)


def errors_of(text: str, tmp_path: Path) -> list[str]:
    with pytest.raises(TopologyError) as err:
        parse_topology(text, "city.yaml", base_dir=tmp_path, code_dir=tmp_path)
    return err.value.errors


def test_cluster_section_becomes_node_and_cluster_config(tmp_path: Path) -> None:
    topo = parse_topology(CITY, "city.yaml", base_dir=tmp_path, code_dir=tmp_path)
    cluster = topo.cluster
    assert cluster is not None
    assert cluster.certs_dir == tmp_path / "certs"  # relative to the topology file
    assert cluster.raft_members == ("gw-1", "gw-2")  # default: every gateway
    assert cluster.gossip_peers == ("gw-1", "gw-2", "edge-1")  # default: every node
    assert cluster.trusted_keys == {"gw-1": KEY}
    assert (cluster.heartbeat_ms, cluster.max_frame_bytes, cluster.queue_frames) == (250, 1 << 20, 1024)
    gw1, _, edge = topo.nodes
    assert gw1.role == "gateway" and gw1.peer == Address("127.0.0.1", 7101)
    assert gw1.api == Address("127.0.0.1", 8101) and gw1.cluster is cluster
    assert edge.role == "edge" and edge.api is None and str(edge.peer) == "127.0.0.1:7111"
    assert cluster.member("edge-1").peer == edge.peer
    assert cluster.node_files("gw-1").key == tmp_path / "certs" / "gw-1.key"


def test_single_node_topology_without_cluster_is_unchanged() -> None:
    topo = load_topology(DEFAULT_TOPOLOGY)
    (only,) = topo.nodes
    assert topo.cluster is None and only.cluster is None
    assert (only.role, only.peer, only.api) == ("gateway", None, None)


def test_each_cluster_mistake_is_named_with_file_line_and_path(tmp_path: Path) -> None:
    text = (
        "nodes:\n"
        + node("gw-1", peer="127.0.0.1:7101", api="127.0.0.1:8101")  # lines 2-7
        + node("gw-2", peer="127.0.0.1:7101")  # 8-12: the same peer address as gw-1
        + node("gw-3", api="127.0.0.1:8101")  # 13-17: gw-1's api address, and no peer address
        + node("edge-1", role="edge", peer="127.0.0.1:7111")  # 18-22
        + node("gw-1", peer="127.0.0.1:7199")  # 23-27: a node named twice
        + node("edge-2", role=None, peer="127.0.0.1:7112")  # 28-31: no role in a cluster
        + "cluster:\n"  # 32
        + "  raft_members: [gw-1, gw-3, edge-1, gw-9, gw-1]\n"  # 33
        + "  gossip_peers: [gw-1, edgy-1]\n"  # 34
        + f"  trusted_keys: {{gw-1: not-base64!, nobody: {KEY}}}\n"  # 35
    )
    errors = errors_of(text, tmp_path)
    expected = [
        "city.yaml:11: nodes[1].peer: address 127.0.0.1:7101 is already nodes[0].peer (gw-1)",
        "city.yaml:16: nodes[2].api: address 127.0.0.1:8101 is already nodes[0].api (gw-1)",
        "city.yaml:23: nodes[4].name: duplicate node name 'gw-1'",
        "city.yaml:28: nodes[5].role: required in a cluster: gateway or edge",
        "city.yaml:33: cluster.raft_members[1]: 'gw-3' is a Raft member but has no peer address",
        "city.yaml:33: cluster.raft_members[2]: 'edge-1' is an edge node; only gateways are Raft members",
        "city.yaml:33: cluster.raft_members[3]: no node named 'gw-9'",
        "city.yaml:33: cluster.raft_members[4]: 'gw-1' is listed twice",
        "city.yaml:34: cluster.gossip_peers[1]: no node named 'edgy-1'",
        "city.yaml:35: cluster.trusted_keys.gw-1: is not base64",
        "city.yaml:35: cluster.trusted_keys.nobody: no node named 'nobody'",
    ]
    for want in expected:
        assert any(e.startswith(want) for e in errors), f"missing {want!r} in:\n" + "\n".join(errors)
    assert any("did you mean 'edge-1'" in e for e in errors)


def test_defaults_need_peer_addresses_and_a_gateway(tmp_path: Path) -> None:
    text = "nodes:\n" + node("gw-1") + node("edge-1", role="edge", peer="127.0.0.1:7111") + "cluster: {}\n"
    errors = errors_of(text, tmp_path)
    assert errors == [
        "city.yaml:2: nodes[0].peer: a gateway is a Raft member (raft_members defaults to every gateway)"
    ]
    text = "nodes:\n" + node("edge-1", role="edge", peer="127.0.0.1:7111") + "cluster: {}\n"
    assert errors_of(text, tmp_path) == [
        "city.yaml:7: cluster: no gateway node: a cluster needs at least one Raft member"
    ]


def test_peer_without_cluster_and_malformed_addresses(tmp_path: Path) -> None:
    text = "nodes:\n" + node("gw-1", peer="127.0.0.1:7101", api="localhost:99999")
    errors = errors_of(text, tmp_path)
    assert errors[0].startswith("city.yaml:5: nodes[0].peer: a peer address needs a top-level cluster:")
    assert errors[1].startswith("city.yaml:6: nodes[0].api: 'localhost:99999': the port must be")
    for bad in ("7101", ":7101", "::1:7101", "[nothost]:7101", "a b:1", "host:-1", "host:+7"):
        with pytest.raises(ValueError):
            parse_address(bad)
    assert parse_address("[::1]:7101") == Address("::1", 7101)
    assert str(parse_address("[::1]:7101")) == "[::1]:7101"
    assert parse_address("GW-1.Example.org:80") == Address("gw-1.example.org", 80)


def test_unknown_cluster_keys_and_out_of_range_limits(tmp_path: Path) -> None:
    text = CITY + "  max_frame_bytes: 10\n  queue_frames: true\n  rafts: [gw-1]\n"
    errors = errors_of(text, tmp_path)
    assert any(e.startswith("city.yaml:23: cluster.max_frame_bytes: ") for e in errors), errors
    assert any(e.startswith("city.yaml:24: cluster.queue_frames: ") for e in errors), errors
    assert any(e.startswith("city.yaml:25: cluster.rafts: unknown key") for e in errors), errors


def test_trusted_keys_from_a_directory(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "gw-1.pub").write_text(KEY + "\n")
    text = CITY.replace(f"{{gw-1: {KEY}}}", "keys")
    topo = parse_topology(text, "city.yaml", base_dir=tmp_path, code_dir=tmp_path)
    assert topo.cluster is not None and topo.cluster.trusted_keys == {"gw-1": KEY}
    (keys / "stranger.pub").write_text(KEY)
    (keys / "gw-2.pub").write_text(base64.b64encode(b"short").decode())
    errors = errors_of(text, tmp_path)
    assert any("stranger.pub: no node named 'stranger'" in e for e in errors), errors
    assert any("gw-2.pub: decodes to 5 bytes" in e for e in errors), errors
    errors = errors_of(CITY.replace(f"{{gw-1: {KEY}}}", "no-such-dir"), tmp_path)
    assert any("no such directory" in e and e.startswith("city.yaml:21:") for e in errors), errors


def test_validate_command_reports_cluster_errors(tmp_path: Path) -> None:
    bad = tmp_path / "city.yaml"
    bad.write_text(CITY.replace("raft_members", "x").replace("heartbeat_ms: 250", "raft_members: [edge-1]"))
    result = CliRunner().invoke(main, ["validate", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:22: cluster.raft_members[0]: 'edge-1' is an edge node" in result.output


def test_shipped_city_topology_is_a_valid_cluster() -> None:
    city = Path(__file__).resolve().parents[2] / "config" / "city.yaml"
    result = CliRunner().invoke(main, ["validate", str(city)])
    assert result.exit_code == 0, result.output
    topo = load_topology(city)
    assert topo.cluster is not None
    roles = {n.name: n.role for n in topo.nodes}
    assert roles == {
        "gw-1": "gateway",
        "gw-2": "gateway",
        "gw-3": "gateway",
        "edge-1": "edge",
        "edge-2": "edge",
    }
    assert topo.cluster.raft_members == ("gw-1", "gw-2", "gw-3")
    assert len({n.data_dir for n in topo.nodes}) == 5
    for n in topo.nodes:  # edges run no Raft replica; gateways sense nothing
        ids = {c.id for c in n.tree.children}
        assert ("incident-log" in ids) == (n.role == "gateway") and ("sensors" in ids) == (n.role == "edge")
