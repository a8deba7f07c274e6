"""Actors that fail the hard ways, for the fault tests on real processes (importable by module path)."""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
import tempfile
import time
from typing import Any

from thespian.actors import ActorAddress

from actors.base import SupervisedActor
from actors.messages import Location, WhereIs

INPUT = "test/input"
OUTPUT = "test/output"


class Faulty(SupervisedActor):
    """Counts its starts durably; on its first ``times`` starts it does ``action`` after ``after`` s:
    ``segv`` (a real segmentation fault), ``sigbus`` (reads a truncated mmap, as LMDB would on a truncated
    file), ``exit`` (``sys.exit(3)``), ``interrupt`` (``KeyboardInterrupt``), ``hang_in_start`` (spins in
    ``on_start``, at 100 % CPU, deaf to everything)."""

    snapshot_every = 0

    def initial_state(self) -> dict[str, int]:
        return {"starts": 0}

    def apply_event(self, state: dict[str, int], event: dict[str, Any]) -> dict[str, int]:
        return {"starts": state["starts"] + 1}

    def on_start(self, args: dict[str, Any]) -> None:
        self.persist({"started": True})
        self.args = args
        self.log.info("faulty_started", starts=self.state["starts"], pid=os.getpid())
        if self.state["starts"] > int(args.get("times", 1)):
            return
        if args.get("action") == "hang_in_start":
            while True:  # busy, never yields to Thespian: only SIGKILL stops it
                time.monotonic()
        self.schedule("act", float(args.get("after", 0.3)))

    def on_timer(self, name: str) -> None:
        action = self.args.get("action")
        if action == "segv":
            ctypes.string_at(0)  # dereference NULL
        elif action == "sigbus":
            with tempfile.TemporaryFile() as f:
                f.write(b"\0" * mmap.PAGESIZE * 2)
                f.flush()
                mapped = mmap.mmap(f.fileno(), mmap.PAGESIZE * 2)
                f.truncate(0)
                mapped[mmap.PAGESIZE]  # the page is gone: SIGBUS
        elif action == "exit":
            sys.exit(3)
        elif action == "interrupt":
            raise KeyboardInterrupt


class PoisonConsumer(SupervisedActor):
    """Copies ``test/input`` to ``test/output`` exactly once (output and offset in one transaction), in
    batches; crashes on any record whose payload has ``"poison": true``."""

    def on_start(self, args: dict[str, Any]) -> None:
        self.offset = int(self.event_log.get_value("offset/poison-consumer", 0))
        self.batch = int(args.get("batch", 8))
        self.schedule("poll", 0.05)

    def on_timer(self, name: str) -> None:
        while True:
            records = self.event_log.read(INPUT, self.offset, self.input_limit(INPUT, self.batch))
            if not records:
                break
            kept = self.admit(records)
            outputs = []
            for record in kept:
                if record.payload.get("poison"):
                    raise ValueError(f"cannot digest record {record.seq}")
                outputs.append({"copied": record.payload["n"]})
            with self.event_log.batch() as batch:
                for out in outputs:
                    batch.append(OUTPUT, out)
                batch.put_value("offset/poison-consumer", records[-1].seq)
            self.offset = records[-1].seq
        self.schedule("poll", 0.05)


class Crasher(SupervisedActor):
    """Crashes on a message ``{"poison": True}``; counts the others durably."""

    def initial_state(self) -> dict[str, int]:
        return {"handled": 0}

    def apply_event(self, state: dict[str, int], event: Any) -> dict[str, int]:
        return {"handled": state["handled"] + 1}

    def on_message(self, msg: object, sender: ActorAddress) -> None:
        if isinstance(msg, dict) and msg.get("poison"):
            raise ValueError("poisoned message")
        if isinstance(msg, dict):
            self.persist({"ok": msg.get("n")})
            self.log.info("crasher_handled", handled=self.state["handled"])


class Pinger(SupervisedActor):
    """Every ``every`` s sends its sibling ``target`` a message: the same poison message each time (as a
    retrying sender would), then a good one."""

    def on_start(self, args: dict[str, Any]) -> None:
        self.args = args
        self.sent = 0
        self.schedule("ping", float(args.get("every", 0.3)))

    def on_timer(self, name: str) -> None:
        assert self._supervisor_address is not None
        self.send(self._supervisor_address, WhereIs(self.args["target"]))
        self.schedule("ping", float(self.args.get("every", 0.3)))

    def on_message(self, msg: object, sender: ActorAddress) -> None:
        if isinstance(msg, Location) and msg.address is not None:
            self.sent += 1
            self.send(msg.address, {"poison": True})
            self.send(msg.address, {"n": self.sent})


class WokenCopier(SupervisedActor):
    """Copies ``test/input`` to ``test/output``, woken only by the doorbell (its safety net is an hour)."""

    safety_net_s = 3600.0

    def on_start(self, args: dict[str, Any]) -> None:
        self.offset = int(self.event_log.get_value("offset/woken-copier", 0))
        self.subscribe(INPUT)

    def on_appended(self, stream: str) -> None:
        records = self.event_log.read(INPUT, self.offset)
        if not records:
            return
        with self.event_log.batch() as batch:
            for record in self.admit(records):
                batch.append(OUTPUT, {"copied": record.payload["n"]})
            batch.put_value("offset/woken-copier", records[-1].seq)
        self.offset = records[-1].seq
        self.log.info("copier_woken", through=self.offset)
