"""The cluster part of a topology file: where each node listens, what it is, and who trusts whom.

    nodes:
      - name: gw-1
        role: gateway                  # gateway (Raft member, dispatch) | edge (senses, proposes, gossips)
        peer: 127.0.0.1:7101           # mTLS peer links: the address other nodes dial
        api: 127.0.0.1:8101            # HTTP API (optional)
        ...
    cluster:
      certs_dir: certs                 # ca.pem + <node>.pem/.key; relative to the topology file
      raft_members: [gw-1, gw-2, gw-3] # default: every gateway
      gossip_peers: [...]              # default: every node
      trusted_keys: {gw-1: <base64 Ed25519 public key>, ...}   # or a directory of <node>.pub files
      max_frame_bytes: 1048576         # a larger peer frame closes that link
      queue_frames: 1024               # per peer and lane; a full queue drops (the peer is unreachable)
      heartbeat_ms: 500

Without ``cluster:`` a topology is what it always was (one or more independent nodes, role ``gateway``),
and ``peer`` makes no sense (nothing would listen): it is an error. With ``cluster:`` every node states
its ``role`` (an edge node defaulting to gateway would vote in Raft), every Raft member and gossip peer has
a ``peer`` address, and no address (peer or api) is used twice. The checks return ``(path, message)``
pairs; ``supervisors.topology`` adds file and line like every other error.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

Loc = tuple[int | str, ...]
Problems = list[tuple[Loc, str]]

ROLES = ("gateway", "edge")
DEFAULT_ROLE = "gateway"
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_MAX_KEY_FILE = 4096  # a base64 Ed25519 key is 44 characters


class ClusterModel(BaseModel):
    """The ``cluster:`` section as written (checked further by :func:`cluster_problems`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    certs_dir: str = Field("certs", min_length=1, max_length=4096)
    raft_members: list[str] | None = Field(None, max_length=1000)
    gossip_peers: list[str] | None = Field(None, max_length=1000)
    # a mapping {node: base64 key} or a directory: checked by hand for messages that name the right thing
    trusted_keys: Any = None
    max_frame_bytes: int = Field(1 << 20, ge=1024, le=64 << 20)
    queue_frames: int = Field(1024, ge=1, le=1_000_000)
    heartbeat_ms: int = Field(500, ge=10, le=60_000)


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ClusterNode:
    name: str
    role: str
    peer: Address | None
    api: Address | None


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """What a node needs to know about the cluster (the same for every node of the file)."""

    certs_dir: Path
    nodes: tuple[ClusterNode, ...]
    raft_members: tuple[str, ...]
    gossip_peers: tuple[str, ...]
    trusted_keys: dict[str, str] = field(hash=False)  # node -> base64 raw Ed25519 public key
    max_frame_bytes: int
    queue_frames: int
    heartbeat_ms: int

    def member(self, name: str) -> ClusterNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"{name!r} is not a node of this cluster ({', '.join(n.name for n in self.nodes)})")

    def node_files(self, name: str) -> Any:
        """The CA, certificate and key paths of node ``name`` (``supervisors.certs.NodeFiles``)."""
        from supervisors.certs import node_files

        return node_files(self.certs_dir, name)


