"""Transcript tests of the supervisor's sequencing core, in etcd's datadriven style.

Each ``tests/unit/transcripts/*.txt`` is a script of commands, each followed by ``----`` and the actions
the core returned, printed one a line (a blank line ends a block). The runner replays every command
against a :class:`Sequencer` driven by a fake shell (a simulated clock and pids, nothing else) and
compares the printed actions with the golden text. ``GARRISON_REWRITE_TRANSCRIPTS=1`` rewrites the goldens
from what the core does now: review the diff by hand before committing it.

Commands (``ID`` may carry ``#INC`` to name an incarnation other than the current one):
  supervisor [path=root] [parent=P] [strategy=S] [intensity=N] [period=S] [hold_limit=N]
      followed by one child a line: ``worker ID [restart=R] [shutdown=S] [start_timeout=S]
      [backoff=MIN,MAX,JITTER,RESET] [poison_after=N] [args=JSON]`` or ``supervisor ID [children=A,B]``
  start                      the supervisor is configured: start the children
  advance SECONDS            move the clock
  spawned ID | started ID    the instance reported its pid / that it started
  failed ID [reason=TEXT] [message_type=T] [input=stream:NAME:FIRST-LAST | input=message:TYPE:DIGEST]
  exiting ID                 the instance is stopping on its own accord (a normal exit follows)
  exited ID [signal=N | code=N]   its process is gone (Thespian's ChildActorExited)
  timer NAME                 a timer the core scheduled fired
  stop                       the parent asked this supervisor to stop
  reconfigure PATH JSON      new args for a child
  route ID MESSAGE           a message sent by name to the child (or below it)
  status                     the status rows (not an event)

Like the real shell, the fake one hands the core a crashed child's exit right after ``kill-crashed``
when the child has a pid (a SIGKILL is immediate); those follow-up actions are printed after ``> exited``.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from actors.messages import ChildFailed
from supervisors.policy import History
from supervisors.sequencer import (
    Action,
    CreateChild,
    DeadLetter,
    Deliver,
    ForwardReconfigure,
    Kill,
    KillCrashed,
    Log,
    Quarantine,
    ReportEscalated,
    ReportStarted,
    ReportStopped,
    SaveHistory,
    ScheduleTimer,
    SendStop,
    Sequencer,
)
from supervisors.spec import Backoff, ChildSpec, Restart, Strategy, SupervisorSpec, WorkerSpec

DIR = Path(__file__).parent / "transcripts"
REWRITE = os.environ.get("GARRISON_REWRITE_TRANSCRIPTS") == "1"


class TranscriptError(Exception):
    """A transcript line the runner cannot execute: fix the script (the message names the line)."""


# -- parsing ---------------------------------------------------------------------------------------------


@dataclass
class Case:
    line: int  # 1-based line of the command, for messages
    input: list[str]
    expected: list[str]


@dataclass
class Transcript:
    chunks: list[str | Case] = field(default_factory=list)  # comments/blank lines kept for rewriting

    @property
    def cases(self) -> list[Case]:
        return [c for c in self.chunks if isinstance(c, Case)]

    def render(self, outputs: list[list[str]]) -> str:
        out: list[str] = []
        it = iter(outputs)
        for chunk in self.chunks:
            if isinstance(chunk, Case):
                out += [*chunk.input, "----", *next(it)]
            else:
                out.append(chunk)
        return "\n".join(out) + "\n"


def parse(text: str) -> Transcript:
    lines = text.splitlines()
    t = Transcript()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            t.chunks.append(line)
            i += 1
            continue
        start = i
        inp = []
        while i < len(lines) and lines[i] != "----":
            inp.append(lines[i])
            i += 1
        if i == len(lines):
            raise TranscriptError(f"line {start + 1}: {inp[0]!r} has no '----' after it")
        i += 1
        expected = []
        while i < len(lines) and lines[i].strip():
            expected.append(lines[i])
            i += 1
        t.chunks.append(Case(start + 1, inp, expected))
    return t


# -- the fake shell ----------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if isinstance(value, str):
        return value if value and not any(ch in value for ch in " ='\"") else json.dumps(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _kv(fields: dict[str, Any]) -> str:
    return " ".join(f"{k}={_fmt(v)}" for k, v in fields.items())


def _lost(status: int | None) -> dict[str, Any]:
    """What the shell passes for a process gone without a report (``supervisor.lost_fields``)."""
    if status is None:
        return {"reason": "process exited without a report (killed, segfault or OOM)"}
    if status < 0:
        name = signal.Signals(-status).name
        return {"reason": f"process killed by {name} without a report", "signal": name}
    return {"reason": f"process exited with code {status} without a report", "exit_code": status}


def _options(words: list[str], line: int) -> dict[str, str]:
    opts = {}
    for w in words:
        if "=" not in w:
            raise TranscriptError(f"line {line}: expected key=value, got {w!r}")
        k, _, v = w.partition("=")
        opts[k] = v
    return opts


def _child_spec(words: list[str], line: int) -> ChildSpec:
    kind, child_id, opts = words[0], words[1], _options(words[2:], line)
    if kind == "supervisor":
        kids = tuple(WorkerSpec(k, "x.W") for k in opts.get("children", "").split(",") if k)
        return SupervisorSpec(child_id, children=kids, restart=Restart(opts.get("restart", "permanent")))
    if kind != "worker":
        raise TranscriptError(f"line {line}: a child is 'worker ID ...' or 'supervisor ID ...'")
    backoff = None
    if "backoff" in opts:
        lo, hi, jitter, reset = (float(x) for x in opts["backoff"].split(","))
        backoff = Backoff(lo, hi, jitter, reset)
    return WorkerSpec(
        child_id,
        "x.W",
        args=json.loads(opts.get("args", "{}")),
        restart=Restart(opts.get("restart", "permanent")),
        shutdown_timeout=float(opts.get("shutdown", 5.0)),
        backoff=backoff,
        poison_after=int(opts.get("poison_after", 3)),
        start_timeout=float(opts.get("start_timeout", 30.0)),
    )


def _input_ref(text: str) -> dict[str, Any]:
    kind, name, rest = text.split(":", 2)
    if kind == "stream":
        first, _, last = rest.partition("-")
        return {"kind": "stream", "stream": name, "first": int(first), "last": int(last or first)}
    return {"kind": "message", "message_type": name, "digest": rest}


class Shell:
    """Drives one Sequencer: a simulated clock and pids, the actions printed instead of executed."""

    def __init__(self) -> None:
        self.core: Sequencer | None = None
        self.clock = 1000.0
        self.next_pid = 101
        self.pids: dict[tuple[str, int], int] = {}

    def run(self, case: Case) -> list[str]:
        words = shlex.split(case.input[0])
        cmd, args = words[0], words[1:]
        if cmd == "supervisor":
            return self._supervisor(args, case)
        if self.core is None:
            raise TranscriptError(f"line {case.line}: the first command must be 'supervisor'")
        core = self.core
        if cmd == "start":
            return self._print(core.start(self.clock))
        if cmd == "advance":
            self.clock += float(args[0])
            return [f"t={self.clock - 1000.0:g}"]
        if cmd == "status":
            return [self._status_row(r) for r in core.status(self.clock)]
        if cmd == "timer":
            return self._print(core.timer_fired(args[0], self.clock))
        if cmd == "stop":
            return self._print(core.stop_requested(self.clock))
        if cmd == "reconfigure":
            return self._print(core.reconfigure(args[0], json.loads(args[1]), self.clock))
        if cmd == "route":
            return self._print(core.route(args[0], args[1], self.clock))
        child, inc = self._target(args[0], case.line)
        opts = _options(args[1:], case.line)
        pid = self.pids.get((child, inc), 0)
        if cmd == "spawned":
            return self._print(core.child_spawned(child, inc, pid))
        if cmd == "started":
            return self._print(core.child_started(child, inc, pid, self.clock))
        if cmd == "exiting":
            return self._print(core.child_exiting(child, inc))
        if cmd == "exited":
            status = (
                -int(opts["signal"]) if "signal" in opts else int(opts["code"]) if "code" in opts else None
            )
            return self._print(core.child_exited(child, inc, self.clock, _lost(status)))
        if cmd == "failed":
            report = ChildFailed(
                child,
                inc,
                opts.get("reason", "RuntimeError: boom"),
                opts.get("reason", "RuntimeError").split(":")[0],
                "d1g3st",
                "w.py:1",
                opts.get("message_type", "Msg"),
                input_ref=_input_ref(opts["input"]) if "input" in opts else None,
            )
            return self._print(core.child_failed(report, self.clock))
        raise TranscriptError(f"line {case.line}: unknown command {cmd!r}")

    def _supervisor(self, args: list[str], case: Case) -> list[str]:
        opts = _options(args, case.line)
        children = tuple(_child_spec(shlex.split(line), case.line) for line in case.input[1:])
        spec = SupervisorSpec(
            opts.get("path", "root").rsplit("/", 1)[-1],
            strategy=Strategy(opts.get("strategy", "one_for_one")),
            intensity=int(opts.get("intensity", 3)),
            period=float(opts.get("period", 5.0)),
            children=children,
        )
        self.core = Sequencer(
            spec,
            path=opts.get("path", "root"),
            parent=opts.get("parent"),
            history=History(),
            poison={},
            rng=random.Random(0),
            hold_limit=int(opts.get("hold_limit", 1000)),
        )
        return ["ok"]

    def _target(self, word: str, line: int) -> tuple[str, int]:
        assert self.core is not None
        child, _, inc = word.partition("#")
        state = self.core.children.get(child)
        if state is None:
            raise TranscriptError(f"line {line}: no child {child!r}")
        return child, int(inc) if inc else state.incarnation

    def _print(self, actions: list[Action]) -> list[str]:
        out: list[str] = []
        for action in actions:
            out.append(self._line(action))
            if isinstance(action, KillCrashed) and action.pid:
                # the real shell SIGKILLs the crashed instance and reports its exit at once
                assert self.core is not None
                out.append(f"> exited {action.child}#{action.incarnation}")
                more = self.core.child_exited(action.child, action.incarnation, self.clock, _lost(-9))
                out += self._print(more)
        return out or ["(no actions)"]

    def _line(self, a: Action) -> str:
        if isinstance(a, CreateChild):
            pid = self.next_pid
            self.next_pid += 1
            self.pids[(a.child, a.incarnation)] = pid
            line = f"create {a.child}#{a.incarnation} (pid {pid})"
            if a.args:
                line += f" args={_fmt(a.args)}"
            if a.suspect_input:
                line += f" suspect={_fmt(a.suspect_input)}"
            return line
        if isinstance(a, ScheduleTimer):
            return f"schedule {a.name} in={a.seconds:g}s"
        if isinstance(a, SendStop):
            return f"send-stop {a.child}#{a.incarnation}"
        if isinstance(a, KillCrashed):
            return f"kill-crashed {a.child}#{a.incarnation} pid={a.pid}" + (" subtree" if a.subtree else "")
        if isinstance(a, Kill):
            return f"kill-tree {a.child}#{a.incarnation} pid={a.pid}"
        if isinstance(a, Log):
            fields = {k: v for k, v in a.fields.items() if k != "traceback"}
            if "at" in fields:
                fields["at"] = round(fields["at"] - 1000.0, 6)
            return f"log {a.level} {a.event} {_kv(fields)}"
        if isinstance(a, SaveHistory):
            h = a.history
            restarts = [round(t - 1000.0, 6) for t in h["restarts"]]
            counts, attempts = h["restart_counts"], h["attempts"]
            line = f"save-history restarts={_fmt(restarts)} restart_counts={_fmt(counts)}"
            if attempts:
                line += f" attempts={_fmt(attempts)}"
            if a.poison:
                line += f" poison={_fmt(a.poison)}"
            return line
        if isinstance(a, Quarantine):
            return f"quarantine {a.child} input={_fmt(a.input_ref)} crashes={a.crashes}"
        if isinstance(a, Deliver):
            return f"deliver {a.child} {_fmt(a.message)}"
        if isinstance(a, DeadLetter):
            return f"dead-letter {_fmt(a.message)} kind={a.kind} reason={_fmt(a.reason)}"
        if isinstance(a, ForwardReconfigure):
            return f"forward-reconfigure {a.child} path={a.path} args={_fmt(a.args)}"
        if isinstance(a, ReportStarted):
            return "report-started"
        if isinstance(a, ReportEscalated):
            return f"report-escalated child={a.child} reason={_fmt(a.reason)}"
        if isinstance(a, ReportStopped):
            return "report-stopped"
        raise AssertionError(f"unprinted action {a!r}")

    @staticmethod
    def _status_row(row: dict[str, Any]) -> str:
        keep = ("status", "pid", "incarnation", "restarts_in_period", "restarts_total", "backoff_pending_s")
        fields = {k: row[k] for k in keep}
        fields["held"] = row["held_messages"]
        if row["last_exit"]:
            fields["last_exit"] = f"{row['last_exit']['kind']}/{row['last_exit']['directive']}"
        return f"{row['id']}: {_kv(fields)}"


# -- the test ----------------------------------------------------------------------------------------------


def _files() -> list[Path]:
    return sorted(DIR.glob("*.txt"))


def test_transcripts_exist() -> None:
    files = _files()
    assert len(files) >= 10, files
    for path in files:  # every transcript names what it ports or checks
        assert path.read_text().startswith("#"), f"{path.name} has no header comment"


@pytest.mark.parametrize("path", _files(), ids=lambda p: p.stem)
def test_transcript(path: Path) -> None:
    transcript = parse(path.read_text())
    assert transcript.cases, f"{path.name} has no commands"
    shell = Shell()
    outputs = [shell.run(case) for case in transcript.cases]
    if REWRITE:
        path.write_text(transcript.render(outputs))
        return
    for case, got in zip(transcript.cases, outputs, strict=True):
        if got != case.expected:
            want, have = "\n".join(case.expected), "\n".join(got)
            pytest.fail(
                f"{path.name}:{case.line}: {case.input[0]}\n--- expected\n{want}\n--- got\n{have}\n"
                "(GARRISON_REWRITE_TRANSCRIPTS=1 rewrites the goldens: review the diff)"
            )


def test_rewrite_round_trips_a_transcript() -> None:
    # the golden format is stable: rendering a parsed transcript with its own outputs gives it back
    for path in _files():
        text = path.read_text()
        transcript = parse(text)
        assert transcript.render([c.expected for c in transcript.cases]) == text, path.name


def test_a_changed_golden_is_caught() -> None:
    # the comparison is not vacuous: a golden that says the temporary bystander is restarted (what
    # garrison did before it matched OTP) differs from what the core does
    text = (DIR / "temporary_bystander.txt").read_text()
    assert "not_restarted=" in text
    transcript = parse(text.replace(' not_restarted=["child2"]', ""))
    shell = Shell()
    outputs = [shell.run(case) for case in transcript.cases]
    assert any(got != case.expected for case, got in zip(transcript.cases, outputs, strict=True))
