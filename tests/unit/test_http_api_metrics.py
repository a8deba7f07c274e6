"""``/metrics`` from a status map as the node backend and the peer gateway produce it: every named family
is declared even when empty, and the values are the status's, parsed back with prometheus_client's parser."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from supervisors.peer.metrics import FAMILIES, ApiMetrics


def _samples(status: dict[str, Any], metrics: ApiMetrics | None = None) -> dict[tuple[str, tuple], float]:
    body, content_type = (metrics or ApiMetrics()).render(status)
    assert content_type.startswith("text/plain")
    families = list(text_string_to_metric_families(body.decode()))
    assert set(FAMILIES) <= {f.name for f in families}  # declared, whatever the status holds
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples}


def test_an_empty_status_still_declares_every_family() -> None:
    samples = _samples({})
    assert samples[("garrison_proposals_total", (("outcome", "committed"),))] == 0
    assert not any(name.startswith("garrison_raft_") for name, _ in samples)


def test_values_come_from_the_status_of_the_node_and_of_its_gateway() -> None:
    metrics = ApiMetrics()
    metrics.proposal("committed", 0.004)
    metrics.proposal("timeout", 10.0)
    metrics.read("linearizable", "unavailable")
    status = {
        "raft": {"role": "follower", "term": 7, "leader": "gw-2", "commit": 40, "applied": 37},
        "tree": {
            "path": "root",
            "children": [
                {
                    "id": "raft",
                    "path": "root/raft",
                    "status": "running",
                    "restarts_total": 0,
                    "children": [
                        {
                            "id": "gw1",
                            "path": "root/raft/gw1",
                            "status": "restarting",
                            "restarts_total": 5,
                            "restarts_by_reason": {"crash": 1, "lost": 3},  # 1 from before reasons
                            "last_exit": {"kind": "lost"},
                        }
                    ],
                }
            ],
        },
        # the peer links' shape (supervisors.peer.links): rtt in ms, frames per lane
        "peers": {
            "gw-3": {"state": "suspect", "rtt_ms": 12.5, "sent": {"raft": 9}, "received": {"gossip": 2}}
        },
        "gateway": {"gossip": {"sent": 11, "received": 12}},
        "gossip": {"gw-1": 5},
        "dispatch": {"file": {"offset": 30, "dead_letters": 2}},
        "edge_backlog": 6,
        "incidents_committed": 35,
        "crdt": {"gw-1": {"no2": 1.5}},
        "inference_latency_s": {"root/inference": {"0.5": 0.002, "0.99": 0.01}},
        "ingest_to_commit_s": {"0.5": 0.02, "0.99": 0.3},
    }
    s = _samples(status, metrics)
    assert s[("garrison_raft_term", ())] == 7
    assert s[("garrison_raft_apply_lag", ())] == 3
    assert s[("garrison_raft_role", (("role", "follower"),))] == 1
    assert s[("garrison_raft_role", (("role", "leader"),))] == 0
    restarts = {
        k[1][1][1]: v
        for k, v in s.items()
        if k[0] == "garrison_restarts_total" and k[1][0][1] == "root/raft/gw1"
    }
    assert restarts == {
        "crash": 1,
        "lost": 3,
        "unknown": 1,
    }  # each reason its own series, summing to the total
    assert s[("garrison_child_running", (("child", "root/raft/gw1"),))] == 0
    assert s[("garrison_peer_up", (("peer", "gw-3"), ("state", "suspect")))] == 1
    assert s[("garrison_peer_up", (("peer", "gw-3"), ("state", "up")))] == 0
    assert s[("garrison_peer_rtt_seconds", (("peer", "gw-3"),))] == 0.0125
    assert s[("garrison_peer_frames_total", (("direction", "sent"), ("lane", "raft"), ("peer", "gw-3")))] == 9
    assert s[("garrison_gossip_rounds_total", (("direction", "received"),))] == 12
    assert s[("garrison_gossip_messages_total", (("replica", "gw-1"),))] == 5
    assert s[("garrison_dispatch_dead_letters_total", (("sink", "file"),))] == 2
    assert s[("garrison_edge_backlog", ())] == 6
    assert s[("garrison_crdt_exposure", (("pollutant", "no2"), ("replica", "gw-1")))] == 1.5
    assert (
        s[("garrison_inference_latency_seconds", (("actor", "root/inference"), ("quantile", "0.5")))] == 0.002
    )
    assert (
        s[("garrison_inference_latency_seconds", (("actor", "root/inference"), ("quantile", "0.99")))] == 0.01
    )
    assert s[("garrison_ingest_to_commit_seconds", (("quantile", "0.99"),))] == 0.3
    assert s[("garrison_proposals_total", (("outcome", "timeout"),))] == 1
    assert s[("garrison_reads_total", (("consistency", "linearizable"), ("outcome", "unavailable")))] == 1
    assert s[("garrison_propose_latency_seconds_count", (("outcome", "committed"),))] == 1
