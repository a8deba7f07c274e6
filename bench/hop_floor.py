"""The floor of issue 9's process shape: the fastest a serial commit could be with nothing but its hops and
its durable writes, next to PySyncObj's whole serial commit in the same run.

    python -m bench.hop_floor [--ops N] [--skip-pysyncobj]

The shape the issue prescribes puts a peer gateway process between each replica and the network, so the
shortest commit a leader can see is six process hops and one durable follower write:

    leader replica -unix-> leader gateway -mTLS/TCP-> follower gateway -unix-> follower replica
    (LMDB put of the entry, durable commit) -unix-> follower gateway -mTLS-> leader gateway -unix-> leader

Here every process is the least a relay can be: blocking sockets, a ``select`` loop, no asyncio, no Raft, no
msgpack, no signature, one 600-byte frame in flight. The leader is this process; no client hop is counted
(garrison's measured commit has two more: the client's append and the publish it waits for). Cases:

- ``hops``: the follower answers at once; ``hops+fsync``: it commits the entry to LMDB first (sync on, as
  garrison's replicas do). Whatever an implementation of the shape does, its serial commit cannot beat
  ``hops+fsync``.
- ``asyncio hops`` (``+fsync``): the two gateways relay on asyncio streams, as the issue prescribes for the
  peer links (and ``uvloop ...`` where uvloop is installed: it is not a garrison dependency).
- ``asyncio hops+2 fsync``: the leader also commits the entry durably, after sending it and before reading
  the ack, so both writes run at once on the disk they share, as an etcd-raft leader persists in parallel
  with replication. A Raft leader counts itself in the quorum only with its entry durable, so a real commit
  has this write too.
- ``fsync``: the LMDB commit alone, in this process, back to back and after 1 ms of idling (a follower of a
  serial client idles between commits: that is why the commit costs more inside the chain); ``sign``: one Ed25519 signature of the entry, which
  the issue's signed log needs before the entry leaves the proposer (its check could wait for the apply).

The last lines compare with PySyncObj's best serial p50 (3 processes, no fsync, two hops) in the same run:
the bare floor, and the floor as prescribed (``asyncio hops+2 fsync`` + ``sign``), which still has no Raft
work, no encoding and no client hop in it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lmdb

from supervisors.certs import ensure_cluster_certs, node_files
from supervisors.peer.tls import client_context, server_context

_LEN = struct.Struct(">I")
ENTRY_BYTES = 600  # about one signed incident entry
ACK = b"ack"
START_WAIT_S = 20.0


def _read_exact(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError("peer closed")
        out += chunk
    return bytes(out)


def read_frame(sock: socket.socket) -> bytes:
    (n,) = _LEN.unpack(_read_exact(sock, _LEN.size))
    return _read_exact(sock, n)


def write_frame(sock: socket.socket, body: bytes) -> None:
    sock.sendall(_LEN.pack(len(body)) + body)


def _unix_listener(path: Path) -> socket.socket:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(1)
    return srv


def _unix_dial(path: Path) -> socket.socket:
    deadline = time.monotonic() + START_WAIT_S
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(str(path))
            return s
        except OSError:
            s.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _tcp_dial(port: int, ctx: ssl.SSLContext, name: str) -> ssl.SSLSocket:
    deadline = time.monotonic() + START_WAIT_S
    while True:
        try:
            raw = socket.create_connection(("127.0.0.1", port))
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
            continue
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return ctx.wrap_socket(raw, server_hostname=name)


def relay(a: socket.socket, b: socket.socket) -> None:
    """Forward whole frames both ways until either side closes (a TLS socket may hold decrypted bytes that
    ``select`` cannot see: drain ``pending()`` first)."""
    other = {a.fileno(): (a, b), b.fileno(): (b, a)}
    while True:
        ready = [s for s in (a, b) if isinstance(s, ssl.SSLSocket) and s.pending()]
        if not ready:
            fds, _, _ = select.select([a, b], [], [])
            ready = list(fds)
        for s in ready:
            src, dst = other[s.fileno()]
            try:
                body = read_frame(src)
            except (EOFError, OSError):
                return
            write_frame(dst, body)


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    while True:
        head = await src.readexactly(_LEN.size)
        body = await src.readexactly(_LEN.unpack(head)[0])
        dst.write(head + body)
        await dst.drain()


async def _relay_async(a: tuple[Any, Any], b: tuple[Any, Any]) -> None:
    """The same relay on asyncio streams, as garrison's gateway process runs its links."""
    done, pending = await asyncio.wait(
        [asyncio.ensure_future(_pump(a[0], b[1])), asyncio.ensure_future(_pump(b[0], a[1]))],
        return_when=asyncio.FIRST_COMPLETED,
    )
    for task in pending:
        task.cancel()  # its side is closing too: without this asyncio prints its end as an unread error
    for task in done:
        task.exception()  # closed by the bench: nothing to report


