"""A seeded chaos nemesis for a real node running the default pipeline (issue 7, item 7).

The nemesis SIGKILLs and SIGSTOPs random processes of the node's tree (workers, nested supervisors, the
root, the launcher itself, which it then restarts on the same data_dir like a service manager would) and
feeds poison inputs: records that crash a consumer (quarantined after ``poison_after`` crashes) and,
with a broker, hostile MQTT payloads. Afterwards it checks the core promise against a clean run of the
same simulator seed: no missing and no duplicate incident, the same committed log, nothing of the node
left running, and every injected fault accounted for in the logs.

The fault *plan* (which kind of fault, on which kind of target, after which pause) is drawn from
``random.Random(seed)``, so a failure reproduces from its seed; the exact instant a fault lands still
depends on the machine, which is the point of running many seeds. Each fault is first checked to have
really happened (the pid really died, the process really was in state T) before anything is concluded.
Used by ``tests/system/test_chaos_soak.py`` (a few seeds) and ``bench/chaos_soak.py`` (long runs).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from actors.base import SupervisedActor
from actors.eventlog import EventLog
from actors.pipeline.mqtt_bridge import DEAD_LETTERS as MQTT_DEAD_LETTERS
from actors.streams import COMMITTED_INCIDENTS, PROPOSED_INCIDENTS, READINGS
from supervisors.process_tree import descendants
from supervisors.supervisor import POISON_STREAM
from supervisors.thespian_env import processes_in_session
from tests.harness.mosquitto import MosquittoMissing, mosquitto_binary, running_mosquitto
from tests.system.nodes import LiveNode

SOAK_INPUT = "chaos/input"
SOAK_OUTPUT = "chaos/output"
CONSUMER_OFFSET = "offset/chaos-consumer"
CONSUMER = ("root", "consumer")
BRIDGE = ("root", "bridge")
MQTT_TOPIC = "chaos/s9/raw"
# payloads the MQTT bridge must reject (dead-letter and ack) whatever happens to it meanwhile
HOSTILE_PAYLOADS = (
    b'{"pollutant": "NO2", "unit": "ppb", "ts": 1, "value": ' + b"9" * 400 + b"}",
    b"[" * 5_000 + b"]" * 5_000,
    b"\xff\xfe",
    b'{"sensor": "s1", "pollutant": "NO2", "value": NaN, "unit": "ppb", "ts": 1}',
    b"not json at all",
)


class SoakConsumer(SupervisedActor):
    """Copies ``chaos/input`` to ``chaos/output`` exactly once (outputs and offset in one transaction) and
    crashes on any record with ``"poison": true``: the input the nemesis poisons."""

    def on_start(self, args: dict[str, Any]) -> None:
        self.offset = int(self.event_log.get_value(CONSUMER_OFFSET, 0))
        self.schedule("poll", 0.05)

    def on_timer(self, name: str) -> None:
        while records := self.event_log.read(SOAK_INPUT, self.offset, self.input_limit(SOAK_INPUT, 16)):
            outputs = []
            for record in self.admit(records):
                if record.payload.get("poison"):
                    raise ValueError(f"chaos consumer cannot digest poison record {record.seq}")
                outputs.append({"n": record.payload["n"]})
            with self.event_log.batch() as batch:
                for out in outputs:
                    batch.append(SOAK_OUTPUT, out)
                batch.put_value(CONSUMER_OFFSET, records[-1].seq)
            self.offset = records[-1].seq
        self.schedule("poll", 0.05)


# -- the node under test --------------------------------------------------------------------------------


REPLICAS = ("gw1", "gw2", "gw3")


@dataclass(frozen=True)
class Layout:
    """Where the soak's topology keeps things: the default pipeline (a one-member Raft log under the
    nested ``pipeline`` supervisor) or config/raft-3.yaml's shape (three replicas under ``root/raft``)."""

    raft3: bool = False

    @property
    def inference_key(self) -> str:
        return "inference/root/inference" if self.raft3 else "inference/root/pipeline/inference"

    @property
    def publisher_offset(self) -> str:
        return "offset/raft/gw1" if self.raft3 else "offset/raft/incident-log"

    @property
    def replicas(self) -> tuple[str, ...]:
        return REPLICAS if self.raft3 else ("incident-log",)


