"""Prometheus metrics of a node, rendered by the HTTP API's ``GET /metrics`` (text format).

Two kinds, in one registry owned by this process (never the global one, never multiprocess mode):
- what this process counts itself: proposals by outcome and their latency, reads by consistency/outcome;
- what the node IS, read at scrape time from the backend's status (its event log, the Raft replica's
  status, the supervision tree through the control socket, the peers' view): a custom collector turns
  that one status map into gauges and counters, so a scrape is a consistent picture of one moment.

Names are stable (dashboards and alerts depend on them); a family with nothing to show (no peers yet, no
inference latency recorded) is still declared, with no samples.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

__all__ = ["FAMILIES", "ApiMetrics", "NodeCollector"]

# every family /metrics always declares (a test checks them); values come from the status map
FAMILIES = (
    "garrison_restarts",
    "garrison_child_running",
    "garrison_raft_term",
    "garrison_raft_commit_index",
    "garrison_raft_applied_index",
    "garrison_raft_apply_lag",
    "garrison_raft_role",
    "garrison_incidents_committed",
    "garrison_proposals",
    "garrison_propose_latency_seconds",
    "garrison_reads",
    "garrison_peer_up",
    "garrison_peer_rtt_seconds",
    "garrison_peer_frames",
    "garrison_gossip_rounds",
    "garrison_gossip_messages",
    "garrison_inference_latency_seconds",
    "garrison_ingest_to_commit_seconds",
    "garrison_dispatch_delivered",
    "garrison_dispatch_dead_letters",
    "garrison_edge_backlog",
    "garrison_crdt_exposure",
)

PEER_STATES = ("up", "suspect", "down")


class NodeCollector(Collector):
    """Families derived from the latest status map (set by :meth:`ApiMetrics.render` before each scrape)."""

    def __init__(self) -> None:
        self.status: dict[str, Any] = {}

    def collect(self) -> Iterator[Metric]:
        s = self.status
        yield from _tree_families(s.get("tree"))
        yield from _raft_families(s.get("raft") or {})
        committed = GaugeMetricFamily(
            "garrison_incidents_committed", "Incidents in the node's committed stream (the log's length)"
        )
        if isinstance(s.get("incidents_committed"), int):
            committed.add_metric([], s["incidents_committed"])
        yield committed
        yield from _peer_families(s.get("peers") or {})
        yield from _gossip_families(s.get("gateway") or {})
        gossip = CounterMetricFamily(
            "garrison_gossip_messages",
            "Gossip messages delivered to each local CRDT replica",
            labels=["replica"],
        )
        for replica, count in sorted((s.get("gossip") or {}).items()):
            gossip.add_metric([replica], count)
        yield gossip
        latency = GaugeMetricFamily(
            "garrison_inference_latency_seconds",
            "Seconds one batch of readings takes through features, model and episodes, recent batches of each "
            "inference actor, by quantile",
            labels=["actor", "quantile"],
        )
        for actor, by_quantile in sorted((s.get("inference_latency_s") or {}).items()):
            for quantile, seconds in sorted(by_quantile.items()):
                latency.add_metric([actor, str(quantile)], seconds)
        yield latency
        path = GaugeMetricFamily(
            "garrison_ingest_to_commit_seconds",
            "Reading ingested -> its incident seen committed (inference + Raft), recent incidents, by quantile",
            labels=["quantile"],
        )
        for quantile, seconds in sorted((s.get("ingest_to_commit_s") or {}).items()):
            path.add_metric([str(quantile)], seconds)
        yield path
        delivered = CounterMetricFamily(
            "garrison_dispatch_delivered",
            "Committed incidents each sink has passed (delivered or dead-lettered): its offset",
            labels=["sink"],
        )
        dead = CounterMetricFamily(
            "garrison_dispatch_dead_letters", "Incidents a sink gave up on (dead letters)", labels=["sink"]
        )
        for sink, row in sorted((s.get("dispatch") or {}).items()):
            delivered.add_metric([sink], row.get("offset", 0))
            dead.add_metric([sink], row.get("dead_letters", 0))
        yield delivered
        yield dead
        backlog = GaugeMetricFamily(
            "garrison_edge_backlog",
            "Proposed incidents this node has not yet seen committed (waiting durably)",
        )
        if isinstance(s.get("edge_backlog"), int):
            backlog.add_metric([], s["edge_backlog"])
        yield backlog
        exposure = GaugeMetricFamily(
            "garrison_crdt_exposure", "CRDT exposure counter values", labels=["replica", "pollutant"]
        )
        for replica, values in sorted((s.get("crdt") or {}).items()):
            for pollutant, value in sorted(values.items()):
                exposure.add_metric([replica, pollutant], value)
        yield exposure


def _tree_families(tree: dict[str, Any] | None) -> Iterator[Metric]:
    restarts = CounterMetricFamily(
        "garrison_restarts",
        "Lifetime restarts of each child by the exit that caused them (crash, lost, ...; none: never "
        "restarted; unknown: counted before the node recorded the reason)",
        labels=["child", "reason"],
    )
    running = GaugeMetricFamily("garrison_child_running", "1 when the child runs", labels=["child"])
    for row in _children(tree):
        total = int(row.get("restarts_total") or 0)
        by_reason = {str(k): int(v) for k, v in (row.get("restarts_by_reason") or {}).items()}
        if total > sum(by_reason.values()):
            by_reason["unknown"] = total - sum(by_reason.values())
        for reason, count in sorted(by_reason.items()) or [("none", 0)]:
            restarts.add_metric([row["path"], reason], count)
        running.add_metric([row["path"]], 1 if row.get("status") == "running" else 0)
    yield restarts
    yield running


def _children(tree: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
    for row in (tree or {}).get("children", ()):
        if isinstance(row, dict) and isinstance(row.get("path"), str):
            yield row
            yield from _children(row)


def _raft_families(raft: dict[str, Any]) -> Iterator[Metric]:
    fields = {
        "garrison_raft_term": ("term", "Current Raft term of the node's replica"),
        "garrison_raft_commit_index": ("commit", "Highest log index known committed"),
        "garrison_raft_applied_index": ("applied", "Highest log index applied to the incident state machine"),
    }
    for name, (key, doc) in fields.items():
        family = GaugeMetricFamily(name, doc)
        if isinstance(raft.get(key), int):
            family.add_metric([], raft[key])
        yield family
    lag = GaugeMetricFamily("garrison_raft_apply_lag", "commit - applied: entries committed but not applied")
    if isinstance(raft.get("commit"), int) and isinstance(raft.get("applied"), int):
        lag.add_metric([], raft["commit"] - raft["applied"])
    yield lag
    role = GaugeMetricFamily("garrison_raft_role", "1 for the replica's current role", labels=["role"])
    if raft.get("role"):
        for r in ("leader", "follower", "candidate", "pre_candidate"):
            role.add_metric([r], 1 if raft["role"] == r else 0)
    yield role


def _peer_families(peers: dict[str, Any]) -> Iterator[Metric]:
    up = GaugeMetricFamily("garrison_peer_up", "1 for each peer's current state", labels=["peer", "state"])
    rtt = GaugeMetricFamily("garrison_peer_rtt_seconds", "Heartbeat round trip to each peer", labels=["peer"])
    for peer, row in sorted(peers.items()):
        for state in PEER_STATES:
            up.add_metric([peer, state], 1 if row.get("state") == state else 0)
        if isinstance(row.get("rtt_ms"), int | float):  # the peer links' unit
            rtt.add_metric([peer], row["rtt_ms"] / 1000)
        elif isinstance(row.get("rtt_s"), int | float):
            rtt.add_metric([peer], row["rtt_s"])
    yield up
    yield rtt
    frames = CounterMetricFamily(
        "garrison_peer_frames",
        "Frames over each peer link by lane and direction",
        labels=["peer", "lane", "direction"],
    )
    for peer, row in sorted(peers.items()):
        for direction in ("sent", "received"):
            counts = row.get(direction)
            if isinstance(counts, dict):
                for lane, count in sorted(counts.items()):
                    if isinstance(count, int):
                        frames.add_metric([peer, str(lane), direction], count)
    yield frames


def _gossip_families(gateway: dict[str, Any]) -> Iterator[Metric]:
    frames = CounterMetricFamily(
        "garrison_gossip_rounds",
        "Gossip deltas the peer gateway sent to / received from other nodes",
        labels=["direction"],
    )
    gossip = gateway.get("gossip")
    if isinstance(gossip, dict):
        for direction in ("sent", "received"):
            if isinstance(gossip.get(direction), int):
                frames.add_metric([direction], gossip[direction])
    yield frames


class ApiMetrics:
    """The API process's registry: its own counters plus the node's status at scrape time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.proposals = Counter(
            "garrison_proposals",
            "POST /v1/incidents by outcome (committed, duplicate, invalid, unavailable, timeout)",
            ["outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "garrison_propose_latency_seconds",
            "POST /v1/incidents: from the request to its answer",
            ["outcome"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.reads = Counter(
            "garrison_reads",
            "GET /v1/incidents by consistency and outcome",
            ["consistency", "outcome"],
            registry=self.registry,
        )
        for outcome in ("committed", "duplicate", "invalid", "unavailable", "timeout"):
            self.proposals.labels(outcome)  # declared at 0: a rate() needs the series before the first event
        self.node = NodeCollector()
        self.registry.register(self.node)

    def proposal(self, outcome: str, seconds: float) -> None:
        self.proposals.labels(outcome).inc()
        self.latency.labels(outcome).observe(seconds)

    def read(self, consistency: str, outcome: str) -> None:
        self.reads.labels(consistency, outcome).inc()

    def render(self, status: dict[str, Any]) -> tuple[bytes, str]:
        """The text exposition of everything, with the node's families taken from ``status``."""
        self.node.status = status
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
