"""A Jepsen-style run against a real 3-gateway cluster (issue 9, "Proof on real processes").

K client threads POST incidents (unique ids) and read the whole log with ``consistency=linearizable``,
each operation against a node drawn at random (a follower serves a linearizable read by asking the
leader's gateway for the read index, so reads on followers are checked too), while a seeded nemesis partitions (a follower or the
leader cut off, or the leader's outbound links only), SIGKILLs and restarts, and SIGSTOPs / SIGCONTs whole
nodes. Every operation is recorded as Jepsen events in the checker's JSON-lines format
(``actors/linearizability/history.py``): ``append`` of the incident id, ``read`` returning the ids in log
order. A 201/200 is ``ok``; a 400/503 or a refused connection is ``fail`` (definitely not appended); a
504, another answer or a timeout is ``info`` (unknown: it may take effect at any later time, or never),
after which the client continues as a new process, as Jepsen's do.

Afterwards everything is healed and the history is checked by ``garrison check-history --model log``,
plus what a linearizability check alone does not say: every node's final log is identical, no incident
is in it twice, every acknowledged incident is in it, and no incident answered 4xx/503 is.

The plan (operation mix, nodes, faults, pauses) comes from ``random.Random(seed)`` so a failure
reproduces from its seed as far as the machine's timing allows; the seed is printed first. Each fault is
checked to have landed (bytes really dropped, pids really gone, processes really in state T).
Used by ``tests/system/test_jepsen.py`` (CI size) and ``bench/jepsen.py`` (many seeds).
"""

from __future__ import annotations

import dataclasses
import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.harness.cluster import REPO, Cluster, ClusterError, incident

POST_TIMEOUT_S = 15.0  # above the API's 10 s commit deadline (which answers 504 itself)
READ_TIMEOUT_S = 12.0
FAULTS = ("isolate-follower", "isolate-leader", "leader-outbound", "kill", "pause", "delay")
DELAY_MS = (20.0, 250.0)  # a delay fault's one-way delay: from below a heartbeat to past an election timeout


