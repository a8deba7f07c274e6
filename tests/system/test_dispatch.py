"""The dispatcher on a real node: exactly once into the file across SIGKILLs; webhook retries,
Idempotency-Key, circuit breaker, dead letters and their replay."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from actors.eventlog import EventLog
from actors.streams import COMMITTED_INCIDENTS
from supervisors.deadletters import list_dead_letters, replay_dead_letters
from tests.system.nodes import LiveNode, supervisor, worker, write_topology

pytestmark = pytest.mark.system

DISPATCHER = "actors.dispatch.actor.DispatcherActor"


def commit_incidents(data_dir: Path, count: int) -> list[dict[str, Any]]:
    """Append ``count`` committed incidents to the node's event log before the node starts."""
    incidents = [
        {
            "incident_id": f"inc-{i:04d}",
            "timestamp": 1_700_000_000.0 + i,
            "type": "NO2_leak",
            "source_node": "test-node",
            "sensor": "s1",
            "confidence": 0.97,
            "payload": {"window_end": i},
        }
        for i in range(1, count + 1)
    ]
    log = EventLog(data_dir / "eventlog")
    log.append(COMMITTED_INCIDENTS, [{"index": i, "incident": inc} for i, inc in enumerate(incidents, 1)])
    log.close()
    return incidents


def file_indexes(path: Path) -> list[int]:
    if not path.exists():
        return []
    return [json.loads(line)["index"] for line in path.read_text().splitlines() if line.endswith("}")]


def kill_after_more_lines(path: Path, more: int, pid: int, timeout: float) -> int:
    """SIGKILL ``pid`` once ``path`` grew by about ``more`` lines; returns the lines then. A woken sink
    writes thousands of lines a second: watch the size (one stat) in a tight loop, not the parsed file."""
    before = path.read_bytes() if path.exists() else b""
    per_line = 200  # bytes, about; refined from the file when it has lines
    if before.count(b"\n"):
        per_line = len(before) // before.count(b"\n")
    target = len(before) + more * per_line
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_size >= target:
                os.kill(pid, signal.SIGKILL)
                return path.read_bytes().count(b"\n")
        time.sleep(0.0002)
    raise AssertionError(f"{path} did not grow by {more} lines within {timeout}s")


