"""The node identity check on a real data_dir and a real LMDB event log: a node that had state never
starts silently on a missing, emptied or foreign log."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from actors.eventlog import EventLog
from supervisors.identity import (
    IDENTITY_FILE,
    LOG_ID_KEY,
    NodeStateMismatch,
    check_identity,
    secure_data_dir,
)


def test_first_start_creates_both_witnesses_and_the_next_start_verifies(tmp_path: Path) -> None:
    first, done = check_identity(tmp_path, "edge-1")
    assert done == "created" and first.node == "edge-1" and len(first.log_id) == 32
    on_disk = json.loads((tmp_path / IDENTITY_FILE).read_text())
    assert on_disk == {"node": "edge-1", "log_id": first.log_id, "created_at": first.created_at}
    assert stat.S_IMODE((tmp_path / IDENTITY_FILE).stat().st_mode) == 0o600
    log = EventLog(tmp_path / "eventlog")
    assert log.get_value(LOG_ID_KEY)["log_id"] == first.log_id
    log.close()
    assert check_identity(tmp_path, "edge-1") == (first, "verified")


@pytest.mark.parametrize("damage", ["zero-length", "deleted"])
def test_a_lost_event_log_is_refused_naming_the_file_and_the_way_out(tmp_path: Path, damage: str) -> None:
    check_identity(tmp_path, "edge-1")
    data_file = tmp_path / "eventlog" / "data.mdb"
    if damage == "zero-length":
        data_file.write_bytes(b"")
    else:
        data_file.unlink()
    with pytest.raises(NodeStateMismatch, match=rf"{data_file} is (empty|missing).*--reinit") as refused:
        check_identity(tmp_path, "edge-1")
    assert IDENTITY_FILE in str(refused.value)
    assert not data_file.exists() or data_file.stat().st_size == 0  # the check created nothing


def test_another_nodes_log_is_refused(tmp_path: Path) -> None:
    check_identity(tmp_path / "a", "edge-1")
    check_identity(tmp_path / "b", "edge-1")
    os.replace(tmp_path / "b" / "eventlog", tmp_path / "a" / "eventlog.b")
    os.rename(tmp_path / "a" / "eventlog", tmp_path / "a" / "eventlog.mine")
    os.rename(tmp_path / "a" / "eventlog.b", tmp_path / "a" / "eventlog")
    with pytest.raises(NodeStateMismatch, match="not the node's own event log"):
        check_identity(tmp_path / "a", "edge-1")


def test_reinit_needs_the_old_log_moved_away_and_then_starts_a_new_log(tmp_path: Path) -> None:
    old, _ = check_identity(tmp_path, "edge-1")
    with pytest.raises(NodeStateMismatch, match=r"move .*eventlog aside first"):
        check_identity(tmp_path, "edge-1", reinit=True)
    os.rename(tmp_path / "eventlog", tmp_path / "eventlog.old")
    new, done = check_identity(tmp_path, "edge-1", reinit=True)
    assert done == "reinitialised" and new.log_id != old.log_id
    assert check_identity(tmp_path, "edge-1") == (new, "verified")


def test_a_lost_identity_file_is_restored_from_the_log(tmp_path: Path) -> None:
    first, _ = check_identity(tmp_path, "edge-1")
    (tmp_path / IDENTITY_FILE).unlink()
    assert check_identity(tmp_path, "edge-1") == (first, "restored")
    assert json.loads((tmp_path / IDENTITY_FILE).read_text())["log_id"] == first.log_id
    with pytest.raises(NodeStateMismatch, match="belongs to node 'edge-1', not 'edge-2'"):
        check_identity(tmp_path, "edge-2")


def test_a_log_from_before_identities_is_adopted(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "eventlog")
    log.append("incidents/committed", [{"index": 1}])
    log.close()
    identity, done = check_identity(tmp_path, "edge-1")
    assert done == "adopted"
    assert check_identity(tmp_path, "edge-1") == (identity, "verified")


def test_secure_data_dir_tightens_what_is_already_there(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "keys").mkdir(parents=True)
    (data / "keys").chmod(0o755)
    (data / "thespian.log").write_text("x")
    (data / "thespian.log").chmod(0o644)
    data.chmod(0o755)
    secure_data_dir(data)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (data, data / "keys", data / "thespian.log")}
    assert modes == {"data": 0o700, "keys": 0o700, "thespian.log": 0o600}
