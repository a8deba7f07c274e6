"""Storage faults on a real node: a corrupt, emptied or full disk is reported at once, named, and never
loses or duplicates an incident silently; the node's files are owner-only."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from actors.eventlog import CorruptRecord, EventLog
from supervisors.identity import check_identity
from tests.small_fs import fill, free_bytes, mounted_tmpfs
from tests.system.nodes import LiveNode, NodeRun, run_node, supervisor, worker, write_topology
from tests.system.test_dispatch import DISPATCHER, commit_incidents

pytestmark = pytest.mark.system

EXIT_START_FAILED = 3


def dispatcher_topology(tmp_path: Path, sink: dict[str, Any], **args: Any) -> Path:
    args = {"sinks": [sink], "poll_interval": 0.02, **args}
    return write_topology(tmp_path, supervisor("root", [worker("dispatch", DISPATCHER, args=args)]))


def incident_ids(path: Path) -> list[str]:
    return [json.loads(line)["incident"]["incident_id"] for line in path.read_text().splitlines()]


def start_failure(run: NodeRun) -> str:
    """The one ``node_start_failed`` reason of a run that must not have started."""
    assert run.code == EXIT_START_FAILED, run.stderr[-3000:]
    assert run.named("node_started") == [], "the node started anyway"
    failed = run.named("node_start_failed")
    assert len(failed) == 1 and failed[0]["exit_code"] == EXIT_START_FAILED, run.stderr[-3000:]
    return str(failed[0]["reason"])


def test_an_unreadable_event_log_fails_the_start_at_once_naming_the_file(tmp_path: Path) -> None:
    data_file = tmp_path / "data" / "eventlog" / "data.mdb"
    data_file.parent.mkdir(parents=True)
    data_file.write_bytes(os.urandom(64 << 10))  # garbage where the log should be
    run = run_node(write_topology(tmp_path, supervisor("root", [worker("w")])), duration=60, timeout=45)
    reason = start_failure(run)
    assert "UnreadableEventLog" in reason and str(data_file) in reason


def test_a_corrupt_record_the_root_reads_at_start_fails_the_start_with_its_reason(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    check_identity(data_dir, "test-node")  # a node that ran before: its identity matches its log
    log = EventLog(data_dir / "eventlog")
    marker = "restart-history-of-the-root-0123456789"
    log.put_value("supervisor/root/history", {"restarts": [], "attempts": {marker: 1}})
    log.close()
    raw = (data_dir / "eventlog" / "data.mdb").read_bytes()
    at = raw.index(marker.encode())
    flipped = raw[:at] + bytes([raw[at] ^ 0x01]) + raw[at + 1 :]
    (data_dir / "eventlog" / "data.mdb").write_bytes(flipped)  # one bit flipped on disk
    log = EventLog(data_dir / "eventlog")
    with pytest.raises(CorruptRecord):  # the fault is really there
        log.get_value("supervisor/root/history")
    log.close()
    run = run_node(write_topology(tmp_path, supervisor("root", [worker("w")])), duration=60, timeout=45)
    reason = start_failure(run)
    assert "CorruptRecord" in reason and "supervisor/root/history" in reason and "data.mdb" in reason
    assert "root supervisor failed to start" in run.named("node_stopped")[0]["reason"]
    assert run.leftover_processes() == []


def test_a_lost_event_log_is_refused_and_reinit_starts_over_without_dropping_new_incidents(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    out = tmp_path / "incidents.jsonl"  # outside data_dir: it survives the data being moved away
    topo = dispatcher_topology(tmp_path, {"kind": "file", "path": str(out)})
    commit_incidents(data_dir, 3)
    node = LiveNode(topo, duration=60)
    node.wait_until(lambda: out.exists() and len(out.read_text().splitlines()) >= 3, 30, "3 lines")
    assert node.finish(stop=True).code == 0
    first_id = node.named("node_identity")[0]["log_id"]

    (data_dir / "eventlog" / "data.mdb").write_bytes(b"")  # the log is emptied behind the node's back
    reason = start_failure(run_node(topo, duration=60, timeout=45))
    assert f"{data_dir / 'eventlog' / 'data.mdb'} is empty" in reason and "--reinit" in reason

    # as the message says: move the old log aside (a log with data is never reinitialised in place)
    os.rename(data_dir / "eventlog", tmp_path / "eventlog.old")
    fresh = run_node(topo, duration=1, timeout=45, extra=["--reinit"])
    assert fresh.code == 0, fresh.stderr[-3000:]
    outcome = fresh.named("node_identity")[0]
    assert outcome["outcome"] == "reinitialised" and outcome["log_id"] != first_id

    log = EventLog(data_dir / "eventlog")  # the fresh log numbers its incidents from 1 again
    new = [{"index": i, "incident": {"incident_id": f"new-{i}", "type": "CO_leak"}} for i in (1, 2)]
    log.append("incidents/committed", new)
    log.close()
    node = LiveNode(topo, duration=60)
    node.wait_until(lambda: len(out.read_text().splitlines()) >= 5, 30, "the 2 new incidents")
    run = node.finish(stop=True)
    assert run.code == 0 and run.named("node_identity", outcome="verified")
    assert incident_ids(out) == ["inc-0001", "inc-0002", "inc-0003", "new-1", "new-2"]
    assert run.named("incident_already_delivered") == []


def test_a_full_disk_under_the_file_sink_delays_incidents_but_writes_each_exactly_once(
    tmp_path: Path,
) -> None:
    with mounted_tmpfs(tmp_path / "small", size="1m") as fs:
        out = fs / "incidents.jsonl"
        filler = fill(fs)
        assert free_bytes(fs) < 64 << 10  # the disk really is full before the node starts
        data_dir = tmp_path / "data"
        incidents = commit_incidents(data_dir, 20)
        big = [  # lines big enough to need pages the full disk no longer has
            {**inc, "incident_id": f"big-{i:04d}", "payload": {"pad": "x" * 6000}}
            for i, inc in enumerate(incidents, 21)
        ]
        log = EventLog(data_dir / "eventlog")
        log.append("incidents/committed", [{"index": i, "incident": inc} for i, inc in enumerate(big, 21)])
        log.close()
        topo = dispatcher_topology(
            tmp_path,
            {"kind": "file", "path": str(out)},
            max_attempts=1000,
            backoff={"base": 0.05, "cap": 0.2},
            breaker={"failure_threshold": 1000, "reset_timeout": 0.1},
        )
        node = LiveNode(topo, duration=90)
        failures = node.wait_for("dispatch_failed", timeout=30, count=3)
        assert all("disk full" in f["reason"] for f in failures), failures
        filler.unlink()  # space is back
        node.wait_until(lambda: len(incident_ids(out)) >= 40, 30, "all 40 incidents in the file")
        run = node.finish(stop=True)
        assert run.code == 0, run.stderr[-3000:]
        expected = [i["incident_id"] for i in incidents + big]
        assert incident_ids(out) == expected  # each exactly once, in order, none lost
        assert run.named("dispatch_dead_lettered") == []


def test_every_file_the_node_writes_is_owner_only(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    commit_incidents(data_dir, 3)
    (data_dir / "incidents.jsonl").write_text("")
    os.chmod(data_dir / "incidents.jsonl", 0o644)  # left readable by an older version
    os.chmod(data_dir, 0o755)
    node = LiveNode(dispatcher_topology(tmp_path, {"kind": "file"}), duration=60)
    node.wait_until(lambda: len(incident_ids(data_dir / "incidents.jsonl")) >= 3, 30, "3 lines")
    assert node.finish(stop=True).code == 0
    found = {data_dir: 0o700}
    for root, dirs, files in os.walk(data_dir):
        for name in dirs:
            found[Path(root, name)] = 0o700
        for name in files:
            found[Path(root, name)] = 0o600
    names = {p.name for p in found}
    assert {"data.mdb", "lock.mdb", "incidents.jsonl", "identity.json", "thespian.log"} <= names, names
    offenders = {
        str(p): oct(stat.S_IMODE(p.stat().st_mode))
        for p, wanted in found.items()
        if stat.S_IMODE(p.stat().st_mode) != wanted
    }
    assert offenders == {}, f"not owner-only (files 0600, dirs 0700): {offenders}"