@dataclasses.dataclass
class Report:
    seed: int
    history: Path
    verdicts: dict[str, str] = dataclasses.field(default_factory=dict)
    outcomes: Counter[str] = dataclasses.field(default_factory=Counter)
    faults: list[str] = dataclasses.field(default_factory=list)
    kinds: list[str] = dataclasses.field(default_factory=list)  # the kind of each fault, in order
    checker: str = ""

    @property
    def ok(self) -> bool:
        return all(v == "ok" for v in self.verdicts.values())

    def summary(self) -> str:
        lines = [f"seed {self.seed}: {'OK' if self.ok else 'FAILED'}  (history {self.history})"]
        lines.append("  outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())))
        lines += [f"  fault: {f}" for f in self.faults]
        lines += [f"  {name}: {verdict}" for name, verdict in self.verdicts.items()]
        return "\n".join(lines)


class History:
    """Events in real-time order: each is appended under one lock, invokes before the request is sent and
    completions after the answer arrived, so the event index is a valid clock for the checker."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def add(self, process: int | str, kind: str, f: str, value: Any = None) -> None:
        event: dict[str, Any] = {"process": process, "type": kind, "f": f, "time": time.monotonic()}
        if value is not None or (f == "append" or kind == "ok"):
            event["value"] = value
        with self._lock:
            self.events.append(event)

    def write(self) -> None:
        with self._lock:
            self.path.write_text("".join(json.dumps(e) + "\n" for e in self.events))


class Client(threading.Thread):
    def __init__(self, run: JepsenRun, number: int) -> None:
        super().__init__(name=f"jepsen-client-{number}", daemon=True)
        self.run_ = run
        self.number = number
        self.process = number
        self.rng = random.Random(run.seed * 1000 + number)
        self.count = 0

    def crashed(self) -> None:
        """After an unknown outcome the process may still have an effect pending: continue as a new one."""
        self.process += self.run_.clients

    def run(self) -> None:
        r = self.run_
        while not r.stop.is_set():
            if self.rng.random() < 0.65:  # appends go to any node: an edge forwards them to the leader
                self.append(self.rng.choice(r.cluster.everyone))
            else:  # an edge has no log to read
                self.read(self.rng.choice(r.cluster.names))
            time.sleep(self.rng.uniform(0.0, 0.05))

    def append(self, node: str) -> None:
        r = self.run_
        self.count += 1
        iid = f"s{r.seed}-c{self.number}-{self.count}"
        r.history.add(self.process, "invoke", "append", iid)
        try:
            code, _ = r.cluster.post(node, "/v1/incidents", incident(iid, node), POST_TIMEOUT_S)
        except ConnectionRefusedError:
            code = -1  # nothing listens: the request never reached a node
        except OSError:
            code = 0  # timeout, reset: unknown
        if code in (200, 201):
            r.history.add(self.process, "ok", "append", iid)
            r.acked.add(iid)
            r.outcomes[f"append {code}"] += 1
            if node in r.cluster.edges:
                r.outcomes[f"append {code} via edge"] += 1
        elif code == -1 or 400 <= code < 500 or code == 503:
            r.history.add(self.process, "fail", "append", iid)
            r.refused.add(iid)
            r.outcomes[f"append {'refused' if code == -1 else code}"] += 1
        else:
            r.history.add(self.process, "info", "append", iid)
            r.outcomes[f"append {code or 'no answer'}"] += 1
            self.crashed()

    def read(self, node: str) -> None:
        r = self.run_
        r.history.add(self.process, "invoke", "read")
        code, body = r.cluster.get(
            node, "/v1/incidents?after=0&limit=10000&consistency=linearizable", READ_TIMEOUT_S, refused=-1
        )
        if code == 200 and body is not None and body.get("next_after") is None:
            ids = [rec["incident"]["incident_id"] for rec in body["incidents"]]
            r.history.add(self.process, "ok", "read", ids)
            r.outcomes["read ok"] += 1
            r.read_ok_on[node] += 1
        elif code in (-1, 400, 503):  # -1: nothing listens (a killed node): the read never ran
            r.history.add(self.process, "fail", "read")
            r.outcomes[f"read {'refused' if code == -1 else code}"] += 1
        else:  # no answer or a partial page: the value is unknown (the checker drops it)
            r.history.add(self.process, "info", "read")
            r.outcomes[f"read {code or 'no answer'}"] += 1
            self.crashed()


class JepsenRun:
    def __init__(
        self,
        workdir: Path,
        seed: int,
        seconds: float,
        clients: int = 4,
        say: Callable[[str], None] = print,
        edges: tuple[str, ...] = (),
    ) -> None:
        self.workdir = workdir
        self.seed = seed
        self.seconds = seconds
        self.clients = clients
        self.say = say
        self.rng = random.Random(seed)
        self.cluster = Cluster(workdir, seed=seed, edges=edges)
        self.history = History(workdir / "history.jsonl")
        self.report = Report(seed, self.history.path)
        self.outcomes = self.report.outcomes
        self.acked: set[str] = set()
        self.refused: set[str] = set()
        self.read_ok_on: Counter[str] = Counter()
        self.stop = threading.Event()
        self.faults_landed = 0

    # -- the nemesis --

    def nemesis(self, deadline: float) -> None:
        c = self.cluster
        cover = self.rng.sample(FAULTS, len(FAULTS))  # the first faults try every kind, in a seeded order
        while time.monotonic() < deadline - 3:
            time.sleep(self.rng.uniform(0.5, 2.0))
            kind = cover.pop(0) if cover else self.rng.choice(FAULTS)
            hold = round(self.rng.uniform(1.5, 4.0), 1)
            leader = c.leader()
            self.history.add("nemesis", "info", "start", f"{kind} (leader {leader})")
            kind, line = self.inject(kind, leader, hold)
            self.history.add("nemesis", "info", "stop", kind)
            self.report.faults.append(line)
            self.report.kinds.append(kind)
            self.say(f"  nemesis: {line}")

    def inject(self, kind: str, leader: str | None, hold: float) -> tuple[str, str]:
        """Apply one fault for ``hold`` seconds and undo it; (the kind really injected, what happened)."""
        c = self.cluster
        names = c.everyone  # an edge is cut off, killed and paused like a gateway follower
        if kind in ("isolate-leader", "leader-outbound") and leader is None:
            kind = "isolate-follower"  # no leader to target now: cut someone off anyway
        if kind == "isolate-follower":
            victim = self.rng.choice([n for n in names if n != leader])
        elif kind in ("isolate-leader", "leader-outbound"):
            victim = leader  # type: ignore[assignment]
        else:
            victim = self.rng.choice(names)
        if kind.startswith("isolate") or kind == "leader-outbound":
            if kind == "leader-outbound":  # asymmetric: the leader hears the others, they never hear it
                links = c.links_of(victim)
                for src, dst in links:
                    c.proxies[(src, dst)].blackhole("to_target" if src == victim else "to_client")
                    c.cut.add((src, dst))
            else:  # from every other node, edges included
                links = c.partition([victim], [n for n in names if n != victim])
            dropped = self._hold(links, hold, c.dropped)
            landed = dropped > 0
            outcome = f"{kind} {victim} for {hold}s: {dropped} bytes dropped"
        elif kind == "kill":
            pids = c.kill(victim)  # raises unless every pid is gone
            time.sleep(hold)
            c.restart(victim)
            landed = bool(pids)
            outcome = f"kill {victim} ({len(pids)} processes gone) for {hold}s, restarted"
        elif kind == "delay":  # every link to and from one node, leader or not: slow, reordered never
            ms = round(self.rng.uniform(*DELAY_MS))
            delayed = self._hold(c.slow(victim, ms, jitter_ms=ms / 4), hold, c.delayed)
            landed = delayed > 0
            outcome = f"delay {victim} by {ms}+-{ms // 4} ms for {hold}s: {delayed} bytes delayed"
        else:
            pids = c.pause(victim)  # raises unless every process is in state T
            time.sleep(hold)
            c.resume(victim)
            landed = bool(pids)
            outcome = f"pause {victim} ({len(pids)} processes in state T) for {hold}s, resumed"
        self.faults_landed += landed
        return kind, outcome + ("" if landed else "  [DID NOT LAND]")

    def _hold(
        self, links: list[tuple[str, str]], hold: float, hits: Callable[[list[tuple[str, str]]], int]
    ) -> int:
        """Keep the fault on ``links`` for ``hold`` s, heal, and return what ``hits`` counted meanwhile (bytes
        dropped or delayed: the proof that the fault landed)."""
        before = hits(links)
        time.sleep(hold)
        hit = hits(links) - before
        self.cluster.heal()
        return hit

    # -- the run --

    def execute(self) -> Report:
        c = self.cluster
        self.say(f"jepsen seed {self.seed} (reproduce with --seed {self.seed}); workdir {self.workdir}")
        try:
            c.start()
            c.wait_leader(90)
            threads = [Client(self, i) for i in range(self.clients)]
            for t in threads:
                t.start()
            deadline = time.monotonic() + self.seconds
            self.nemesis(deadline)
            time.sleep(max(0.0, deadline - time.monotonic()))
            self.stop.set()
            for t in threads:
                t.join(timeout=POST_TIMEOUT_S + 5)
            stuck = [t.name for t in threads if t.is_alive()]
            self.report.verdicts["clients finished"] = "ok" if not stuck else f"still running: {stuck}"
            self.settle()
        finally:
            self.history.write()
            c.stop()
        self.check_history()
        return self.report

    def settle(self) -> None:
        """Heal everything, wait for one leader and identical logs, then one last linearizable read (in the
        history: it pins the final state, so a lost acknowledged append is a linearizability violation)."""
        c = self.cluster
        c.heal()
        for name, node in c.nodes.items():
            if node.paused:
                c.resume(name)
            if node.proc.poll() is not None:
                c.restart(name)
        leader = c.wait_leader(90)
        final = c.wait_converged(60)
        process = "final"
        self.history.add(process, "invoke", "read")
        code, body = c.get(
            leader, "/v1/incidents?after=0&limit=10000&consistency=linearizable", READ_TIMEOUT_S
        )
        if code == 200 and body is not None and body.get("next_after") is None:
            ids = [rec["incident"]["incident_id"] for rec in body["incidents"]]
            self.history.add(process, "ok", "read", ids)
        else:
            self.history.add(process, "fail", "read")
        v = self.report.verdicts
        v["final linearizable read"] = "ok" if code == 200 else f"answered {code}: {body}"
        ids = [iid for _, iid in final]
        dupes = sorted(i for i, n in Counter(ids).items() if n > 1)
        v["no incident twice"] = "ok" if not dupes else f"duplicated: {dupes}"
        lost = sorted(self.acked - set(ids))
        v["no acknowledged incident lost"] = "ok" if not lost else f"lost: {lost}"
        appeared = sorted(self.refused & set(ids))
        v["no refused incident appended"] = (
            "ok" if not appeared else f"answered 4xx/503 but in the log: {appeared}"
        )
        v["faults landed"] = "ok" if self.faults_landed else "no fault hit the cluster"
        v["work done"] = (
            "ok"
            if self.outcomes["append 201"] and self.outcomes["read ok"]
            else f"too little to judge: {dict(self.outcomes)}"
        )
        self.say(f"  final log: {len(ids)} incidents, identical on {len(c.names)} nodes")
        self.say(f"  linearizable reads answered per node: {dict(self.read_ok_on)}")
        # followers serve linearizable reads too: each asks the leader's gateway for the read index (counts
        # since each node's last start)
        asked = {
            n: ((c.status(n) or {}).get("gateway") or {}).get("calls", {}).get("read_index_asked")
            for n in c.names
        }
        self.say(f"  ReadIndex asked of the leader by followers, per node: {asked}")

    def check_history(self) -> None:
        cmd = [
            sys.executable,
            "-m",
            "supervisors.cli",
            "check-history",
            str(self.history.path),
            "--model",
            "log",
        ]
        try:
            done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            self.report.verdicts["check-history --model log"] = "no verdict within 300 s"
            return
        self.report.checker = done.stdout + done.stderr
        self.report.verdicts["check-history --model log"] = (
            "ok" if done.returncode == 0 else f"exit {done.returncode}: {self.report.checker[:2000]}"
        )
        self.say(
            f"  checker: {done.stdout.splitlines()[1] if done.stdout.count(chr(10)) > 1 else done.stdout}"
        )


def run(
    workdir: Path,
    seed: int,
    seconds: float,
    clients: int = 4,
    say: Callable[[str], None] = print,
    edges: tuple[str, ...] = (),
) -> Report:
    """One seeded run (with ``edges``: edge nodes too, which clients append through and the nemesis hits);
    raises :class:`ClusterError` only if the cluster never came up or never converged."""
    workdir.mkdir(parents=True, exist_ok=True)
    return JepsenRun(workdir, seed, seconds, clients, say, edges).execute()


__all__ = ["FAULTS", "ClusterError", "JepsenRun", "Report", "run"]