def _log_children(layout: Layout) -> list[dict[str, Any]]:
    inference = {
        "id": "inference",
        "actor": "actors.pipeline.inference.InferenceActor",
        "args": {"threshold": 0.85},
        "backoff": {"min": 0.2, "max": 2},
    }
    if not layout.raft3:  # config/default.yaml
        replica = {
            "id": "incident-log",
            "actor": "actors.raft.replica.RaftReplicaActor",
            "args": {"publish": True},
        }
        return [
            {
                "id": "pipeline",
                "strategy": "rest_for_one",
                "intensity": 100,
                "period": 30,
                "children": [inference, replica],
            },
        ]
    replicas = [  # config/raft-3.yaml
        {
            "id": r,
            "actor": "actors.raft.replica.RaftReplicaActor",
            "args": {"peers": list(REPLICAS), "publish": r == "gw1"},
            "backoff": {"min": 0.3, "max": 5},
        }
        for r in REPLICAS
    ]
    return [
        inference,
        {"id": "raft", "strategy": "one_for_one", "intensity": 100, "period": 30, "children": replicas},
    ]


def soak_tree(
    steps: int, speedup: float, mqtt_port: int | None = None, layout: Layout = Layout()
) -> dict[str, Any]:
    """config/default.yaml (or raft-3.yaml) with a bounded sensor run, plus the poison consumer (and an
    MQTT bridge).

    Intensities are raised from the shipped 5 per 30 s: the nemesis injects faults far faster than any
    production intensity is sized for, and an escalation would stop the node instead of showing whether
    a restart recovers without loss."""
    children: list[dict[str, Any]] = [
        {
            "id": "sensors",
            "actor": "actors.pipeline.sensor.SimulatedSensorActor",
            "args": {"seed": 7, "speedup": speedup, "max_steps": steps},
        },
        *_log_children(layout),
        {
            "id": "dispatch",
            "actor": "actors.dispatch.actor.DispatcherActor",
            "args": {"sinks": [{"kind": "file", "path": "incidents.jsonl"}]},
        },
        {
            "id": "consumer",
            "actor": f"{__name__}.SoakConsumer",
            "poison_after": 3,
            "backoff": {"min": 0.05, "max": 0.5},
        },
    ]
    if not layout.raft3:
        children.insert(
            3,
            {
                "id": "exposure",
                "actor": "actors.crdt.replica.CrdtReplicaActor",
                "args": {"replica": "edge-1"},
            },
        )
    if mqtt_port is not None:
        children.append(
            {
                "id": "bridge",
                "actor": "actors.pipeline.mqtt_bridge.MqttBridgeActor",
                "args": {"host": "127.0.0.1", "port": mqtt_port, "topic": "chaos/+/raw", "qos": 1},
                "backoff": {"min": 0.2, "max": 2},
            }
        )
    return {"id": "root", "strategy": "one_for_one", "intensity": 100, "period": 30, "children": children}


def write_soak_topology(workdir: Path, tree: dict[str, Any]) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    topo = {"nodes": [{"name": "edge-1", "data_dir": str(workdir / "data"), "tree": tree}]}
    path = workdir / "topology.yaml"
    path.write_text(yaml.safe_dump(topo, sort_keys=False))
    return path


def tree_keys(tree: dict[str, Any], parent: str = "") -> list[tuple[str, str]]:
    """Every (supervisor path, child id) of a tree dict: the processes the nemesis may pick."""
    path = f"{parent}/{tree['id']}" if parent else tree["id"]
    keys: list[tuple[str, str]] = []
    for child in tree["children"]:
        keys.append((path, child["id"]))
        if "children" in child:
            keys += tree_keys(child, path)
    return keys


# -- reading a node's data_dir ----------------------------------------------------------------------


@contextlib.contextmanager
def event_log(data_dir: Path) -> Iterator[EventLog]:
    log = EventLog(data_dir / "eventlog")
    try:
        yield log
    finally:
        log.close()


