"""The node's HTTP API (``supervisors.peer.api``) served inside the gateway's asyncio loop.

The API's backend is the node backend (``supervisors.peer.node_backend.NodeBackend``: proposals through
the local ``incidents/proposed`` stream, reads from ``incidents/committed`` and the replica), with the
gateway's view added to ``status()``: peer links (state, RTT, drops), gossip counts and the edge backlog.
The node backend is the gateway's own (``gateway.backend``), so a follower's linearizable read asks the
leader's gateway for the ReadIndex over the peer link. On an edge (no log) a proposal goes through
``supervisors.peer.edge_api.EdgeProposer``: forwarded, then its committed index asked of a member.
"""

from __future__ import annotations

import inspect
from typing import Any

from actors.logs import get_logger


class GatewayBackend:
    """The API backend of a node that runs a peer gateway: the node backend plus the gateway's status."""

    def __init__(self, gateway: Any, inner: Any) -> None:
        self.gateway = gateway
        self.inner = inner
        self.edge = None
        if gateway.view.role == "edge":
            from supervisors.peer.edge_api import EdgeProposer

            self.edge = EdgeProposer(gateway, getattr(inner, "commit_timeout_s", 10.0))

    async def propose(self, incident: Any) -> Any:
        if self.edge is not None:
            return await self.edge.propose(incident)
        # a late heartbeat (suspect) is not a cut; itself counts when it is a member
        minority = self._short_of_majority(("up", "suspect"), 1 if self.gateway.is_member else 0)
        if minority:
            # on a minority side nothing commits: refuse before appending, so the answer can be a 503
            # (appended, it would wait durably and maybe commit after the heal: only a 504 is honest then,
            # which is what it was until the replica itself forgot its leader)
            reason = f"{minority} (minority side): not appended"
            not_appended = getattr(self.inner, "not_appended", None)
            if not_appended is None:  # a backend that appends nowhere else
                from supervisors.peer.api import ProposeOutcome

                return ProposeOutcome("unavailable", reason=reason)
            return not_appended(incident["incident_id"], reason)
        return await self.inner.propose(incident)

    def _short_of_majority(self, states: tuple[str, ...], own: int) -> str:
        """Why the links in ``states`` (with ``own``: 1 to count this node) reach no majority of the Raft
        members, or ""."""
        gw = self.gateway
        links = gw.links.status()
        up = [m for m in gw.members if links.get(m, {}).get("state") in states]
        majority = len(gw.view.raft_members) // 2 + 1
        if len(up) + own >= majority:
            return ""
        return f"links up to {len(up)} of the other Raft members; a majority needs {majority - 1}"

    async def read(self, after: int, limit: int, linearizable: bool) -> Any:
        if linearizable and self.edge is not None:
            from supervisors.peer.api import ReadOutcome

            members = ", ".join(self.gateway.members) or "none"
            return ReadOutcome(
                "unavailable",
                reason=f"an edge node keeps no incident log: read linearizably from a gateway, a Raft member "
                f"({members})",
            )
        return await self.inner.read(after, limit, linearizable)

    async def ready(self) -> tuple[bool, str]:
        """Ready = peers joined and the log caught up. A gateway needs links to enough Raft members for a
        majority (with itself) and its replica's own readiness; an edge, which has no replica, needs a
        link to at least one Raft member (where its detections go)."""
        gw = self.gateway
        links = gw.links.status()
        up = [m for m in gw.members if links.get(m, {}).get("state") == "up"]
        if gw.view.role == "edge":
            if not up:
                return False, f"no link up to a Raft member ({', '.join(gw.members)}); detections wait"
            return True, f"forwarding to Raft members {', '.join(up)}"
        short = self._short_of_majority(("up",), 1)
        if short:
            return False, short
        ok, why = await _value(self.inner.ready())
        return bool(ok), str(why)

    async def status(self) -> dict[str, Any]:
        out = dict(await _value(self.inner.status()))
        gw = self.gateway.status()
        out["peers"] = gw["peers"]
        out["gateway"] = {k: v for k, v in gw.items() if k != "peers"}
        if "edge" in gw:
            out["edge_backlog"] = gw["edge"]["backlog"]
        return out

    def __getattr__(self, name: str) -> Any:  # anything else the API needs comes from the node backend
        return getattr(self.inner, name)


async def _value(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result


class ApiRunner:
    """What ``start_api`` started: ``await cleanup()`` stops the server and closes the backend if it is
    not the gateway's (the gateway closes its own after the API stopped)."""

    def __init__(self, runner: Any, backend: Any) -> None:
        self.runner, self.backend = runner, backend

    async def cleanup(self) -> None:
        await self.runner.cleanup()
        if self.backend.inner is getattr(self.backend.gateway, "backend", None):
            return
        close = getattr(self.backend.inner, "close", None)
        if close is not None:
            await _value(close())


async def start_api(gateway: Any, topology: str | None) -> ApiRunner | None:
    """Start the API on the node's ``api`` address (None: the node has none, or the API is not there)."""
    from supervisors.topology import load_topology

    log = get_logger(component="peer_gateway")
    node = load_topology(topology).node(gateway.node)
    if node.api is None:
        return None
    try:
        from aiohttp import web

        from supervisors.peer.api import _replica_path, make_app
        from supervisors.peer.node_backend import NodeBackend
    except ImportError as exc:
        log.warning("peer_api_unavailable", reason=f"{type(exc).__name__}: {exc}")
        return None
    inner = getattr(gateway, "backend", None)
    if inner is None:  # a host without its own backend (the gateway opens one before the API starts)
        # an edge node has no replica: its proposals are forwarded from incidents/proposed by the gateway
        replica = _replica_path(node.tree) or (None if gateway.view.role == "edge" else "root/incident-log")
        inner = NodeBackend(gateway.data_dir, gateway.node, replica)
        await inner.start()
    backend = GatewayBackend(gateway, inner)
    runner = web.AppRunner(make_app(backend), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, node.api.host, node.api.port, reuse_address=True).start()
    log.info("peer_api_listening", address=str(node.api))
    return ApiRunner(runner, backend)
