"""Child specifications and supervisor flags: plain values with OTP's vocabulary and defaults (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Restart(StrEnum):
    PERMANENT = "permanent"  # always restarted
    TRANSIENT = "transient"  # restarted only after an abnormal exit (crash or lost)
    TEMPORARY = "temporary"  # never restarted


class Strategy(StrEnum):
    ONE_FOR_ONE = "one_for_one"  # restart the child that exited
    ONE_FOR_ALL = "one_for_all"  # restart every child
    REST_FOR_ONE = "rest_for_one"  # restart the child and every child started after it


class ExitKind(StrEnum):
    NORMAL = "normal"  # the child stopped on its own accord
    SHUTDOWN = "shutdown"  # its supervisor stopped it
    CRASH = "crash"  # it raised (reported with a reason)
    LOST = "lost"  # its process vanished without a report (SIGKILL, segfault, OOM)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Akka-style restart backoff: min * 2**attempt capped at max, +- jitter, reset after stability."""

    min_s: float = 0.1
    max_s: float = 10.0
    jitter: float = 0.2  # fraction of the delay, drawn uniformly in [-jitter, +jitter]
    reset_after_s: float = 30.0  # a child running this long without exit starts again at min_s


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    id: str
    actor: str  # dotted path of a SupervisedActor subclass
    args: dict[str, Any] = field(default_factory=dict)
    restart: Restart = Restart.PERMANENT
    shutdown_timeout: float = 5.0
    backoff: Backoff | None = None
    poison_after: int = 3  # crashes on the same message before it is treated as poison
    start_timeout: float = 30.0  # on_start (recovery included) must finish within this, else SIGKILL


@dataclass(frozen=True, slots=True)
class SupervisorSpec:
    id: str
    strategy: Strategy = Strategy.ONE_FOR_ONE
    intensity: int = 3
    period: float = 5.0
    children: tuple[ChildSpec, ...] = ()
    restart: Restart = Restart.PERMANENT
    shutdown_timeout: float | None = None  # None: long enough for every child's own timeout
    backoff: Backoff | None = None
    poison_after: int = 3  # crashes on the same message before it is treated as poison

    def effective_shutdown_timeout(self) -> float:
        if self.shutdown_timeout is not None:
            return self.shutdown_timeout
        return 1.0 + sum(child_shutdown_timeout(c) for c in self.children)


ChildSpec = WorkerSpec | SupervisorSpec


def child_shutdown_timeout(spec: ChildSpec) -> float:
    if isinstance(spec, SupervisorSpec):
        return spec.effective_shutdown_timeout()
    return spec.shutdown_timeout