def applied(log: EventLog, layout: Layout) -> dict[str, dict[str, Any]]:
    """Each replica's state machine: incident id -> the Raft index it was applied at."""
    return {
        r: {k.rsplit("/", 1)[1]: v for k, v in log.values_with_prefix(f"raft/{r}/applied/").items()}
        for r in layout.replicas
    }


def drained(data_dir: Path, steps: int, layout: Layout = Layout()) -> bool:
    """Every reading produced and consumed, every proposed incident committed once, applied by every
    replica and dispatched, every chaos input consumed (or quarantined)."""
    with event_log(data_dir) as log:
        sensor = log.get_value("sensor/root/sensors") or {}
        inference = log.get_value(layout.inference_key) or {}
        proposed = {r.payload["incident_id"] for r in log.read(PROPOSED_INCIDENTS)}
        committed = {r.payload["incident"]["incident_id"] for r in log.read(COMMITTED_INCIDENTS)}
        return (
            sensor.get("next_step") == steps
            and inference.get("offset") == log.last_seq(READINGS)
            and log.get_value(layout.publisher_offset, 0) == log.last_seq(PROPOSED_INCIDENTS)
            and proposed == committed
            and all(len(a) == len(committed) for a in applied(log, layout).values())
            and log.get_value("offset/dispatch/file", 0) == log.last_seq(COMMITTED_INCIDENTS)
            and log.get_value(CONSUMER_OFFSET, 0) == log.last_seq(SOAK_INPUT)
        )


def wait_drained(
    data_dir: Path, steps: int, timeout: float, node: LiveNode | None = None, layout: Layout = Layout()
) -> None:
    deadline = time.monotonic() + timeout
    settled = 0
    while time.monotonic() < deadline:
        if node is not None and node.proc.poll() is not None:
            raise AssertionError(f"the node exited ({node.proc.returncode}) before the pipeline drained")
        settled = settled + 1 if drained(data_dir, steps, layout) else 0
        if settled >= 2:  # twice, 0.3 s apart: a commit published in between would show
            return
        time.sleep(0.3)
    raise AssertionError(f"the pipeline did not drain within {timeout}s")


def timeline(data_dir: Path) -> list[tuple[str, str, float]]:
    """Committed incidents relative to the run's simulated start (ids embed the wall-clock start)."""
    with event_log(data_dir) as log:
        start = log.get_value("sensor/root/sensors")["start_ts"]
        return [
            (c["incident"]["sensor"], c["incident"]["type"], round(c["incident"]["timestamp"] - start, 3))
            for c in (r.payload for r in log.read(COMMITTED_INCIDENTS))
        ]


def clean_timeline(
    workdir: Path, steps: int, timeout: float = 120, layout: Layout = Layout()
) -> list[tuple[str, str, float]]:
    """The committed incidents of a run with no faults over the same simulator seed and steps (speedup
    changes wall time only: readings are a function of seed, sensor and step)."""
    topology = write_soak_topology(workdir, soak_tree(steps, speedup=1800, layout=layout))
    node = LiveNode(topology)
    try:
        node.wait_for("node_started", timeout=60)
        wait_drained(workdir / "data", steps, timeout, node, layout)
    finally:
        run = node.finish(stop=True)
    assert run.code == 0, run.stderr[-2000:]
    return timeline(workdir / "data")


# -- processes ----------------------------------------------------------------------------------------


def proc_state(pid: int) -> str | None:
    """The state letter of ``pid`` (R, S, T, ...), or None when it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None
    return None if state in ("Z", "X") else state


def wait_dead(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := [p for p in pids if proc_state(p) is not None]) and time.monotonic() < deadline:
        time.sleep(0.02)
    return left


def wait_state(pid: int, want: Callable[[str | None], bool], timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    while not want(state := proc_state(pid)) and time.monotonic() < deadline:
        time.sleep(0.01)
    return state


def tree_pids(node: LiveNode) -> dict[tuple[str, str], int]:
    """The latest pid of each (supervisor, child), from the node's child_started/child_restarted lines."""
    latest: dict[tuple[str, str], int] = {}
    for event in list(node.events):
        if event.get("event") in ("child_started", "child_restarted") and "pid" in event:
            latest[(event["supervisor"], event["child"])] = int(event["pid"])
    return latest


