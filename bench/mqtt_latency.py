"""MQTT publish -> incident line in the file sink on a real node, and the CPU of that node when idle.

    python -m bench.mqtt_latency [--sites 6] [--tick 0.2] [--idle 20] [--settle 3] [--keep]

One run starts a real mosquitto on 127.0.0.1 (a free port, ``set_tcp_nodelay true``, stopped by PID) and one
real node (``python -m supervisors.cli run``) with the ``config/mqtt.yaml`` topology minus the webhook and
MQTT sinks: MQTT bridge -> inference (ONNX) -> one-member Raft incident log -> dispatcher with one file sink,
plus the CRDT exposure replica. No simulated sensors run in the node. Then:

1. **Idle CPU.** Once the node is up and subscribed, and ``--settle`` s later, the CPU time (utime + stime
   from ``/proc/<pid>/stat``) of the launcher and every process below it is read, again ``--idle`` s later,
   with no reading published: the difference over the wall time, as % of one core, in total and per actor.
2. **Latency.** ``--sites`` copies of the default scenario (``models.simulator.default_scenario``, seeds 7,
   8, ...; a CO leak that reaches four of its five sensors) are published with paho (QoS 1, TCP_NODELAY) at a
   real-time pace: one simulated step (10 s of readings, one CO reading per sensor) every ``--tick`` s of
   wall time, each reading at its own instant within the step (sensors are not synchronised), the sites
   ``STAGGER_STEPS`` steps apart so their incidents do not coincide. The wall time of each ``publish`` is
   kept by (sensor, reading ts). A thread watches the sink file with inotify and stamps each line as it
   appears. An incident carries the reading that closed its detecting window (``payload.reading.ts``) and
   its sensor: latency = line seen - publish of that reading.
   Hops, on the same wall clock: publish -> ``ingested_at`` (the bridge took the reading, just before its
   durable ``readings`` append) -> ``detection`` (logged after the ``incidents/proposed`` commit) ->
   ``incident_committed`` (after the ``incidents/committed`` commit) -> line seen in the sink. No record
   gained a timestamp for this: ``ingested_at`` already existed, the other marks are the node's log events.
   The incidents expected are computed in process with the same pipeline (``models.pipeline``) on the same
   readings, and the sink is checked to hold each of them exactly once.

Baselines in the same run: the broker alone (publish -> a paho subscriber in this process, QoS 1) and one
durable 1-record event-log commit on this disk. ``--tick`` compresses the 10 s sensor interval (0.2 s: 50x);
a faster tick loads the node more, it does not shorten any wait inside it.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import math
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import yaml

from bench.raft_commit import committed_ids, durable_commit_probe, kill_session_leftovers
from bench.restart_latency import summarize
from models.detector import DEFAULT_MODEL_PATH, load_detector
from models.episodes import EpisodeConfig
from models.pipeline import DetectionPipeline
from models.simulator import SimulatedSensor, default_scenario
from supervisors.process_tree import descendants
from tests.harness.mosquitto import MosquittoMissing, running_mosquitto

REPO = Path(__file__).resolve().parents[1]
FIRST_STEP = 60  # history enough for full windows before the leak (detections at steps ~131-161)
LAST_STEP = 175
STAGGER_STEPS = 4
START_TS = 1_800_000_000.0
POLLUTANT = "CO"
HOPS = ("publish_to_ingested", "ingested_to_proposed", "proposed_to_committed", "committed_to_sink")
CLK_TCK = os.sysconf("SC_CLK_TCK")
_IN_MODIFY, _IN_CREATE = 0x2, 0x100


class BenchError(Exception):
    """The benchmark could not run (broker or node did not start, incidents missing)."""


# -- the broker ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def mosquitto(run_dir: Path) -> Iterator[tuple[int, int]]:
    """A mosquitto on 127.0.0.1 with Nagle off; yields (port, pid); stopped by its PID."""
    try:
        with running_mosquitto(run_dir) as broker:
            yield broker.port, broker.pid
    except (MosquittoMissing, RuntimeError) as exc:
        raise BenchError(str(exc)) from exc


def _nodelay(client: Any, userdata: Any, sock: Any) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def mqtt_client(port: int, client_id: str) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.on_socket_open = _nodelay
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def broker_floor(port: int, n: int = 200) -> dict[str, float]:
    """publish -> delivery to a subscriber in this process through the same broker (QoS 1): the part of the
    end-to-end latency no node can remove."""
    received: dict[int, float] = {}
    done = threading.Event()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        received[int(msg.payload)] = time.perf_counter()
        if len(received) == n:
            done.set()

    subscribed = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-floor-sub")
    sub.on_socket_open = _nodelay
    sub.on_message = on_message
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    pub = mqtt_client(port, "bench-floor-pub")
    try:
        sub.subscribe("bench/floor", qos=1)
        if not subscribed.wait(10):
            raise BenchError("the broker did not confirm the floor subscription")
        sent: dict[int, float] = {}
        for i in range(n):
            sent[i] = time.perf_counter()
            pub.publish("bench/floor", str(i).encode(), qos=1)
            time.sleep(0.005)
        done.wait(10)
    finally:
        for c in (pub, sub):
            c.loop_stop()
            c.disconnect()
    s = summarize([(received[i] - sent[i]) * 1e3 for i in sent if i in received])
    return {"p50_ms": s["p50_ms"], "p99_ms": s["p99_ms"], "n": s["n"]}


# -- the node ------------------------------------------------------------------------------------------


def topology(data_dir: Path, port: int) -> dict[str, Any]:
    """``config/mqtt.yaml``'s tree with only the file sink (no webhook server, no outgoing MQTT)."""
    tree = {
        "id": "root",
        "strategy": "one_for_one",
        "intensity": 5,
        "period": 30,
        "children": [
            {
                "id": "bridge",
                "actor": "actors.pipeline.mqtt_bridge.MqttBridgeActor",
                "args": {"host": "127.0.0.1", "port": port, "client_id": "bench-edge-bridge"},
            },
            {
                "id": "pipeline",
                "strategy": "rest_for_one",
                "children": [
                    {"id": "inference", "actor": "actors.pipeline.inference.InferenceActor"},
                    {
                        "id": "incident-log",
                        "actor": "actors.raft.replica.RaftReplicaActor",
                        "args": {"publish": True},
                    },
                ],
            },
            {
                "id": "dispatch",
                "actor": "actors.dispatch.actor.DispatcherActor",
                "args": {"sinks": [{"kind": "file", "path": "incidents.jsonl"}]},
            },
            {
                "id": "exposure",
                "actor": "actors.crdt.replica.CrdtReplicaActor",
                "args": {"replica": "bench-edge"},
            },
        ],
    }
    return {"nodes": [{"name": "bench-edge", "data_dir": str(data_dir), "tree": tree}]}