async def _gateway_async(role: str, workdir: Path, port: int) -> None:
    certs = workdir / "certs"
    ready = asyncio.get_running_loop().create_future()
    if role == "follower-gateway":
        files = node_files(certs, "gw-2")

        async def on_peer(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            inner = await asyncio.open_unix_connection(str(workdir / "f.sock"))
            await _relay_async((r, w), inner)
            ready.set_result(None)

        await asyncio.start_server(
            on_peer, "127.0.0.1", port, ssl=server_context(files.ca, files.cert, files.key)
        )
    else:
        files = node_files(certs, "gw-1")

        async def on_replica(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            ctx = client_context(files.ca, files.cert, files.key)
            peer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="gw-2.garrison")
            await _relay_async((r, w), peer)
            ready.set_result(None)

        await asyncio.start_unix_server(on_replica, str(workdir / "l.sock"))
    print("ready", flush=True)
    await ready


def role_main(role: str, workdir: Path, port: int, disk: bool, loop: str = "blocking") -> None:
    if loop != "blocking" and role != "follower":
        if loop == "uvloop":
            import uvloop

            uvloop.run(_gateway_async(role, workdir, port))
        else:
            asyncio.run(_gateway_async(role, workdir, port))
        return
    certs = workdir / "certs"
    if role == "follower":  # the follower replica: durable write, then ack
        srv = _unix_listener(workdir / "f.sock")
        print("ready", flush=True)
        conn, _ = srv.accept()
        env = lmdb.open(str(workdir / "follower.lmdb"), map_size=1 << 30) if disk else None  # sync on
        seq = 0
        while True:
            try:
                body = read_frame(conn)
            except EOFError:
                return
            if env is not None:
                seq += 1
                with env.begin(write=True) as txn:
                    txn.put(seq.to_bytes(8, "big"), body)
            write_frame(conn, ACK)
    elif role == "follower-gateway":  # TLS from the leader's gateway <-> unix to the follower replica
        files = node_files(certs, "gw-2")
        ctx = server_context(files.ca, files.cert, files.key)
        srv = socket.create_server(("127.0.0.1", port))
        print("ready", flush=True)
        raw, _ = srv.accept()
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls = ctx.wrap_socket(raw, server_side=True)
        relay(tls, _unix_dial(workdir / "f.sock"))
    elif role == "leader-gateway":  # unix from the leader replica <-> TLS to the follower's gateway
        files = node_files(certs, "gw-1")
        ctx = client_context(files.ca, files.cert, files.key)
        srv = _unix_listener(workdir / "l.sock")
        print("ready", flush=True)
        conn, _ = srv.accept()
        relay(conn, _tcp_dial(port, ctx, "gw-2.garrison"))
    else:
        raise SystemExit(f"unknown role {role!r}")


def _p(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))]