@contextlib.contextmanager
def mosquitto(workdir: Path) -> Iterator[int | None]:
    """A real broker on 127.0.0.1 (stopped by pid), or None when mosquitto is not installed."""
    try:
        mosquitto_binary()
    except MosquittoMissing:
        yield None
        return
    with running_mosquitto(workdir, nodelay=False) as broker:
        yield broker.port


class _Missed(Exception):
    def __init__(self, fault: Fault) -> None:
        super().__init__(fault.key)
        self.fault = fault


# -- the nemesis ----------------------------------------------------------------------------------------


@dataclass
class Fault:
    n: int
    action: str  # kill | stop
    target: str  # worker | supervisor | root | launcher
    key: str  # "root/pipeline/inference", "root", "launcher"
    pid: int
    outcome: str = ""  # how the logs account for it
    ok: bool = True
    landed: bool = True  # False: the victim had exited (a restart in progress) before the signal

    def line(self) -> str:
        mark = "" if self.ok else "  <-- FAILED"
        return f"#{self.n:<3} {self.action:<4} {self.target:<10} {self.key:<28} pid {self.pid:<7} {self.outcome}{mark}"


@dataclass
class SoakReport:
    seed: int
    faults: list[Fault] = field(default_factory=list)
    verdicts: dict[str, str] = field(default_factory=dict)
    poison_fed: int = 0
    good_fed: int = 0
    hostile_fed: int = 0
    node_starts: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        bad = [f"fault {f.line()}" for f in self.faults if not f.ok]
        return bad + [f"{k}: {v}" for k, v in self.verdicts.items() if v != "ok"]

    def summary(self) -> str:
        kinds = Counter(f"{f.action} {f.target}" for f in self.faults if f.landed)
        missed = sum(not f.landed for f in self.faults)
        lines = [
            f"chaos soak seed {self.seed}: {len(self.faults)} faults ({dict(kinds)}, {missed} missed), node started "
            f"{self.node_starts}x, chaos inputs fed: {self.good_fed} good, {self.poison_fed} poison, "
            f"{self.hostile_fed} hostile MQTT payloads"
        ]
        lines += [f.line() for f in self.faults]
        lines += [f"verdict {k}: {v}" for k, v in self.verdicts.items()]
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


# weights of the fault plan; a SIGSTOP picks its target among the tree's processes and the launcher
PLAN = (
    ("kill", "worker", 30),
    ("kill", "supervisor", 10),
    ("kill", "root", 6),
    ("kill", "launcher", 8),
    ("stop", "any", 30),
)