class NodeLog:
    """The node's JSON log lines (its stderr, in a file), read as they come."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pos = 0
        self.partial = b""
        self.events: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        with contextlib.suppress(FileNotFoundError), open(self.path, "rb") as f:
            f.seek(self.pos)
            chunk = f.read()
            self.pos += len(chunk)
            *lines, self.partial = (self.partial + chunk).split(b"\n")
            for line in lines:
                if line.startswith(b"{"):
                    with contextlib.suppress(json.JSONDecodeError):
                        self.events.append(json.loads(line))
        return self.events

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.poll() if e.get("event") == event]

    def wait_for(self, event: str, timeout: float, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.named(event)
            if found:
                return found[0]
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        raise BenchError(f"no {event} from the node within {timeout}s; its log: {self.path}")


def _ts(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["ts"]).timestamp()


# -- CPU -----------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14 and 15 of stat)


def node_processes(launcher: int) -> list[int]:
    return [launcher, *descendants(launcher)]


def names_of(log: NodeLog, launcher: int) -> dict[int, str]:
    names = {launcher: "launcher"}
    for e in log.poll():
        if e.get("event") in ("child_started", "child_restarted") and e.get("pid"):
            names[int(e["pid"])] = f"{e.get('supervisor', '')}/{e.get('child')}".lstrip("/")
        elif e.get("event") == "node_started" and e.get("root_pid"):
            names[int(e["root_pid"])] = "root"
    return names


def cpu_window(launcher: int, seconds: float, log: NodeLog) -> dict[str, Any]:
    """CPU of the node's processes over ``seconds`` of wall time, as % of one core (total and per name)."""
    before = {pid: cpu_seconds(pid) for pid in node_processes(launcher)}
    t0 = time.monotonic()
    time.sleep(seconds)
    return cpu_split(launcher, before, time.monotonic() - t0, log)


