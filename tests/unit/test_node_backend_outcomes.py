"""What the API answers when no leader is known, over a real event log: a 503 means "definitely not
appended", so it is never said for an incident_id that an earlier request (answered 504) appended and that
may still commit: that one is a 504 again. The Raft replica is stood in for by its status (no leader)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from actors.eventlog import EventLog
from actors.streams import PROPOSED_INCIDENTS
from supervisors.peer.node_backend import EARLIER_ATTEMPT, NodeBackend


def incident(iid: str) -> dict[str, Any]:
    return {
        "incident_id": iid,
        "timestamp": 1.0,
        "type": "gas_leak",
        "source_node": "gw-1",
        "confidence": 0.9,
        "payload": {},
        "sensor": "S1",
    }


class LeaderlessBackend(NodeBackend):
    async def _raft_status(self) -> dict[str, Any] | None:
        self.raft_error = "replica root/incident-log is precandidate"
        return {"role": "precandidate", "leader": None}


def test_no_leader_is_a_503_except_for_an_incident_an_earlier_request_appended(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "eventlog")
    # applied up to seq 1 (the replica's offset); seq 2 was appended by a request that got a 504
    log.append(PROPOSED_INCIDENTS, [incident("applied-before"), incident("earlier-504")])
    log.put_value("offset/raft/gw-1", 1)
    log.close()

    async def scenario() -> tuple[Any, ...]:
        backend = LeaderlessBackend(tmp_path, "gw-1", "root/incident-log", commit_timeout_s=1.0)
        await backend.start()
        try:
            retried = await backend.propose(incident("earlier-504"))
            fresh = await backend.propose(incident("never-seen"))
            assert backend.event_log is not None
            proposed = [r.payload["incident_id"] for r in backend.event_log.read(PROPOSED_INCIDENTS)]
            return retried, fresh, backend.still_proposed("applied-before"), proposed
        finally:
            await backend.close()

    retried, fresh, applied_still_pending, proposed = asyncio.run(scenario())
    assert (retried.status, retried.reason) == (
        "timeout",
        f"no Raft leader known: replica root/incident-log is precandidate; but {EARLIER_ATTEMPT}",
    )
    assert fresh.status == "unavailable" and "no Raft leader" in fresh.reason
    assert not applied_still_pending  # below the replica's offset: done, not waiting
    assert proposed == ["applied-before", "earlier-504"]  # neither answer appended anything