class Nemesis:
    """Runs one soak: start the node, inject ``faults`` faults, let it drain, stop it, check."""

    def __init__(
        self,
        seed: int,
        workdir: Path,
        *,
        steps: int,
        speedup: float,
        mqtt_port: int | None = None,
        layout: Layout = Layout(),
        log: Callable[[str], None] = print,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.workdir = workdir
        self.steps = steps
        self.layout = layout
        self.tree = soak_tree(steps, speedup, mqtt_port, layout)
        self.keys = tree_keys(self.tree)
        self.topology = write_soak_topology(workdir, self.tree)
        self.data_dir = workdir / "data"
        self.mqtt_port = mqtt_port
        self.say = log
        self.report = SoakReport(seed)
        self.nodes: list[LiveNode] = []
        self.seen_pids: set[int] = set()
        self.sessions: set[int] = set()
        self.poison_seqs: list[int] = []
        self.good_ns: list[int] = []
        self.cover: list[tuple[str, str, int]] = []

    # -- node lifecycle --

    @property
    def node(self) -> LiveNode:
        return self.nodes[-1]

    def start_node(self) -> None:
        node = LiveNode(self.topology)
        self.nodes.append(node)
        self.report.node_starts += 1
        try:
            started = node.wait_until(lambda: node.named("node_started"), 90, "node_started")[0]
        except AssertionError:
            run = node.finish(timeout=5)
            raise AssertionError(
                f"seed {self.seed}: node start #{self.report.node_starts} failed (exit {run.code}):\n"
                f"{run.stderr[-3000:]}\nfaults so far:\n" + "\n".join(f.line() for f in self.report.faults)
            ) from None
        self.sessions.add(int(started["session"]))
        self.seen_pids.update({node.proc.pid, int(started["root_pid"])})

    def settled(self, timeout: float = 45) -> dict[tuple[str, str], int]:
        """Wait until every process of the tree runs (a live pid, not stopped) and no start happened for
        0.5 s (the poison consumer's crash loop aside): the tree recovered from the last fault."""
        deadline = time.monotonic() + timeout
        before: dict[tuple[str, str], int] = {}
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            pids = tree_pids(self.node)
            self.seen_pids.update(pids.values())
            steady = {k: v for k, v in pids.items() if k != CONSUMER}
            if steady != before:
                before, quiet_since = steady, time.monotonic()
            complete = all(k in pids for k in self.keys)
            running = all(proc_state(p) not in (None, "T", "t") for p in steady.values())
            if complete and running and time.monotonic() - quiet_since >= 0.5:
                return pids
            if self.node.proc.poll() is not None:
                raise AssertionError(f"the node exited ({self.node.proc.returncode}) while recovering")
            time.sleep(0.05)
        raise AssertionError(
            f"the tree did not recover within {timeout}s; log tail:\n{''.join(self.node.lines[-20:])}"
        )

    # -- inputs --

    def feed(self) -> None:
        """Append chaos inputs (good and, sometimes, poison) and publish a hostile MQTT payload."""
        with event_log(self.data_dir) as log:
            for _ in range(self.rng.randint(1, 4)):
                n = self.report.good_fed + self.report.poison_fed
                if self.rng.random() < 0.25:
                    self.poison_seqs.append(log.append(SOAK_INPUT, [{"n": n, "poison": True}])[0])
                    self.report.poison_fed += 1
                else:
                    log.append(SOAK_INPUT, [{"n": n}])
                    self.good_ns.append(n)
                    self.report.good_fed += 1
        if self.mqtt_port is not None and self.rng.random() < 0.5:
            self.publish(HOSTILE_PAYLOADS[self.report.hostile_fed % len(HOSTILE_PAYLOADS)])
            self.report.hostile_fed += 1

    def publish(self, payload: bytes) -> None:
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"nemesis-{self.seed}")
        client.connect("127.0.0.1", int(self.mqtt_port or 0))
        client.loop_start()
        try:
            client.publish(MQTT_TOPIC, payload, qos=1).wait_for_publish(5)
        finally:
            client.disconnect()
            client.loop_stop()

    # -- faults --

    def inject(self, n: int) -> Fault:
        """One fault; a victim that exited between the pick and the signal is a miss, not a finding."""
        try:
            return self._inject(n)
        except _Missed as miss:
            miss.fault.landed, miss.fault.outcome = False, "missed: the pid had already exited"
            return miss.fault

    def _signal(self, fault: Fault, sig: int) -> None:
        try:
            os.kill(fault.pid, sig)
        except ProcessLookupError:
            raise _Missed(fault) from None

    def _inject(self, n: int) -> Fault:
        pids = self.settled()
        if self.cover:  # every kind of fault once, in a seeded order, before the weighted draws
            action, target, _ = self.cover.pop()
        else:
            action, target, _ = self.rng.choices(PLAN, weights=[w for *_, w in PLAN])[0]
        supervisors = sorted(k for k in pids if any(c["id"] == k[1] and "children" in c for c in self._all()))
        workers = sorted(k for k in pids if k not in supervisors)
        if action == "stop":
            choice = self.rng.choice([*sorted(pids), "launcher"])
            pid = self.node.proc.pid if choice == "launcher" else pids[choice]
            key = "launcher" if choice == "launcher" else "/".join(choice)
            return self._stop(Fault(n, "stop", "launcher" if choice == "launcher" else "process", key, pid))
        if target == "launcher":
            return self._kill_launcher(Fault(n, "kill", "launcher", "launcher", self.node.proc.pid))
        if target == "root":
            root = int(self.node.named("node_started")[0]["root_pid"])
            return self._kill_root(Fault(n, "kill", "root", "root", root))
        victim = self.rng.choice(supervisors if target == "supervisor" else workers)
        return self._kill_child(Fault(n, "kill", target, "/".join(victim), pids[victim]), victim)

    def _all(self) -> list[dict[str, Any]]:
        found, frontier = [], [self.tree]
        while frontier:
            node = frontier.pop()
            for child in node.get("children", []):
                found.append(child)
                frontier.append(child)
        return found

    def _exits(self, key: tuple[str, str], pid: int) -> dict[str, int]:
        sup, child = key
        return {
            "child_lost": len(self.node.named("child_lost", supervisor=sup, child=child, signal="SIGKILL")),
            "child_stopped": len(self.node.named("child_stopped", supervisor=sup, child=child, pid=pid)),
            "child_crashed": len(self.node.named("child_crashed", supervisor=sup, child=child)),
        }

    def _kill_child(self, fault: Fault, key: tuple[str, str]) -> Fault:
        below = descendants(fault.pid)
        before = self._exits(key, fault.pid)
        self._signal(fault, signal.SIGKILL)
        if wait_dead([fault.pid], 5):
            fault.ok, fault.outcome = False, "the victim did not die"
            return fault
        if orphans := wait_dead(below, 5):
            fault.ok, fault.outcome = False, f"processes below it outlived it: {orphans}"
            return fault
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            after = self._exits(key, fault.pid)
            grown = [k for k in after if after[k] > before[k]]
            if grown:
                # child_lost with signal SIGKILL is the rule; child_stopped: the kill hit a child its
                # supervisor was stopping; child_crashed: the consumer's poison crash raced the kill
                fault.outcome = f"{grown[0]}" + (f" (+{len(below)} below it died)" if below else "")
                fault.ok = (
                    grown[0] == "child_lost"
                    or (grown[0] == "child_crashed" and key == CONSUMER)
                    or (grown[0] == "child_stopped")
                )
                return fault
            time.sleep(0.05)
        fault.ok, fault.outcome = False, "no child_lost/child_stopped in the log within 20 s"
        return fault

    def _kill_root(self, fault: Fault) -> Fault:
        node = self.node
        self._signal(fault, signal.SIGKILL)
        if wait_dead([fault.pid], 5):
            fault.ok, fault.outcome = False, "the root did not die"
            return fault
        try:
            code = node.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            fault.ok, fault.outcome = False, "the launcher did not exit after losing its root"
            node.finish(timeout=1)
            self.start_node()
            return fault
        node._reader.join(timeout=5)
        stopped = node.named("node_stopped")
        reason = stopped[-1]["reason"] if stopped else None
        fault.outcome = f"node exited {code} ({reason}); restarted"
        fault.ok = code == 1 and reason == "root supervisor process lost"
        self._check_session_gone(fault, node)
        self.start_node()
        return fault

    def _kill_launcher(self, fault: Fault) -> Fault:
        node = self.node
        session = node.session()
        members = processes_in_session(session)
        self.seen_pids.update(members)
        os.kill(fault.pid, signal.SIGKILL)
        node.proc.wait(timeout=10)
        node._reader.join(timeout=5)
        fault.outcome = f"launcher killed ({len(members)} processes in its session); restarted"
        if orphans := wait_dead(members, 5):
            fault.ok, fault.outcome = False, f"processes outlived the launcher: {orphans}"
            for pid in orphans:  # by pid, only processes of this node's session
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.start_node()
        return fault

    def _check_session_gone(self, fault: Fault, node: LiveNode) -> None:
        started = node.named("node_started")
        left = processes_in_session(int(started[0]["session"])) if started else []
        if left:
            fault.ok, fault.outcome = False, f"{fault.outcome}; processes left in its session: {left}"
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def _stop(self, fault: Fault) -> Fault:
        pause = round(self.rng.uniform(0.2, 1.5), 2)
        self._signal(fault, signal.SIGSTOP)
        state = wait_state(fault.pid, lambda s: s in ("T", "t", None), 2)
        really = state in ("T", "t")
        time.sleep(pause)
        with contextlib.suppress(ProcessLookupError):
            os.kill(fault.pid, signal.SIGCONT)
        if not really:
            fault.ok, fault.outcome = False, f"not stopped (state {state})"
            return fault
        resumed = wait_state(fault.pid, lambda s: s not in ("T", "t"), 2)
        fault.outcome = f"stopped {pause}s, state T seen, resumed ({resumed or 'gone'})"
        fault.ok = resumed not in ("T", "t")
        return fault

    # -- the run --

    def run(self, faults: int | None = None, minutes: float | None = None, cover: bool = True) -> SoakReport:
        """``faults`` faults, or as many as fit in ``minutes``; then drain, stop and check. With ``cover``
        the first faults are one of each kind of :data:`PLAN` (seeded order), so a short run tries them all."""
        self.cover = self.rng.sample(PLAN, len(PLAN)) if cover else []
        self.say(f"chaos soak seed {self.seed} (reproduce with --seed {self.seed}); data in {self.data_dir}")
        end = None if minutes is None else time.monotonic() + minutes * 60
        self.start_node()
        n = 0
        try:
            while (faults is None or n < faults) and (end is None or time.monotonic() < end):
                n += 1
                time.sleep(self.rng.uniform(0.1, 1.0))
                if self.rng.random() < 0.6:
                    self.feed()
                fault = self.inject(n)
                self.report.faults.append(fault)
                self.say(fault.line())
            self.settled()
            wait_drained(self.data_dir, self.steps, timeout=180, node=self.node, layout=self.layout)
        finally:
            final = self.node.finish(stop=True, timeout=90)
            for i, node in enumerate(self.nodes, 1):  # the evidence for a post-mortem
                (self.workdir / f"node-{i}.log").write_text("".join(node.lines))
        self.check(final)
        return self.report

    def check(self, final: Any) -> None:
        v = self.report.verdicts
        stopped = final.named("node_stopped")
        v["final stop"] = (
            "ok"
            if final.code == 0 and stopped and stopped[-1]["killed_leftover_processes"] is None
            else f"exit {final.code}, {stopped[-1] if stopped else 'no node_stopped line'}"
        )
        for node in self.nodes:
            self.seen_pids.update(tree_pids(node).values())
        left = sorted(p for p in self.seen_pids if proc_state(p) is not None)
        left += sorted(p for s in self.sessions for p in processes_in_session(s) if p not in left)
        v["no process left"] = "ok" if not left else f"still running: {left}"
        v.update(self._check_incidents())
        v.update(self._check_poison())
        v.update(self._check_accounting())

    def _check_incidents(self) -> dict[str, str]:
        out: dict[str, str] = {}
        with event_log(self.data_dir) as log:
            committed = [r.payload for r in log.read(COMMITTED_INCIDENTS)]
            machines = applied(log, self.layout)
        first = machines[self.layout.replicas[0]]
        out["replicas identical"] = (
            "ok"
            if all(m == first for m in machines.values()) and len(first) == len(committed)
            else f"applied (incident id -> index) per replica: {machines}, committed {len(committed)}"
        )
        ids = [c["incident"]["incident_id"] for c in committed]
        indexes = [c["index"] for c in committed]
        out["committed log"] = (
            "ok"
            if len(set(ids)) == len(ids) and indexes == list(range(1, len(ids) + 1))
            else f"duplicates or gaps: ids {ids}, indexes {indexes}"
        )
        lines = [
            json.loads(x) for x in (self.data_dir / "incidents.jsonl").read_text().splitlines() if x.strip()
        ]
        sink = [(x["index"], x["incident"]["incident_id"]) for x in lines]
        dup_ids = [i for i, c in Counter(i for _, i in sink).items() if c > 1]
        dup_idx = [i for i, c in Counter(i for i, _ in sink).items() if c > 1]
        missing = sorted(set(zip(indexes, ids, strict=True)) - set(sink))
        extra = sorted(set(sink) - set(zip(indexes, ids, strict=True)))
        out["file sink exactly once"] = (
            "ok"
            if not (dup_ids or dup_idx or missing or extra)
            else (
                f"duplicate ids {dup_ids}, duplicate indexes {dup_idx}, missing {missing}, unexpected {extra}"
            )
        )
        return out

    def compare(self, reference: list[tuple[str, str, float]]) -> None:
        """The same incidents as the clean run, each once (indexes are checked by :meth:`check`). Compared
        as a set: the Raft replica drops a proposal it gets before it leads and re-proposes it ticks
        later, so commit order depends on timing even in a clean run (measured: proposed S1..S4,
        committed S2, S3, S4, S1 with no fault at all); Raft promises one order on every replica, not
        the proposal order."""
        got = timeline(self.data_dir)
        missing, extra = sorted(set(reference) - set(got)), sorted(set(got) - set(reference))
        same = sorted(got) == sorted(reference)
        self.report.verdicts["same incidents as the clean run"] = (
            "ok" if same else f"missing {missing}, extra {extra} (counts {len(got)} vs {len(reference)})"
        )
        if same and got != reference:
            self.report.notes.append("commit order differs from the clean run's (allowed, see compare)")

    def _check_poison(self) -> dict[str, str]:
        out: dict[str, str] = {}
        with event_log(self.data_dir) as log:
            copied = [r.payload["n"] for r in log.read(SOAK_OUTPUT)]
            letters = [r.payload for r in log.read(POISON_STREAM)]
            mqtt_dead = [r.payload for r in log.read(MQTT_DEAD_LETTERS)] if self.mqtt_port else []
        out["chaos inputs copied exactly once"] = (
            "ok" if copied == self.good_ns else (f"copied {copied} != fed {self.good_ns}")
        )
        quarantined = {
            rec["seq"]
            for letter in letters
            if letter.get("actor") == "root/consumer"
            for rec in letter.get("records", [])
        }
        logged = {
            e["input"]["first"]
            for node in self.nodes
            for e in node.named("poison_quarantined", child="consumer")
        }
        missing = sorted(set(self.poison_seqs) - quarantined)
        out["every poison record quarantined"] = (
            "ok"
            if not missing and set(self.poison_seqs) <= logged
            else (
                f"not in {POISON_STREAM}: {missing}; logged poison_quarantined for {sorted(logged)} of {self.poison_seqs}"
            )
        )
        if self.mqtt_port is not None:
            raws = {d.get("raw") for d in mqtt_dead}
            fed = {
                p[:4096].decode("utf-8", errors="replace")
                for p in HOSTILE_PAYLOADS[: self.report.hostile_fed]
            }
            crashed = [e for node in self.nodes for e in node.named("child_crashed", child="bridge")]
            out["hostile MQTT payloads dead-lettered, bridge never crashed"] = (
                "ok"
                if fed <= raws and not crashed
                else f"missing {len(fed - raws)} payloads, bridge crashes {crashed}"
            )
        return out

    def _check_accounting(self) -> dict[str, str]:
        """Every child_lost in the logs is an injected SIGKILL; every crash is a poison crash."""
        kills = Counter(
            f.key for f in self.faults_of("kill") if f.target in ("worker", "supervisor") and f.landed
        )
        lost = Counter(
            f"{e['supervisor']}/{e['child']}" for node in self.nodes for e in node.named("child_lost")
        )
        unexplained_lost = {k: c - kills[k] for k, c in lost.items() if c > kills[k]}
        crashes = [
            e
            for node in self.nodes
            for e in node.named("child_crashed")
            if (e.get("supervisor"), e.get("child")) != CONSUMER
            or "poison record" not in str(e.get("reason"))
        ]
        other = [
            (e["event"], e.get("supervisor"), e.get("child"), e.get("reason"))
            for node in self.nodes
            for e in node.events
            if e.get("event") in ("supervisor_escalated", "restart_intensity_exceeded", "child_start_timeout")
        ]
        return {
            "every loss is an injected kill": "ok"
            if not unexplained_lost
            else f"unexplained: {unexplained_lost}",
            "every crash is a poison crash": "ok"
            if not crashes
            else f"{[(e.get('supervisor'), e.get('child'), e.get('reason')) for e in crashes]}",
            "no escalation, no start timeout": "ok" if not other else f"{other}",
        }

    def faults_of(self, action: str) -> list[Fault]:
        return [f for f in self.report.faults if f.action == action]