def cpu_split(launcher: int, before: dict[int, float | None], wall: float, log: NodeLog) -> dict[str, Any]:
    """CPU used by the node's processes since ``before`` (their CPU seconds then) over ``wall`` seconds."""
    after = {pid: cpu_seconds(pid) for pid in node_processes(launcher)}
    names = names_of(log, launcher)
    per: dict[str, float] = {}
    for pid, end in after.items():
        start = before.get(pid)
        if end is None:
            continue
        used = end - (start if start is not None else 0.0)  # a process born in the window: all of it
        label = names.get(pid, f"other pid {pid} (Thespian admin/logger)")
        per[label] = per.get(label, 0.0) + used
    total = sum(per.values())
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(total, 3),
        "pct_of_one_core": round(100 * total / wall, 2),
        "per_process_pct": {k: round(100 * v / wall, 2) for k, v in sorted(per.items(), key=lambda x: -x[1])},
        "processes": len(after),
        "vanished_in_window": sorted(p for p in before if p not in after or after[p] is None),
        "clock_tick_s": 1 / CLK_TCK,
    }


# -- the sink ------------------------------------------------------------------------------------------


class SinkWatcher(threading.Thread):
    """Stamps each line of the file sink the moment it is written (inotify on its directory)."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.lines: list[tuple[float, dict[str, Any]]] = []
        self.stop = threading.Event()
        self._pos = 0
        self._partial = b""
        libc = ctypes.CDLL(None, use_errno=True)
        self._fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if (
            self._fd < 0
            or libc.inotify_add_watch(self._fd, str(path.parent).encode(), _IN_MODIFY | _IN_CREATE) < 0
        ):
            raise BenchError(f"inotify is not available here (errno {ctypes.get_errno()})")

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                ready, _, _ = select.select([self._fd], [], [], 0.2)
                if ready:
                    seen = time.time()
                    with contextlib.suppress(BlockingIOError):
                        while os.read(self._fd, 65536):
                            pass
                    self._read(seen)
        finally:
            os.close(self._fd)

    def _read(self, seen: float) -> None:
        with contextlib.suppress(FileNotFoundError), open(self.path, "rb") as f:
            f.seek(self._pos)
            chunk = f.read()
        if not chunk:
            return
        self._pos += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for line in lines:
            if line.strip():
                self.lines.append((seen, json.loads(line)))


# -- the readings --------------------------------------------------------------------------------------


@dataclass
class Plan:
    """Per step of wall time, the readings to publish (topic, payload, key), and the incidents expected."""

    steps: list[list[tuple[str, bytes, tuple[str, float]]]] = field(default_factory=list)
    expected: set[tuple[str, float]] = field(default_factory=set)


def plan(sites: int) -> Plan:
    out = Plan()
    detector = load_detector(DEFAULT_MODEL_PATH)
    total = LAST_STEP - FIRST_STEP + 1 + STAGGER_STEPS * (sites - 1)
    out.steps = [[] for _ in range(total)]
    for k in range(sites):
        scenario = default_scenario(7 + k)
        sensors = [
            SimulatedSensor(scenario, s.sensor, start_ts=START_TS, next_step=FIRST_STEP)
            for s in scenario.sensors
        ]
        pipeline = DetectionPipeline(detector, EpisodeConfig(), {})
        for i in range(LAST_STEP - FIRST_STEP + 1):
            batch = []
            for sensor in sensors:
                for r in sensor.read(1):
                    if r.pollutant != POLLUTANT or not math.isfinite(r.value):
                        continue
                    name = f"site{k}-{r.sensor}"
                    body = {
                        "sensor": name,
                        "pollutant": r.pollutant,
                        "value": r.value,
                        "unit": r.unit,
                        "timestamp": r.ts,
                    }
                    batch.append({**body, "ts": r.ts, "location": None, "source": "mqtt"})
                    out.steps[i + k * STAGGER_STEPS].append(
                        (f"sensor/{name}/raw", json.dumps(body).encode(), (name, r.ts))
                    )
            for started, reading in pipeline.process(batch):
                out.expected.add((started.sensor, reading["ts"]))
    return out


def publish(client: mqtt.Client, readings: Plan, tick: float) -> dict[tuple[str, float], float]:
    """Each step's readings spread evenly over its ``tick`` of wall time; the wall time of each publish."""
    sent: dict[tuple[str, float], float] = {}
    infos = []
    began = time.perf_counter()
    for i, step in enumerate(readings.steps):
        for j, (topic, payload, key) in enumerate(step):
            due = began + (i + j / max(1, len(step))) * tick
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent[key] = time.time()
            infos.append(client.publish(topic, payload, qos=1))
    for info in infos:
        info.wait_for_publish(10)
    return sent


