"""``free_loopback_ports(n)``: n distinct ports, each free to bind on loopback when drawn (two separate draws
of ``free_loopback_port`` once gave a test node its API on its own peer port)."""

from __future__ import annotations

import socket
from pathlib import Path

from supervisors import thespian_env
from supervisors.node import admin_port
from supervisors.thespian_env import LOOPBACK, free_loopback_ports, free_peer_and_api_ports
from supervisors.topology import load_topology

CITY = Path(__file__).resolve().parents[2] / "config" / "city.yaml"


def test_the_ports_are_distinct_even_when_draws_repeat(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    draws = iter([40001, 40001, 40002, 40001, 40003])  # what two independent draws can do
    monkeypatch.setattr(thespian_env, "free_loopback_port", lambda: next(draws))
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
    monkeypatch.setattr(thespian_env, "free_loopback_port", lambda: next(draws))
    peer, api = free_peer_and_api_ports(["a", "b"])
    assert peer == {"a": 40001, "b": 40002} and api == {"a": 40003, "b": 40004}


def test_a_node_never_takes_a_port_of_the_topology_for_its_admin(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # gw-2's peer port and edge-2's API port are free while those nodes are down: a draw can return them
    draws = iter([7102, 8112, 7101, 25001])
    monkeypatch.setattr(thespian_env, "free_loopback_port", lambda: next(draws))
    assert admin_port(load_topology(CITY).node("gw-1")) == 25001
