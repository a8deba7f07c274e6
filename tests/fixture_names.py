"""An actor for the name tests: it records what reaches it and, on request, tells or asks other actors by
name and reports the outcome to whoever asked it. Messages are JSON-able dicts (they come from the
control socket)."""

from __future__ import annotations

import os
from typing import Any

from actors.base import SupervisedActor
from actors.messages import AskFailed, AskTimeout, Reply


def describe(outcome: object) -> dict[str, Any]:
    if isinstance(outcome, Reply):
        return {"outcome": "Reply", "value": outcome.value}
    if isinstance(outcome, AskTimeout):
        return {"outcome": "AskTimeout", "path": outcome.path}
    if isinstance(outcome, AskFailed):
        return {"outcome": "AskFailed", "kind": outcome.kind, "reason": outcome.reason}
    return {"outcome": type(outcome).__name__}


class Probe(SupervisedActor):
    def on_start(self, args: dict[str, Any]) -> None:
        self.received: list[Any] = []
        self.waiting: dict[str, Any] = {}  # request id -> the sender to report an on_message outcome to

    def on_message(self, msg: object, sender: Any) -> None:
        if isinstance(msg, Reply | AskTimeout | AskFailed):  # outcome of an ask made without a callback
            self.send(self.waiting.pop(msg.request_id), {"via": "on_message", **describe(msg)})
            return
        op = msg.get("op") if isinstance(msg, dict) else None
        if op == "crash":
            raise RuntimeError("asked to crash")
        if op == "received":
            self.reply(self.received)
        elif op == "whoami":
            inc = self.config.incarnation if self.config else 0
            self.reply({"path": self.path, "pid": os.getpid(), "incarnation": inc})
        elif op == "silent":
            pass
        elif op == "tell":
            self.tell(msg["to"], msg["msg"])
            self.reply("sent")
        elif op == "ask":
            self.ask(
                msg["to"],
                msg["msg"],
                timeout=float(msg.get("timeout", 5)),
                on_reply=lambda outcome: self.send(sender, {"via": "callback", **describe(outcome)}),
            )
        elif op == "ask_msg":
            request_id = self.ask(msg["to"], msg["msg"], timeout=float(msg.get("timeout", 5)))
            self.waiting[request_id] = sender
        else:
            self.received.append(msg)
            self.reply("ok")
