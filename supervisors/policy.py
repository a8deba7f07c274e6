"""The supervision policy: a pure function from (flags, children, restart history, exit) to a directive.

No clock, no I/O: ``now`` is an argument and randomness (backoff jitter) comes from an injected
``random.Random``. The supervisor actor persists the returned :class:`History` in the event log, so a node
rebooted during a restart storm keeps counting instead of starting from zero.

Rules (OTP ``supervisor.erl``, plus Akka's backoff):
- restart type decides *whether*: permanent always; transient unless the exit was normal or shutdown;
  temporary never;
- strategy decides *which*: one_for_one the child; one_for_all every child; rest_for_one the child and
  every child declared after it (in start order). A ``temporary`` child among those is stopped with them
  and not restarted: OTP never restarts a temporary child, whatever the reason it was terminated for
  (``supervisor_SUITE:temporary_bystander``);
- intensity: more than ``intensity`` restarts within ``period`` seconds -> escalate;
- backoff (optional, per child): delay = min(max, min * 2**attempt) * (1 +- jitter); the attempt counter
  resets when the child ran ``reset_after_s`` without exiting.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from supervisors.spec import (
    Backoff,
    ChildSpec,
    ExitKind,
    Restart,
    Strategy,
)


@dataclass(frozen=True, slots=True)
class History:
    """What counts against intensity and drives backoff; persisted after every decision."""

    restarts: tuple[float, ...] = ()  # wall-clock seconds of restarts still inside the period
    attempts: dict[str, int] = field(default_factory=dict)  # backoff attempt per child id
    last_start: dict[str, float] = field(default_factory=dict)  # when each child was last (re)started
    restart_counts: dict[str, int] = field(default_factory=dict)  # lifetime restarts per child id
    # the same by the exit that caused them (crash, lost, ...): /metrics' restarts by child and reason
    restart_kinds: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "restarts": list(self.restarts),
            "attempts": dict(self.attempts),
            "last_start": dict(self.last_start),
            "restart_counts": dict(self.restart_counts),
            "restart_kinds": {child: dict(kinds) for child, kinds in self.restart_kinds.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> History:
        if not data:
            return cls()
        return cls(
            restarts=tuple(float(t) for t in data.get("restarts", ())),
            attempts={k: int(v) for k, v in data.get("attempts", {}).items()},
            last_start={k: float(v) for k, v in data.get("last_start", {}).items()},
            restart_counts={k: int(v) for k, v in data.get("restart_counts", {}).items()},
            restart_kinds={
                child: {str(kind): int(n) for kind, n in kinds.items()}
                for child, kinds in data.get("restart_kinds", {}).items()
            },
        )


@dataclass(frozen=True, slots=True)
class Forget:
    """Do not restart ``child``: it stays stopped (temporary, or transient after a normal exit)."""

    child: str


@dataclass(frozen=True, slots=True)
class RestartChildren:
    """Stop ``children`` and ``not_restarted`` still running (together, in reverse start order), wait
    ``delay`` s, start ``children`` in order. ``not_restarted`` are the temporary bystanders of a
    one_for_all / rest_for_one restart: stopped, never started again."""

    children: tuple[str, ...]
    delay: float
    not_restarted: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Escalate:
    """Stop every child in reverse start order and report the failure to the parent supervisor."""

    reason: str


Directive = Forget | RestartChildren | Escalate


@dataclass(frozen=True, slots=True)
class Decision:
    directive: Directive
    history: History
    restarts_in_window: int


def _should_restart(restart: Restart, kind: ExitKind) -> bool:
    if restart is Restart.PERMANENT:
        return True
    if restart is Restart.TRANSIENT:
        return kind in (ExitKind.CRASH, ExitKind.LOST)
    return False


def affected_children(strategy: Strategy, children: Sequence[ChildSpec], child: str) -> tuple[str, ...]:
    ids = [c.id for c in children]
    if strategy is Strategy.ONE_FOR_ONE:
        return (child,)
    if strategy is Strategy.ONE_FOR_ALL:
        return tuple(ids)
    return tuple(ids[ids.index(child) :])


def backoff_delay(backoff: Backoff, attempt: int, rng: random.Random) -> float:
    base = min(backoff.max_s, backoff.min_s * (2 ** min(attempt, 62)))
    return max(0.0, base * (1.0 + rng.uniform(-backoff.jitter, backoff.jitter)))


def decide(
    *,
    strategy: Strategy,
    intensity: int,
    period: float,
    children: Sequence[ChildSpec],
    history: History,
    child: str,
    kind: ExitKind,
    now: float,
    rng: random.Random,
) -> Decision:
    spec = next((c for c in children if c.id == child), None)
    if spec is None:
        raise KeyError(f"unknown child {child!r}")
    window = tuple(t for t in history.restarts if t > now - period)
    if not _should_restart(spec.restart, kind):
        return Decision(Forget(child), replace(history, restarts=window), len(window))
    window = (*window, now)
    counts = dict(history.restart_counts)
    counts[child] = counts.get(child, 0) + 1
    kinds = {c: dict(k) for c, k in history.restart_kinds.items()}
    kinds.setdefault(child, {})[str(kind)] = kinds.get(child, {}).get(str(kind), 0) + 1
    if len(window) > intensity:
        reason = (
            f"reached_max_restart_intensity: {len(window)} restarts in {period:g}s "
            f"(intensity {intensity}); last: {child} {kind}"
        )
        return Decision(
            Escalate(reason),
            replace(history, restarts=window, restart_counts=counts, restart_kinds=kinds),
            len(window),
        )
    attempts = dict(history.attempts)
    delay = 0.0
    if spec.backoff is not None:
        started = history.last_start.get(child)
        stable = started is not None and now - started >= spec.backoff.reset_after_s
        attempt = 0 if stable else attempts.get(child, 0)
        delay = backoff_delay(spec.backoff, attempt, rng)
        attempts[child] = attempt + 1
    affected = affected_children(strategy, children, child)
    temporary = {c.id for c in children if c.restart is Restart.TEMPORARY}
    targets = tuple(c for c in affected if c not in temporary)  # never ``child``: it was restarted
    bystanders = tuple(c for c in affected if c in temporary)
    new_history = replace(
        history, restarts=window, attempts=attempts, restart_counts=counts, restart_kinds=kinds
    )
    return Decision(RestartChildren(targets, delay, bystanders), new_history, len(window))


def record_start(history: History, child: str, now: float) -> History:
    last_start = dict(history.last_start)
    last_start[child] = now
    return replace(history, last_start=last_start)