def chain(
    workdir: Path, ops: int, disk: bool, loop: str = "blocking", leader_disk: bool = False
) -> list[float]:
    """Round trips (ms) through the six hops, the follower writing durably when ``disk`` and the leader too,
    while the entry travels, when ``leader_disk``; the two gateways relay with blocking sockets, or on
    asyncio streams (``loop`` "asyncio" or "uvloop")."""
    workdir.mkdir(parents=True)
    ensure_cluster_certs(workdir / "certs", ["gw-1", "gw-2"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    try:
        for role in ("follower", "follower-gateway", "leader-gateway"):
            cmd = [sys.executable, "-m", "bench.hop_floor", "--role", role, "--workdir", str(workdir)]
            cmd += ["--port", str(port)] + (["--disk"] if disk else []) + ["--loop", loop]
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
            procs.append(p)
            assert p.stdout is not None
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError(f"{role} did not start")
        leader = _unix_dial(workdir / "l.sock")
        own = lmdb.open(str(workdir / "leader.lmdb"), map_size=1 << 30) if leader_disk else None  # sync on
        body = os.urandom(ENTRY_BYTES)
        times = []
        for i in range(ops + 20):  # 20 warm-up round trips (TLS handshake, first pages)
            t0 = time.perf_counter()
            write_frame(leader, body)
            if own is not None:  # the entry is on its way: the leader's durable write overlaps the chain
                with own.begin(write=True) as txn:
                    txn.put(i.to_bytes(8, "big"), body)
            if read_frame(leader) != ACK:
                raise RuntimeError("bad ack")
            if i >= 20:
                times.append((time.perf_counter() - t0) * 1000)
        leader.close()
        if own is not None:
            own.close()
        return times
    finally:
        for p in procs:
            p.kill()
            p.wait(timeout=10)


def fsync_alone(workdir: Path, ops: int, idle_s: float = 0.0) -> list[float]:
    """One durable LMDB commit of one entry (ms), back to back or after ``idle_s`` of idling (as a follower
    idles between the commits of a serial client: its disk and CPU wake up for each one)."""
    env = lmdb.open(str(workdir / f"alone-{idle_s}.lmdb"), map_size=1 << 30)
    body = os.urandom(ENTRY_BYTES)
    times = []
    for seq in range(1, ops + 1):
        if idle_s:
            time.sleep(idle_s)
        t0 = time.perf_counter()
        with env.begin(write=True) as txn:
            txn.put(seq.to_bytes(8, "big"), body)
        times.append((time.perf_counter() - t0) * 1000)
    env.close()
    return times


def _has_uvloop() -> bool:
    """uvloop is not one of garrison's dependencies: its rows are measured where it is installed."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def sign_only(ops: int) -> list[float]:
    """One Ed25519 signature of one entry (ms): the proposer's, which must exist before the entry is sent.
    Its check is left out: a follower could defer it to the apply, after the commit."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    body = os.urandom(ENTRY_BYTES)
    times = []
    for _ in range(ops):
        t0 = time.perf_counter()
        key.sign(body)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hop_floor", description=__doc__.split("\n")[0])
    parser.add_argument("--ops", type=int, default=500, help="serial round trips per case (default 500)")
    parser.add_argument("--skip-pysyncobj", action="store_true", help="the floor only (no ratio)")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--disk", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--loop", default="blocking", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role:
        role_main(args.role, Path(args.workdir), args.port, args.disk, args.loop)
        return 0
    if args.ops < 1:
        parser.error("--ops must be >= 1")
    load0 = os.getloadavg()
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="garrison-bench-floor-") as tmp:
        rows["hops"] = chain(Path(tmp) / "hops", args.ops, disk=False)
        rows["hops+fsync"] = chain(Path(tmp) / "disk", args.ops, disk=True)
        for loop in ("asyncio", "uvloop") if _has_uvloop() else ("asyncio",):
            rows[f"{loop} hops"] = chain(Path(tmp) / loop, args.ops, disk=False, loop=loop)
            rows[f"{loop} hops+fsync"] = chain(Path(tmp) / f"{loop}-disk", args.ops, disk=True, loop=loop)
        rows["asyncio hops+2 fsync"] = chain(
            Path(tmp) / "asyncio-2disk", args.ops, disk=True, loop="asyncio", leader_disk=True
        )
        rows["fsync"] = fsync_alone(Path(tmp), args.ops)
        rows["fsync, 1 ms idle"] = fsync_alone(Path(tmp), args.ops, idle_s=0.001)
        rows["sign"] = sign_only(args.ops)
    pso_p50: float | None = None
    if not args.skip_pysyncobj:
        from bench.raft_commit import run_pysyncobj

        pso = run_pysyncobj(argparse.Namespace(ops=args.ops, pipelined=100, batch=100, inflight=2))
        pso_p50 = min(
            statistics.median(r.latencies_ms) for k, r in pso["results"].items() if "sync_serial" in k
        )
    print(f"# the floor of issue 9's shape: 6 process hops (2 over mTLS), {args.ops} serial round trips each")
    print(f"{'case':<20}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}" + ("   x PySyncObj p50" if pso_p50 else ""))
    result: dict[str, Any] = {"bench": "hop_floor", "ops": args.ops}
    for name, times in rows.items():
        p50 = statistics.median(times)
        ratio = f"{p50 / pso_p50:>18.2f}" if pso_p50 else ""
        print(f"{name:<20}{p50:>9.3f}{_p(times, 0.9):>9.3f}{_p(times, 0.99):>9.3f}{ratio}")
        result[f"{name}_p50_ms"] = round(p50, 3)
    if pso_p50 is not None:
        floor = statistics.median(rows["hops+fsync"])
        prescribed = statistics.median(rows["asyncio hops+2 fsync"]) + statistics.median(rows["sign"])
        print(
            f"# PySyncObj 0.3.17 best serial commit p50, same run: {pso_p50:.3f} ms; the 2x target: "
            f"{2 * pso_p50:.3f} ms\n# the shape's floor (blocking relays, hops+fsync, no work at all): "
            f"{floor / pso_p50:.2f}x; as prescribed (asyncio peer gateways, signed entries, the leader's "
            f"write: asyncio hops+2 fsync + sign, still no Raft, no encoding, no client hop): "
            f"{prescribed / pso_p50:.2f}x"
        )
        result |= {
            "pysyncobj_best_serial_p50_ms": round(pso_p50, 3),
            "floor_over_pysyncobj": round(floor / pso_p50, 2),
            "prescribed_floor_over_pysyncobj": round(prescribed / pso_p50, 2),
        }
    result |= {
        "load_avg_start": [round(x, 2) for x in load0],
        "load_avg_end": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