def test_file_sink_gets_each_incident_exactly_once_across_sigkills(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    total = 1500  # enough work to be killed twice in the middle of it
    commit_incidents(data_dir, total)
    out = data_dir / "incidents.jsonl"
    args = {"sinks": [{"kind": "file"}], "batch": 3}
    topo = write_topology(
        tmp_path, supervisor("root", [worker("dispatch", DISPATCHER, args=args)], intensity=5)
    )
    node = LiveNode(topo, duration=60)
    for kills in range(2):
        starts = node.wait_until(  # a woken dispatcher may write lines before its start is logged
            lambda: (
                node.named("child_started", child="dispatch")
                + node.named("child_restarted", child="dispatch")
            ),
            20,
            "the dispatcher's start",
        )
        written = kill_after_more_lines(out, 50, starts[-1]["pid"], timeout=20)
        assert written < total, f"the kill came after the last delivery ({written} lines): it proves nothing"
        restarted = kills + 1
        node.wait_until(
            lambda r=restarted: len(node.named("child_restarted", child="dispatch")) >= r, 10, "a restart"
        )
    node.wait_until(lambda: len(file_indexes(out)) >= total, 60, "all incidents in the file")
    run = node.finish(stop=True)
    assert run.code == 0, run.stderr[-3000:]
    assert len(run.named("child_lost", child="dispatch")) == 2
    assert file_indexes(out) == list(range(1, total + 1))  # each exactly once, in order
    ids = [json.loads(line)["incident"]["incident_id"] for line in out.read_text().splitlines()]
    assert ids == [f"inc-{i:04d}" for i in range(1, total + 1)]
    assert run.leftover_processes() == []


class Endpoints(BaseHTTPRequestHandler):
    """/flaky fails its first ``flaky_failures`` requests with 503; /dead answers ``dead_status``."""

    flaky_failures = 0
    dead_status = 500
    requests: list[tuple[str, str | None, dict[str, Any], int]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        with cls.lock:
            if self.path == "/flaky":
                status = 503 if cls.flaky_failures > 0 else 200
                cls.flaky_failures -= 1
            else:
                status = cls.dead_status
            cls.requests.append((self.path, self.headers.get("Idempotency-Key"), body, status))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass

    @classmethod
    def seen(cls, path: str, status: int | None = None) -> list[tuple[str | None, dict[str, Any]]]:
        with cls.lock:
            return [(k, b) for p, k, b, s in cls.requests if p == path and (status is None or s == status)]


@pytest.fixture
def endpoints() -> Iterator[tuple[str, type[Endpoints]]]:
    handler = type("Handler", (Endpoints,), {"requests": [], "flaky_failures": 2, "dead_status": 500})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    httpd.shutdown()
    httpd.server_close()


def test_webhook_retries_breaker_dead_letters_and_replay(tmp_path: Path, endpoints) -> None:
    base, server = endpoints
    data_dir = tmp_path / "data"
    incidents = commit_incidents(data_dir, 3)
    args = {
        "sinks": [
            {"kind": "webhook", "name": "flaky", "url": f"{base}/flaky", "timeout": 2},
            {"kind": "webhook", "name": "dead", "url": f"{base}/dead", "timeout": 2},
        ],
        "poll_interval": 0.02,
        "max_attempts": 4,
        "backoff": {"base": 0.05, "cap": 0.2, "jitter": 0.5},
        "breaker": {"failure_threshold": 3, "reset_timeout": 0.3},
        "seed": 1,
    }
    topo = write_topology(tmp_path, supervisor("root", [worker("dispatch", DISPATCHER, args=args)]))
    node = LiveNode(topo, duration=30)
    node.wait_until(lambda: len(node.named("dispatch_dead_lettered")) >= 3, 20, "3 dead letters")
    node.wait_until(lambda: len(node.named("incident_dispatched")) >= 3, 10, "3 dispatched")
    run = node.finish(stop=True)
    assert run.code == 0, run.stderr[-3000:]

    # flaky: two 503s, then every incident arrives, each request keyed by its incident id
    flaky_ok = server.seen("/flaky", 200)
    assert [b["incident"]["incident_id"] for _, b in flaky_ok] == [i["incident_id"] for i in incidents]
    assert all(key == body["incident"]["incident_id"] for key, body in server.seen("/flaky"))
    failed = run.named("dispatch_failed", sink="flaky")
    assert [(e["index"], e["attempt"]) for e in failed] == [(1, 1), (1, 2)]
    assert all(0.025 <= e["retry_in_s"] <= 0.2 for e in failed)
    assert run.named("incident_dispatched", sink="flaky", index=1)[0]["attempts"] == 3
    assert not run.named("dispatch_dead_lettered", sink="flaky")

    # dead: 4 attempts per incident, the breaker opens, every incident ends as a dead letter
    assert len(server.seen("/dead")) == 12
    assert all(key == body["incident"]["incident_id"] for key, body in server.seen("/dead"))
    assert run.named("circuit_opened", sink="dead") and run.named("circuit_half_open", sink="dead")
    dead = list_dead_letters(data_dir, "dispatch/dead")
    assert [(d["seq"], d["record"]["index"], d["record"]["attempts"]) for d in dead] == [
        (1, 1, 4),
        (2, 2, 4),
        (3, 3, 4),
    ]
    assert all(d["reason"] == f"POST {base}/dead: HTTP 500" and d["replayed"] is None for d in dead)
    assert len(run.named("dispatch_dead_lettered", sink="dead")) == 3
    assert [d["component"] for d in list_dead_letters(data_dir)] == ["dispatch/dead"] * 3

    # the endpoint is fixed: replay once (a second replay finds nothing), the next run delivers them
    server.dead_status = 200
    assert replay_dead_letters(data_dir, "dispatch/dead") == [1, 2, 3]
    assert replay_dead_letters(data_dir, "dispatch/dead") == []
    assert all(d["replayed"] for d in list_dead_letters(data_dir, "dispatch/dead"))
    node = LiveNode(topo, duration=30)
    node.wait_until(
        lambda: len(node.named("incident_dispatched", sink="dead")) >= 3, 20, "3 replays delivered"
    )
    rerun = node.finish(stop=True)
    assert rerun.code == 0, rerun.stderr[-3000:]
    assert not rerun.named("incident_dispatched", sink="flaky")
    replayed = server.seen("/dead", 200)
    assert [(k, b["index"], b["replay"]) for k, b in replayed] == [
        ("inc-0001", 1, 1),
        ("inc-0002", 2, 2),
        ("inc-0003", 3, 3),
    ]
    assert len(server.seen("/flaky", 200)) == 3  # its offset survived the restart: nothing sent twice