# -- the run -------------------------------------------------------------------------------------------


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    readings = plan(args.sites)
    data_dir = root / "data"
    topo = root / "topology.yaml"
    log_path = root / "node.jsonl"
    result: dict[str, Any] = {"expected_incidents": len(readings.expected)}
    with mosquitto(root) as (port, broker_pid):
        result["broker_floor_ms"] = broker_floor(port)
        topo.write_text(yaml.safe_dump(topology(data_dir, port)))
        log = NodeLog(log_path)
        cmd = [sys.executable, "-m", "supervisors.cli", "run", str(topo), "--log-format", "json"]
        with open(log_path, "wb") as stderr:
            # its own session: whatever of the node outlives the launcher is found and killed by session
            node = subprocess.Popen(
                cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
            )
        session = node.pid
        watcher: SinkWatcher | None = None
        sent: dict[tuple[str, float], float] = {}
        try:
            log.wait_for("node_started", 90, node)
            log.wait_for("mqtt_subscribed", 30, node)
            data_dir.mkdir(parents=True, exist_ok=True)
            watcher = SinkWatcher(data_dir / "incidents.jsonl")
            watcher.start()
            time.sleep(args.settle)
            broker_before = cpu_seconds(broker_pid) or 0.0
            result["idle"] = cpu_window(node.pid, args.idle, log)
            result["idle"]["broker_pct"] = round(
                100 * ((cpu_seconds(broker_pid) or 0.0) - broker_before) / result["idle"]["wall_s"], 2
            )
            client = mqtt_client(port, "bench-publisher")
            cpu_before = {p: cpu_seconds(p) for p in node_processes(node.pid)}
            # this process's own full collections (24-37 ms measured here: the plan and paho's objects)
            # would stamp a publish or a sink line late and be counted as the node's latency
            gc.freeze()
            t0 = time.monotonic()
            try:
                sent = publish(client, readings, args.tick)
            finally:
                client.loop_stop()
                client.disconnect()
            result["busy"] = cpu_split(node.pid, cpu_before, time.monotonic() - t0, log)
            deadline = time.monotonic() + args.drain
            while time.monotonic() < deadline and len(watcher.lines) < len(readings.expected):
                time.sleep(0.05)
            time.sleep(0.5)  # a duplicate line, if any, would come right after
        finally:
            if watcher is not None:
                watcher.stop.set()
                watcher.join(5)
            if node.poll() is None:
                node.send_signal(signal.SIGTERM)
            try:
                result["exit_code"] = node.wait(timeout=60)
            except subprocess.TimeoutExpired:
                node.kill()
                result["exit_code"] = node.wait()
            result["leftovers_killed"] = len(kill_session_leftovers(session))
    result.update(match(readings, sent, watcher.lines if watcher else [], log.poll()))
    result["published"] = len(sent)
    result["node_log"] = str(log_path)
    return result


