"""Every log event the code emits is documented in the README (`name`, backticked), so an on-call engineer
who greps a line finds what it means and what to do.

Events are found by reading the source (AST), not by running it: a rare error path logs as surely as a
common one. A log call whose event name this test cannot resolve to string literals fails the test unless
it is one of the known relays below, so a new computed event name cannot slip past it.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCE_DIRS = ("actors", "supervisors", "models")

# structlog's level methods (and `msg`). Not `log`: `math.log`/`np.log` share the name and structlog's
# `log(level, event)` is not used in this code base.
LEVEL_METHODS = frozenset({"debug", "info", "warning", "error", "critical", "exception", "msg"})

# Calls that carry an event name to a logger later; value: the position of the name.
# - supervisors/sequencer.py is pure: it returns `Log(level, event, fields)` actions (built by `_log`)
#   that the supervisor actor logs with `getattr(self.log, action.level)(action.event, ...)`.
# - actors/pipeline/mqtt_bridge.py hands paho's callbacks over to the actor's thread as
#   `_Status(event, fields)`, logged there as `self.log.info(item.event, ...)`.
EVENT_CARRIERS = {"_log": 1, "Log": 1, "_Status": 0}

# Dynamic event expressions whose names come from EVENT_CARRIERS above: (file, source text).
KNOWN_RELAYS = frozenset(
    {
        ("supervisors/sequencer.py", "event"),  # `_log` building its `Log` action
        ("supervisors/supervisor.py", "action.event"),
        ("actors/pipeline/mqtt_bridge.py", "item.event"),
    }
)

# Debug-level events are documented like the rest (debug is not filtered out: every level is written),
# so nothing is exempt.
EXEMPT: frozenset[str] = frozenset()


def _callee_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _dict_literals(scope: ast.AST) -> dict[str, ast.Dict]:
    """Names bound to a dict literal in a function: `event = {"open": "circuit_opened", ...}`."""
    found: dict[str, ast.Dict] = {}
    for node in ast.walk(scope):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node.value
    return found


def _names(expr: ast.expr, dicts: dict[str, ast.Dict]) -> list[str] | None:
    """The event names an expression can take, or None when it is not made of string literals."""
    if isinstance(expr, ast.Constant):
        return [expr.value] if isinstance(expr.value, str) else None
    if isinstance(expr, ast.IfExp):  # "child_restarted" if restarted else "child_started"
        body, orelse = _names(expr.body, dicts), _names(expr.orelse, dicts)
        return None if body is None or orelse is None else body + orelse
    if isinstance(expr, ast.Subscript) and isinstance(expr.value, ast.Name) and expr.value.id in dicts:
        values = [_names(v, dicts) for v in dicts[expr.value.id].values]
        return None if any(v is None for v in values) else [n for v in values for n in v or []]
    return None


def _functions(tree: ast.Module) -> Iterator[ast.AST]:
    """Each function (its own body only matters for dict lookups) plus the module for top-level code."""
    yield tree
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _event_arg(call: ast.Call) -> ast.expr | None:
    name = _callee_name(call)
    if name in EVENT_CARRIERS:
        position = EVENT_CARRIERS[name]
        return call.args[position] if len(call.args) > position else None
    # getattr(self.log, level)("event", ...): the supervisor's relay of the sequencer's Log actions
    is_getattr_relay = (
        isinstance(call.func, ast.Call)
        and isinstance(call.func.func, ast.Name)
        and call.func.func.id == "getattr"
    )
    if (name in LEVEL_METHODS or is_getattr_relay) and call.args:
        return call.args[0]
    return None  # `fut.exception()`, `env.info()`: no event name, not a log call


@functools.cache
def collect_events() -> tuple[dict[str, list[str]], list[tuple[str, str, int]]]:
    """(event name -> where it is logged, unresolved event expressions as (file, source text, line))."""
    events: dict[str, list[str]] = {}
    unresolved: list[tuple[str, str, int]] = []
    for directory in SOURCE_DIRS:
        for path in sorted((REPO / directory).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            seen: set[int] = set()
            # innermost function last, so a call is resolved with its own function's dict literals
            scopes = sorted(_functions(tree), key=lambda s: getattr(s, "lineno", 0))
            for scope in reversed(scopes):
                dicts = _dict_literals(scope)
                for node in ast.walk(scope):
                    if not isinstance(node, ast.Call) or id(node) in seen:
                        continue
                    seen.add(id(node))
                    expr = _event_arg(node)
                    if expr is None:
                        continue
                    names = _names(expr, dicts)
                    if names is None:
                        if isinstance(expr, ast.Constant):
                            continue  # a non-string first argument (`np.log(x)`-like): not an event
                        unresolved.append((str(path.relative_to(REPO)), ast.unparse(expr), node.lineno))
                        continue
                    for name in names:
                        events.setdefault(name, []).append(f"{path.relative_to(REPO)}:{node.lineno}")
    return events, unresolved


def test_the_collector_finds_events_of_every_channel() -> None:
    """The collector is not vacuous: it sees direct calls, the sequencer's actions, the MQTT bridge's
    hand-overs and the dispatcher's breaker map (one known event each)."""
    events, _ = collect_events()
    for name in ("node_started", "child_crashed", "child_restarted", "mqtt_connected", "circuit_opened"):
        assert name in events, f"{name} not collected: the collector missed a logging channel"
    assert len(events) > 80


def test_every_event_name_is_resolved() -> None:
    _, unresolved = collect_events()
    unknown = [
        f"{file}:{line}: {expr}" for file, expr, line in unresolved if (file, expr) not in KNOWN_RELAYS
    ]
    relays = {(file, expr) for file, expr, _ in unresolved}
    assert relays >= KNOWN_RELAYS, f"stale KNOWN_RELAYS (no longer in the code): {KNOWN_RELAYS - relays}"
    assert not unknown, (
        "log calls with an event name this test cannot read (use a string literal, or teach "
        f"EVENT_CARRIERS/KNOWN_RELAYS where the names come from): {unknown}"
    )


def test_every_logged_event_is_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    events, _ = collect_events()
    missing = {
        name: places for name, places in events.items() if name not in EXEMPT and f"`{name}`" not in readme
    }
    assert not missing, (
        "events logged but not in README.md's on-call tables (add a row: event, meaning with its keys, "
        "what to do): " + ", ".join(f"{name} ({places[0]})" for name, places in sorted(missing.items()))
    )
