"""The node's HTTP API (JSON over aiohttp): propose and read incidents, status, health and metrics.

    POST /v1/incidents          an incident record -> 201 {"index"} once committed; the same incident_id
                                again -> 200 with the original index; 400 names what is wrong with the body;
                                503 + Retry-After only when it was definitely NOT appended (no leader);
                                504 when the outcome is unknown (a retry with the same incident_id is safe)
    GET  /v1/incidents?after=N&limit=L&consistency=local|linearizable
                                committed incidents after index N in log order:
                                {"incidents": [{"index", "incident"}...], "commit_index", "next_after"}
    GET  /v1/status             node, launcher pid, raft, peers, supervision tree, CRDT values, edge backlog
    GET  /livez, /readyz        the process answers / the node is ready (leader known, log caught up)
    GET  /metrics               Prometheus text (this process's registry only; no multiprocess mode)

``make_app(backend)`` is all a host needs: the peer gateway starts it inside its own asyncio loop, and
``python -m supervisors.peer.api --topology FILE --node NAME`` serves it alone with a
:class:`~supervisors.peer.node_backend.NodeBackend` (a node without the gateway). The backend decides what
"committed" means (local Raft replica, or forwarded to the cluster's leader); this module only validates,
maps outcomes to status codes and renders. Why the validation is here and strict: what is accepted is
signed into the replicated log, and every replica must accept the same entries (``actors.raft.entries``).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import math
import signal
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Protocol

import msgspec
from aiohttp import web

from actors.logs import configure_logging, get_logger
from actors.streams import DISPATCH_MARK
from supervisors.peer.metrics import ApiMetrics

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_BODY_BYTES",
    "MAX_LIMIT",
    "Backend",
    "BadIncident",
    "Incident",
    "ProposeOutcome",
    "ReadOutcome",
    "make_app",
    "parse_incident",
]

MAX_BODY_BYTES = 64 * 1024  # an incident is ~500 bytes; the log's own bound per entry is 256 KiB
MAX_ID_BYTES = 200  # incident_id is part of an LMDB key (see actors.raft.entries)
MAX_DEPTH = 16  # nesting of the incident (the log rejects deeper ones: they would never commit)
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
RETRY_AFTER_S = 1

_Name = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class Incident(msgspec.Struct, forbid_unknown_fields=True):
    """The seed incident schema (what the inference actor writes). ``sensor`` may be absent for an
    incident that no single sensor raised; the log stores it as ``""`` (see :func:`parse_incident`)."""

    incident_id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_BYTES, pattern=r"^[^/]+$")]
    timestamp: Annotated[float, msgspec.Meta(ge=0)]  # an int is accepted (and kept)
    type: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    source_node: _Name
    confidence: Annotated[float, msgspec.Meta(ge=0, le=1)]
    payload: dict[str, Any]
    sensor: Annotated[str, msgspec.Meta(max_length=256)] | None = None


class BadIncident(ValueError):
    """The body is not an acceptable incident; the message names the field and what to send instead."""


def parse_incident(body: bytes) -> dict[str, Any]:
    """The incident in a request body, as the plain map the log stores; raises :class:`BadIncident`."""
    if len(body) > MAX_BODY_BYTES:
        raise BadIncident(
            f"body is {len(body)} bytes, more than {MAX_BODY_BYTES}: send one incident per request"
        )
    try:
        # the stdlib parser reads NaN/Infinity, so their rejection below can name the field
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadIncident(f"body is not JSON: {str(exc)[:200]}") from None
    if not isinstance(doc, dict):
        raise BadIncident(f"body is a JSON {type(doc).__name__}, expected an object (one incident)")
    _check_plain(doc, "$", 0)
    try:
        incident = msgspec.convert(doc, Incident, strict=True)
    except msgspec.ValidationError as exc:
        raise BadIncident(f"invalid incident: {exc}") from None
    if incident.type == DISPATCH_MARK:
        raise BadIncident(
            f"invalid incident: `$.type` {DISPATCH_MARK!r} is reserved for the dispatchers' progress marks: "
            "use another type"
        )
    if len(incident.incident_id.encode()) > MAX_ID_BYTES:
        raise BadIncident(f"invalid incident: `$.incident_id` is more than {MAX_ID_BYTES} bytes in UTF-8")
    # the original values (an int timestamp stays an int); absent sensor stored as "": every consumer of
    # the log (the replicas' entry check, the sinks) reads a sensor on each incident
    return {**doc, "sensor": doc.get("sensor") or ""}


def _check_plain(value: object, where: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise BadIncident(f"invalid incident: `{where}` is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, float) and not math.isfinite(value):
        raise BadIncident(f"invalid incident: `{where}` is {value!r}; numbers must be finite")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_plain(item, f"{where}.{key}", depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]", depth + 1)


# -- the backend's contract ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProposeOutcome:
    """``committed`` (201), ``duplicate`` (200: already committed, ``index`` is the original one),
    ``unavailable`` (503: definitely not appended), ``timeout`` (504: unknown, retry is safe)."""

    status: Literal["committed", "duplicate", "unavailable", "timeout"]
    index: int | None = None
    reason: str = ""
    retry_after_s: float = RETRY_AFTER_S


@dataclass(frozen=True, slots=True)
class ReadOutcome:
    """``ok`` or ``unavailable`` (503: a linearizable read could not be confirmed; never stale data)."""

    status: Literal["ok", "unavailable"]
    incidents: list[dict[str, Any]] = field(default_factory=list)
    commit_index: int = 0
    next_after: int | None = None
    reason: str = ""


class Backend(Protocol):
    """What the API needs from its host. ``status`` and ``ready`` may be plain or ``async`` methods; a
    backend may also have ``refresh()`` (plain or async), called before ``status()`` for each status or
    metrics request (NodeBackend asks the node there, so that its ``status()`` stays a plain call)."""

    async def propose(self, incident: dict[str, Any]) -> ProposeOutcome: ...

    async def read(self, after: int, limit: int, linearizable: bool) -> ReadOutcome: ...

    def status(self) -> dict[str, Any] | Awaitable[dict[str, Any]]: ...

    def ready(self) -> tuple[bool, str] | Awaitable[tuple[bool, str]]: ...


async def _value(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result


# -- the app ------------------------------------------------------------------------------------------

_json = msgspec.json.Encoder()


def _answer(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=_json.encode(body), content_type="application/json", headers=headers
    )


def make_app(backend: Backend, metrics: ApiMetrics | None = None) -> web.Application:
    """The API over ``backend`` (see :class:`Backend`). ``metrics``: where to count (a fresh registry of
    this process by default: two apps in one process never share counters)."""
    metrics = metrics or ApiMetrics()
    log = get_logger(component="http_api")
    app = web.Application(client_max_size=MAX_BODY_BYTES + 1)
    app["backend"], app["metrics"] = backend, metrics

    async def post_incident(request: web.Request) -> web.Response:
        started = time.monotonic()
        try:
            if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
                raise BadIncident(
                    f"body is {request.content_length} bytes, more than {MAX_BODY_BYTES}: "
                    "send one incident per request"
                )
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise BadIncident(
                    f"body is more than {MAX_BODY_BYTES} bytes: send one incident per request"
                ) from None
            incident = parse_incident(body)
        except BadIncident as exc:
            metrics.proposal("invalid", time.monotonic() - started)
            log.info("incident_refused", reason=str(exc)[:300])
            return _answer(400, {"error": str(exc)})
        try:
            outcome = await backend.propose(incident)
        except Exception as exc:  # a backend fault: whether it was appended is unknown, so never a 503
            log.error("incident_propose_failed", incident_id=incident["incident_id"], reason=f"{exc!r}"[:500])
            outcome = ProposeOutcome("timeout", reason=f"the node failed handling it ({type(exc).__name__})")
        metrics.proposal(outcome.status, time.monotonic() - started)
        iid = incident["incident_id"]
        if outcome.status == "committed":
            return _answer(201, {"index": outcome.index, "incident_id": iid})
        if outcome.status == "duplicate":
            return _answer(200, {"index": outcome.index, "incident_id": iid, "duplicate": True})
        if outcome.status == "unavailable":
            retry = str(max(1, math.ceil(outcome.retry_after_s)))
            log.info("incident_unavailable", incident_id=iid, reason=outcome.reason)
            return _answer(
                503, {"error": outcome.reason, "incident_id": iid, "appended": False}, {"Retry-After": retry}
            )
        log.warning("incident_outcome_unknown", incident_id=iid, reason=outcome.reason)
        error = f"{outcome.reason}; the outcome is unknown: retry with the same incident_id (it is safe)"
        return _answer(504, {"error": error, "incident_id": iid})

    async def get_incidents(request: web.Request) -> web.Response:
        query = request.query
        try:
            after = _int_param(query, "after", 0, 0, 2**63 - 1)
            limit = _int_param(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        except ValueError as exc:
            return _answer(400, {"error": str(exc)})
        consistency = query.get("consistency", "local")
        if consistency not in ("local", "linearizable"):
            return _answer(400, {"error": f"consistency must be local or linearizable, not {consistency!r}"})
        outcome = await backend.read(after, limit, consistency == "linearizable")
        metrics.read(consistency, outcome.status)
        if outcome.status != "ok":
            headers = {"Retry-After": str(RETRY_AFTER_S)}
            return _answer(503, {"error": outcome.reason, "consistency": consistency}, headers)
        return _answer(
            200,
            {
                "incidents": outcome.incidents,
                "commit_index": outcome.commit_index,
                "next_after": outcome.next_after,
            },
        )

    async def current_status() -> dict[str, Any]:
        refresh = getattr(backend, "refresh", None)  # optional: ask the node before a plain status()
        if refresh is not None:
            await _value(refresh())
        status: dict[str, Any] = await _value(backend.status())
        return status

    async def get_status(request: web.Request) -> web.Response:
        return _answer(200, await current_status())

    async def livez(request: web.Request) -> web.Response:
        return _answer(200, {"live": True})

    async def readyz(request: web.Request) -> web.Response:
        ready, reason = await _value(backend.ready())
        return _answer(200 if ready else 503, {"ready": ready, "reason": reason})

    async def get_metrics(request: web.Request) -> web.Response:
        body, content_type = metrics.render(await current_status())
        return web.Response(body=body, headers={"Content-Type": content_type})

    app.router.add_post("/v1/incidents", post_incident)
    app.router.add_get("/v1/incidents", get_incidents)
    app.router.add_get("/v1/status", get_status)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", get_metrics)
    return app


def _int_param(query: Any, name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {raw[:50]!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, not {value}")
    return value


# -- the runner: the API alone over a running node (before / without the peer gateway) ------------------


def _replica_path(tree: Any, prefix: str = "") -> str | None:
    """The publishing Raft replica's path in a node's tree (the one that takes the node's proposals)."""
    path = f"{prefix}/{tree.id}" if prefix else tree.id
    for child in getattr(tree, "children", ()):
        if hasattr(child, "children"):
            found = _replica_path(child, path)
            if found:
                return found
        elif child.actor == "actors.raft.replica.RaftReplicaActor" and child.args.get("publish", True):
            return f"{path}/{child.id}"
    return None


async def serve(backend: Any, app: web.Application, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve ``app`` on ``host:port`` until ``stop`` is set (then close the backend)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        get_logger(component="http_api").info("http_api_started", host=host, port=port)
        await stop.wait()
    finally:
        await runner.cleanup()
        close = getattr(backend, "close", None)
        if close is not None:
            await _value(close())


def main(argv: list[str] | None = None) -> int:
    from supervisors.peer.node_backend import NodeBackend
    from supervisors.topology import TopologyError, load_topology

    parser = argparse.ArgumentParser(
        prog="python -m supervisors.peer.api",
        description="Serve a running node's HTTP API (its api address).",
    )
    parser.add_argument("--topology", required=True)
    parser.add_argument("--node", default=None)
    parser.add_argument(
        "--replica", default=None, help="path of the publishing Raft replica (default: found)"
    )
    parser.add_argument("--listen", default=None, help="host:port instead of the node's api address")
    parser.add_argument("--log-format", default="json", choices=("json", "console"))
    parser.add_argument("--commit-timeout", type=float, default=10.0, help="s before a POST answers 504")
    parser.add_argument(
        "--leader-cache", type=float, default=0.5, help="s a known leader is trusted without asking again"
    )
    args = parser.parse_args(argv)
    try:
        node = load_topology(args.topology).node(args.node)
    except TopologyError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging(args.log_format, node.name)
    log = get_logger(component="http_api")
    if args.listen:
        from supervisors.topology_cluster import parse_address

        address = parse_address(args.listen)
    elif node.api is not None:
        address = node.api
    else:
        print(f"node {node.name!r} has no api address: add `api: 127.0.0.1:PORT` to it", file=sys.stderr)
        return 2
    replica = args.replica or _replica_path(node.tree)
    if replica is None:
        print(
            f"node {node.name!r} runs no Raft replica with publish: true: the API proposes through one "
            "(add actors.raft.replica.RaftReplicaActor to its tree, or name it with --replica PATH)",
            file=sys.stderr,
        )
        return 2

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        backend = NodeBackend(
            node.data_dir,
            node.name,
            replica,
            commit_timeout_s=args.commit_timeout,
            leader_cache_s=args.leader_cache,
        )
        await backend.start()
        await serve(backend, make_app(backend), address.host, address.port, stop)

    try:
        asyncio.run(run())
    except OSError as exc:
        log.error("http_api_failed", reason=f"{type(exc).__name__}: {exc}")
        return 1
    log.info("http_api_stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
