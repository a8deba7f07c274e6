"""``POST /v1/incidents`` on a real node: committed incidents/s and p50/p99 latency with C concurrent clients.

    python -m bench.http_api [--clients 16] [--seconds 10] [--keep]

A real node (``python -m supervisors.cli run``) with a one-member Raft incident log (fsync on: every
proposal is appended durably, every Ready persisted, every apply durable), and the API process
(``python -m supervisors.peer.api``) on a free loopback port, both started here and stopped by PID. C aiohttp
clients each POST new incidents one after the other (a client waits for its 201 before the next) for the
given time. Latency = request sent -> 201 received (the incident is committed and published in the node's
log by then). Afterwards the node's event log is read to check that every acknowledged incident is in
``incidents/committed`` exactly once. Printed with the load average, since the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from actors.eventlog import EventLog
from actors.streams import COMMITTED_INCIDENTS
from supervisors.thespian_env import free_loopback_port

REPO = Path(__file__).resolve().parents[1]


def _incident(iid: str) -> dict[str, Any]:
    return {
        "incident_id": iid,
        "timestamp": time.time(),
        "type": "no2_leak",
        "source_node": "bench",
        "sensor": "s-1",
        "confidence": 0.9,
        "payload": {"value": 400.0, "unit": "ug/m3"},
    }


def _start(tmp: Path) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes], str]:
    port = free_loopback_port()
    tree = {
        "id": "root",
        "children": [{"id": "incident-log", "actor": "actors.raft.replica.RaftReplicaActor", "args": {}}],
    }
    node = {"name": "bench-node", "data_dir": str(tmp / "data"), "api": f"127.0.0.1:{port}", "tree": tree}
    topo = tmp / "topology.yaml"
    topo.write_text(yaml.safe_dump({"nodes": [node]}))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = [sys.executable, "-m", "supervisors.cli", "run", str(topo), "--log-format", "json"]
    with open(tmp / "node.log", "wb") as log:  # the child keeps its own copy of the descriptor
        node_proc = subprocess.Popen(run, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log)
    api = [sys.executable, "-m", "supervisors.peer.api", "--topology", str(topo), "--node", "bench-node"]
    with open(tmp / "api.log", "wb") as log:
        api_proc = subprocess.Popen(api, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log)
    return node_proc, api_proc, f"http://127.0.0.1:{port}"


async def _wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url + "/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit(f"the API at {url} was not ready within {timeout}s")


async def _load(url: str, clients: int, seconds: float) -> tuple[list[float], list[str], int, float]:
    latencies: list[float] = []
    acked: list[str] = []
    errors = 0
    run_id = uuid.uuid4().hex[:8]

    async def client(session: aiohttp.ClientSession, c: int, stop_at: float) -> None:
        nonlocal errors
        i = 0
        while time.monotonic() < stop_at:
            iid = f"bench-{run_id}-{c}-{i}"
            i += 1
            t0 = time.perf_counter()
            async with session.post(url + "/v1/incidents", json=_incident(iid)) as resp:
                await resp.read()
                if resp.status == 201:
                    latencies.append(time.perf_counter() - t0)
                    acked.append(iid)
                else:
                    errors += 1

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        started = time.monotonic()
        await asyncio.gather(*(client(session, c, started + seconds) for c in range(clients)))
        elapsed = time.monotonic() - started
    return latencies, acked, errors, elapsed


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--keep", action="store_true", help="keep the data directory (printed)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="garrison-bench-http-"))
    node_proc, api_proc, url = _start(tmp)
    try:
        asyncio.run(_wait_ready(url))
        asyncio.run(_load(url, args.clients, 1.0))  # warm-up: connections, first election settled
        latencies, acked, errors, elapsed = asyncio.run(_load(url, args.clients, args.seconds))
        load = os.getloadavg()
    finally:
        _stop(api_proc)
        _stop(node_proc)
    log = EventLog(tmp / "data" / "eventlog")
    committed = [r.payload["incident"]["incident_id"] for r in log.read(COMMITTED_INCIDENTS)]
    log.close()
    counts: dict[str, int] = {}
    for iid in committed:
        counts[iid] = counts.get(iid, 0) + 1
    lost = [i for i in acked if counts.get(i, 0) != 1]
    lat = sorted(latencies)
    q = statistics.quantiles(lat, n=100) if len(lat) >= 2 else [float("nan")] * 99
    result = {
        "clients": args.clients,
        "seconds": round(elapsed, 2),
        "committed": len(acked),
        "committed_per_s": round(len(acked) / elapsed, 1),
        "p50_ms": round(q[49] * 1000, 2),
        "p99_ms": round(q[98] * 1000, 2),
        "non_201": errors,
        "acked_not_exactly_once": len(lost),
        "loadavg_1_5_15": [round(x, 2) for x in load],
        "cpus": os.cpu_count(),
    }
    print(f"POST /v1/incidents, {args.clients} concurrent clients, one-member Raft log, fsync on")
    print(
        f"  committed/s   {result['committed_per_s']:>10}   ({result['committed']} in {result['seconds']} s)"
    )
    print(f"  p50 latency   {result['p50_ms']:>10} ms")
    print(f"  p99 latency   {result['p99_ms']:>10} ms")
    print(f"  non-201       {errors:>10}")
    print(f"  acknowledged but not exactly once in the log: {len(lost)}")
    print(f"  load average  {result['loadavg_1_5_15']} on {result['cpus']} CPUs")
    print(json.dumps(result))
    if args.keep:
        print(f"data kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
