"""What a node's peer gateway and its cluster-mode actors read from the topology file.

The node launcher exports the topology file's path as ``GARRISON_TOPOLOGY`` (inherited by every actor
process and by the gateway process), so an actor in cluster mode finds its cluster without repeating it in
its args. Ed25519 trust: the topology's ``cluster.trusted_keys``, plus ``<certs_dir>/ed25519/<node>.pub``
files (``garrison up`` writes them for a local cluster before any node starts, so every replica starts with
the same trust: entries are accepted or rejected identically everywhere).
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from supervisors.peer.config import DEFAULT_QUEUE_SIZES, PeerConfig, PeerNode
from supervisors.peer.frames import Lane

TOPOLOGY_ENV: Final = "GARRISON_TOPOLOGY"
KEYS_SUBDIR: Final = "ed25519"


class ClusterModeError(RuntimeError):
    """A cluster-mode actor or the gateway cannot find its cluster; the message says what to set."""


@dataclass(frozen=True, slots=True)
class ClusterView:
    node: str
    role: str
    raft_members: tuple[str, ...]
    gossip_peers: tuple[str, ...]
    trusted_keys: dict[str, str]
    peer_config: PeerConfig | None  # None: this node has no peer address


def topology_path(explicit: str | None = None) -> Path:
    path = explicit or os.environ.get(TOPOLOGY_ENV)
    if not path:
        raise ClusterModeError(
            f"cluster mode needs the topology file: run the node with `garrison run FILE --node NAME` "
            f"(which sets {TOPOLOGY_ENV}) or give the actor's `topology` arg"
        )
    return Path(path)


def keys_dir(certs_dir: Path) -> Path:
    return certs_dir / KEYS_SUBDIR


def _key_files(directory: Path) -> dict[str, str]:
    keys: dict[str, str] = {}
    if not directory.is_dir():
        return keys
    for path in sorted(directory.glob("*.pub")):
        text = path.read_text(errors="replace").strip()
        try:
            if len(base64.b64decode(text, validate=True)) == 32:
                keys[path.stem] = text
        except (binascii.Error, ValueError):
            continue
    return keys


def load_cluster(node: str, topology: str | None = None) -> ClusterView:
    """The cluster as node ``node`` sees it (raises :class:`ClusterModeError` with what to fix)."""
    from supervisors.topology import TopologyError, load_topology

    path = topology_path(topology)
    try:
        topo = load_topology(path)
    except TopologyError as exc:
        raise ClusterModeError(f"{path}: {exc}") from None
    cluster = topo.cluster
    if cluster is None:
        raise ClusterModeError(f"{path} has no cluster: section; cluster mode needs one (README: Cluster)")
    me = cluster.member(node)
    trusted = {**_key_files(keys_dir(cluster.certs_dir)), **cluster.trusted_keys}
    peer_config = None
    if me.peer is not None:
        files = cluster.node_files(node)
        peer_config = PeerConfig(
            node=node,
            nodes=tuple(
                PeerNode(n.name, n.role, n.peer.host, n.peer.port)
                for n in cluster.nodes
                if n.peer is not None
            ),
            ca=files.ca,
            cert=files.cert,
            key=files.key,
            listen_host=me.peer.host,
            heartbeat_ms=cluster.heartbeat_ms,
            max_frame=cluster.max_frame_bytes,
            # the snapshot lane keeps its small default: its frames are big chunks
            queue_sizes={
                **DEFAULT_QUEUE_SIZES,
                **{lane: cluster.queue_frames for lane in (Lane.RAFT, Lane.GOSSIP, Lane.FORWARD)},
            },
        ).validate()
    return ClusterView(node, me.role, cluster.raft_members, cluster.gossip_peers, trusted, peer_config)


def ensure_local_node_keys(topology: Any) -> list[Path]:
    """For a cluster run on one machine (``garrison up``): make sure every node has its Ed25519 key in
    its data_dir and its public key in ``<certs_dir>/ed25519/<node>.pub``, BEFORE any node starts, so that
    every replica starts trusting the same keys. Returns the files written. (Across hosts, list the keys
    in ``cluster.trusted_keys`` instead: each host has only its own data_dir.)"""
    from actors.raft.node_keys import load_or_create_signing_key, public_key_b64

    cluster = topology.cluster
    if cluster is None:
        return []
    directory = keys_dir(cluster.certs_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    written = []
    for node in topology.nodes:
        pub = public_key_b64(load_or_create_signing_key(node.data_dir, node.name))
        path = directory / f"{node.name}.pub"
        if not path.exists() or path.read_text().strip() != pub:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(pub + "\n")
            os.replace(tmp, path)
            written.append(path)
    return written
