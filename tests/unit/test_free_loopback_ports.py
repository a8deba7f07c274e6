"""``free_loopback_ports(n)``: n distinct ports, each free to bind on loopback when drawn (two separate draws
of ``free_loopback_port`` once gave a test node its API on its own peer port)."""

from __future__ import annotations

import socket
from pathlib import Path

from supervisors import thespian_env
from supervisors.node import admin_port
from supervisors.thespian_env import (
    ADMIN_PORTS,
    LOOPBACK,
    PROMISED_PORTS,
    free_loopback_ports,
    free_peer_and_api_ports,
)
from supervisors.topology import load_topology

CITY = Path(__file__).resolve().parents[2] / "config" / "city.yaml"


def test_the_ports_are_distinct_even_when_draws_repeat(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    draws = iter([40001, 40001, 40002, 40001, 40003])  # what two independent draws can do
    monkeypatch.setattr(thespian_env, "free_loopback_port", lambda pool: next(draws))
    assert free_loopback_ports(3) == [40001, 40002, 40003]
    draws = iter([40001, 40002, 40003, 40004])  # 40002 was drawn before and is not bound yet
    assert free_loopback_ports(2, avoid={40002}) == [40001, 40003]


def test_real_ports_are_distinct_and_bindable() -> None:
    ports = free_loopback_ports(20)
    assert len(set(ports)) == 20
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, port))


def test_peer_and_api_ports_are_one_distinct_set(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    draws = iter([40001, 40001, 40002, 40002, 40003, 40004])
    monkeypatch.setattr(thespian_env, "free_loopback_port", lambda pool: next(draws))
    peer, api = free_peer_and_api_ports(["a", "b"])
    assert peer == {"a": 40001, "b": 40002} and api == {"a": 40003, "b": 40004}


def test_a_node_never_takes_a_port_of_the_topology_for_its_admin(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # gw-2's peer port and edge-2's API port are free while those nodes are down: a draw can return them
    draws = iter([7102, 8112, 7101, 25001])
    monkeypatch.setattr(thespian_env, "free_loopback_port", lambda pool: next(draws))
    assert admin_port(load_topology(CITY).node("gw-1")) == 25001


def test_a_nodes_admin_port_is_never_one_promised_to_another_process() -> None:
    # A node avoids its topology's ports, but a test cluster's topology of one node names the proxies in
    # front of the other nodes, not their real peer ports: a node's admin once took one (the other node
    # then never listened). Promised ports and admin ports come from disjoint pools, both below the
    # kernel's ephemeral range (every Thespian actor binds port 0).
    (promised_lo, promised_hi), (admin_lo, admin_hi) = PROMISED_PORTS, ADMIN_PORTS
    assert promised_hi <= admin_lo or admin_hi <= promised_lo
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        ephemeral_lo = int(f.read().split()[0])
    assert max(promised_hi, admin_hi) <= ephemeral_lo
    peer, api = free_peer_and_api_ports([f"n{i}" for i in range(20)])
    assert all(promised_lo <= p < promised_hi for p in [*peer.values(), *api.values()])
    node = load_topology(CITY).node("gw-1")
    assert all(admin_lo <= admin_port(node) < admin_hi for _ in range(40))