def match(
    readings: Plan,
    sent: dict[tuple[str, float], float],
    lines: list[tuple[float, dict[str, Any]]],
    events: list[dict[str, Any]],
) -> dict[str, Any]:
    proposed = {e["incident_id"]: _ts(e) for e in events if e.get("event") == "detection"}
    committed = {
        iid: _ts(e) for e in events if e.get("event") == "incident_committed" for iid in committed_ids(e)
    }
    samples: list[dict[str, float]] = []
    seen_ids: list[str] = []
    unmatched = 0
    for seen, line in lines:
        inc = line["incident"]
        seen_ids.append(inc["incident_id"])
        key = (inc["sensor"], inc["payload"]["reading"]["ts"])
        if key not in sent:
            unmatched += 1
            continue
        published = sent[key]
        sample = {"total_ms": (seen - published) * 1e3}
        ingested = inc["payload"].get("ingested_at")
        iid = inc["incident_id"]
        if ingested is not None and iid in proposed and iid in committed:
            marks = (published, ingested, proposed[iid], committed[iid], seen)
            for hop, a, b in zip(HOPS, marks, marks[1:], strict=False):
                sample[hop] = (b - a) * 1e3
        samples.append(sample)
    found = {(line["incident"]["sensor"], line["incident"]["payload"]["reading"]["ts"]) for _, line in lines}
    return {
        "samples": samples,
        "sink_lines": len(lines),
        "duplicates": len(seen_ids) - len(set(seen_ids)),
        "missing": len(readings.expected - found),
        "unexpected": len(found - readings.expected),
        "unmatched": unmatched,
        "crashes": sum(e.get("event") in ("child_crashed", "child_lost") for e in events),
        "degraded": any(e.get("event") == "model_degraded" for e in events),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.mqtt_latency", description=__doc__.split("\n")[0])
    parser.add_argument("--sites", type=int, default=6, help="scenario copies, 4 incidents each (default 6)")
    parser.add_argument(
        "--tick", type=float, default=0.2, help="wall s per simulated 10 s step (default 0.2)"
    )
    parser.add_argument("--idle", type=float, default=20.0, help="idle CPU window in s (default 20)")
    parser.add_argument(
        "--settle", type=float, default=3.0, help="s after start before the idle window (default 3)"
    )
    parser.add_argument(
        "--drain", type=float, default=30.0, help="s to wait for the last incidents (default 30)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary dir (node log, sink)")
    args = parser.parse_args(argv)
    if args.sites < 1 or args.tick <= 0 or args.idle <= 0:
        parser.error("--sites >= 1, --tick > 0 and --idle > 0")
    root = Path(tempfile.mkdtemp(prefix="garrison-bench-mqtt-"))
    load = os.getloadavg()
    began = time.monotonic()
    ok = False
    try:
        probe = durable_commit_probe(root)
        result = run(args, root)
        ok = bool(result["samples"]) and not result["missing"] and not result["duplicates"]
    finally:
        if ok and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    report(args, result, probe, load, time.monotonic() - began, root if (args.keep or not ok) else None)
    return 0 if ok else 1


def report(
    args: argparse.Namespace,
    result: dict[str, Any],
    probe: dict[str, float],
    load: tuple[float, ...],
    wall: float,
    kept: Path | None,
) -> None:
    samples = result["samples"]
    stats: dict[str, Any] = {}
    if samples:
        stats["total"] = summarize([s["total_ms"] for s in samples])
        for hop in HOPS:
            values = [s[hop] for s in samples if hop in s]
            if values:
                stats[hop] = summarize(values)
    print(
        f"# MQTT publish -> incident line in the file sink: {len(samples)} incidents ({args.sites} sites, "
        f"tick {args.tick:g} s per 10 s step, {result['published']} readings published with paho QoS 1)"
    )
    print(f"{'span':<26}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}{'max ms':>9}{'n':>5}")
    for name, s in stats.items():
        print(
            f"{name:<26}{s['p50_ms']:>9.1f}{s['p99_ms']:>9.1f}{s['mean_ms']:>9.1f}{s['max_ms']:>9.1f}{s['n']:>5}"
        )
    floor = result["broker_floor_ms"]
    print(
        f"# baselines: broker alone (publish -> paho subscriber, QoS 1) p50 {floor['p50_ms']:.2f} / p99 "
        f"{floor['p99_ms']:.2f} ms; durable 1-record event-log commit p50 {probe['p50_ms']:.2f} / p99 "
        f"{probe['p99_ms']:.2f} ms"
    )
    idle = result.get("idle", {})
    if idle:
        print(
            f"# idle node (no readings, {idle['wall_s']:.1f} s, {idle['processes']} processes): "
            f"{idle['pct_of_one_core']:.2f} % of one core (mosquitto {idle['broker_pct']:.2f} %)"
        )
        for name, pct in idle["per_process_pct"].items():
            print(f"#   {pct:6.2f} %  {name}")
    if "busy" in result:
        print(
            f"# while publishing ({result['busy']['wall_s']:.1f} s): node at {result['busy']['pct_of_one_core']:.1f} % of one core"
        )
        for name, pct in result["busy"]["per_process_pct"].items():
            if pct >= 0.5:
                print(f"#   {pct:6.2f} %  {name}")
    print(
        f"# checks: expected {result['expected_incidents']} incidents, sink lines {result['sink_lines']}, "
        f"missing {result['missing']}, duplicates {result['duplicates']}, unexpected {result['unexpected']}, "
        f"unmatched {result['unmatched']}; crashes/lost {result['crashes']}; model degraded {result['degraded']}; "
        f"exit {result.get('exit_code')}; leftovers killed {result.get('leftovers_killed')}"
    )
    print(
        f"# load average at start {load[0]:.2f}, at end {os.getloadavg()[0]:.2f}; wall {wall:.1f} s"
        + (f"; kept {kept}" if kept else "")
    )
    out = {
        "bench": "mqtt_latency",
        "sites": args.sites,
        "tick_s": args.tick,
        "stats": stats,
        "idle_cpu_pct_of_one_core": idle.get("pct_of_one_core"),
        "idle": idle,
        "busy": result.get("busy"),
        "broker_floor_ms": floor,
        "durable_commit_probe_ms": probe,
        "checks": {
            k: result[k]
            for k in ("expected_incidents", "sink_lines", "missing", "duplicates", "unexpected", "crashes")
        },
        "load_avg_1m": round(load[0], 2),
    }
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    sys.exit(main())