def parse_address(text: str) -> Address:
    """``host:port`` (``[v6]:port`` for IPv6) as an :class:`Address`; ``ValueError`` says what is wrong."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"{text!r}: write an IPv6 address as [addr]:port")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{text!r}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{text!r}: expected host:port, e.g. 127.0.0.1:7101")
        if ":" in host:
            raise ValueError(f"{text!r}: write an IPv6 address as [addr]:port")
        if not _HOSTNAME.match(host):
            raise ValueError(f"{text!r}: {host!r} is not a host name or IPv4 address")
    if not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    return Address(host.lower(), int(port))


def _did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"no node named {name!r} (nodes: {', '.join(known)}){hint}"


def _names_list(
    names: list[str], loc: Loc, roles: dict[str, str], peers: dict[str, Address | None], what: str
) -> Problems:
    problems: Problems = []
    seen: set[str] = set()
    for i, name in enumerate(names):
        here = (*loc, i)
        if name in seen:
            problems.append((here, f"{name!r} is listed twice"))
            continue
        seen.add(name)
        if name not in roles:
            problems.append((here, _did_you_mean(name, list(roles))))
        elif peers[name] is None:
            problems.append((here, f"{name!r} is a {what} but has no peer address (nodes[].peer: host:port)"))
    return problems


def _key_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be a base64 Ed25519 public key (a string)"
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return "is not base64 (expected a raw Ed25519 public key: 32 bytes, 44 base64 characters)"
    if len(raw) != 32:
        return f"decodes to {len(raw)} bytes; a raw Ed25519 public key is 32"
    return None


def _trusted_keys(raw: Any, roles: dict[str, str], base: Path) -> tuple[dict[str, str], Problems]:
    loc: Loc = ("cluster", "trusted_keys")
    if raw is None:
        return {}, []
    if isinstance(raw, dict):
        keys: dict[str, str] = {}
        problems: Problems = []
        for node, value in raw.items():
            if node not in roles:
                problems.append(((*loc, str(node)), _did_you_mean(str(node), list(roles))))
            elif (why := _key_problem(value)) is not None:
                problems.append(((*loc, node), why))
            else:
                keys[node] = value.strip()
        return keys, problems
    if not isinstance(raw, str) or not raw or "\0" in raw:
        return {}, [(loc, "must be a mapping {node: base64 Ed25519 public key} or a directory of <node>.pub")]
    directory = base / raw
    if not directory.is_dir():
        return {}, [(loc, f"no such directory: {directory} (relative to the topology file)")]
    keys, problems = {}, []
    for path in sorted(directory.glob("*.pub")):
        node = path.stem
        if node not in roles:
            problems.append((loc, f"{path}: {_did_you_mean(node, list(roles))}"))
            continue
        try:
            text = path.read_bytes()[:_MAX_KEY_FILE].decode("ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            problems.append((loc, f"{path}: cannot read a base64 key ({exc})"))
            continue
        if (why := _key_problem(text)) is not None:
            problems.append((loc, f"{path}: {why}"))
        else:
            keys[node] = text
    return keys, problems


def cluster_problems(
    nodes: list[Any], cluster: ClusterModel | None, base: Path
) -> tuple[ClusterConfig | None, Problems]:
    """Check the nodes' cluster fields and the ``cluster:`` section; ``base`` is the topology file's
    directory (``certs_dir`` and a keys directory are relative to it). Returns the config (None without
    ``cluster:``) and every problem found."""
    problems: Problems = []
    addresses: dict[str, dict[str, Address | None]] = {"peer": {}, "api": {}}
    used: dict[Address, Loc] = {}
    for i, node in enumerate(nodes):
        if cluster is None and node.peer is not None:
            problems.append(
                (("nodes", i, "peer"), "a peer address needs a top-level cluster: section (README: Cluster)")
            )
        if cluster is not None and node.role is None:
            problems.append((("nodes", i, "role"), "required in a cluster: gateway or edge"))
        for kind in ("peer", "api"):
            text = getattr(node, kind)
            address = None
            if text is not None:
                try:
                    address = parse_address(text)
                except ValueError as exc:
                    problems.append((("nodes", i, kind), str(exc)))
            if address is not None and address in used:
                other = used[address]
                problems.append(
                    (
                        ("nodes", i, kind),
                        f"address {address} is already nodes[{other[1]}].{other[2]} ({nodes[int(other[1])].name})",
                    )
                )
            elif address is not None:
                used[address] = ("nodes", i, kind)
            addresses[kind].setdefault(node.name, address)
    if cluster is None:
        return None, problems

    roles = {n.name: n.role or DEFAULT_ROLE for n in nodes}
    peers = addresses["peer"]
    if cluster.raft_members is None:
        members = [n.name for n in nodes if n.role == "gateway"]
        for i, node in enumerate(nodes):
            if node.role == "gateway" and node.peer is None:
                problems.append(
                    (
                        ("nodes", i, "peer"),
                        "a gateway is a Raft member (raft_members defaults to every gateway)",
                    )
                )
        if not members:
            problems.append((("cluster",), "no gateway node: a cluster needs at least one Raft member"))
    else:
        members = list(cluster.raft_members)
        problems += _names_list(members, ("cluster", "raft_members"), roles, peers, "Raft member")
        for i, name in enumerate(members):
            if roles.get(name) == "edge":
                problems.append(
                    (
                        ("cluster", "raft_members", i),
                        f"{name!r} is an edge node; only gateways are Raft members",
                    )
                )
        if not members:
            problems.append((("cluster", "raft_members"), "must list at least one gateway node"))
    if cluster.gossip_peers is None:
        gossip = [n.name for n in nodes]
        for i, node in enumerate(nodes):
            if node.peer is None and not (cluster.raft_members is None and node.role == "gateway"):
                problems.append(
                    (
                        ("nodes", i, "peer"),
                        "required: every node gossips (gossip_peers defaults to every node)",
                    )
                )
    else:
        gossip = list(cluster.gossip_peers)
        problems += _names_list(gossip, ("cluster", "gossip_peers"), roles, peers, "gossip peer")
    trusted, key_problems = _trusted_keys(cluster.trusted_keys, roles, base)
    problems += key_problems
    if "\0" in cluster.certs_dir:
        problems.append((("cluster", "certs_dir"), "must not contain a NUL character"))
    config = ClusterConfig(
        certs_dir=(base / cluster.certs_dir).absolute() if "\0" not in cluster.certs_dir else base,
        nodes=tuple(
            ClusterNode(n.name, roles[n.name], peers.get(n.name), addresses["api"].get(n.name)) for n in nodes
        ),
        raft_members=tuple(dict.fromkeys(members)),
        gossip_peers=tuple(dict.fromkeys(gossip)),
        trusted_keys=trusted,
        max_frame_bytes=cluster.max_frame_bytes,
        queue_frames=cluster.queue_frames,
        heartbeat_ms=cluster.heartbeat_ms,
    )
    return config, problems
