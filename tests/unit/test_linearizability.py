"""Linearizability checker: hand-built legal/illegal histories per model, a brute-force
cross-check, generated histories, witnesses, the command function and input errors."""

from __future__ import annotations

import contextlib
import functools
import io
import itertools
import json
import random
import time
from dataclasses import dataclass
from typing import Any

import pytest

from actors.linearizability import (
    HistoryFormatError,
    LinearizabilityResult,
    SearchBudgetExceeded,
    UnknownModelError,
    check_history,
    is_linearizable,
    load_history,
    run_check_history,
)
from actors.linearizability.history import parse_operations
from actors.linearizability.models import MODELS, Operation


def invoke(process: Any, f: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    return {"process": process, "type": "invoke", "f": f, "value": value, **extra}


def ok(process: Any, f: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    return {"process": process, "type": "ok", "f": f, "value": value, **extra}


def fail(process: Any, f: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    return {"process": process, "type": "fail", "f": f, "value": value, **extra}


def info(process: Any, f: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    return {"process": process, "type": "info", "f": f, "value": value, **extra}


def sequential(*ops: tuple[Any, str, Any, Any]) -> list[dict[str, Any]]:
    """(process, f, invoke value, ok value) operations, each completing before the next starts."""
    events: list[dict[str, Any]] = []
    for process, f, argument, returned in ops:
        events += [invoke(process, f, argument), ok(process, f, returned)]
    return events


def linearizable(events: list[dict[str, Any]], model: str = "cas-register") -> bool:
    result = check_history(events, model)
    assert (result.witness is None) == result.ok
    return result.ok


# --- cas-register ------------------------------------------------------------------------------


def test_sequential_write_then_read_is_linearizable() -> None:
    assert linearizable(sequential((1, "write", 1, 1), (2, "read", None, 1)))
    assert linearizable(sequential((1, "read", None, None)))  # the initial value is None


def test_read_of_a_value_never_written_is_not_linearizable_and_is_its_own_witness() -> None:
    events = sequential((1, "write", 1, 1), (2, "read", None, 2))
    result = check_history(events, "cas-register")
    assert not result.ok
    assert result.witness == events[2:]
    assert "read -> 2" in result.explanation


def test_stale_read_after_a_completed_write_is_not_linearizable() -> None:
    events = sequential((1, "write", 1, 1), (2, "read", None, None))
    result = check_history(events, "cas-register")
    assert not result.ok
    assert result.witness == events  # both operations are needed to show the violation


def test_overlapping_operations_may_be_reordered() -> None:
    # The read overlaps the write, so it may see either the old or the new value.
    for seen in (None, 1):
        events = [invoke(1, "write", 1), invoke(2, "read"), ok(2, "read", seen), ok(1, "write", 1)]
        assert linearizable(events)
    # A read invoked before and returning before a write starts cannot see it.
    events = [invoke(2, "read"), ok(2, "read", 1), invoke(1, "write", 1), ok(1, "write", 1)]
    assert not linearizable(events)


def new_then_old_read() -> list[dict[str, Any]]:
    """Both reads overlap the write, but the second starts after the first saw the new value."""
    return [
        invoke(1, "write", 1),
        invoke(2, "read"),
        ok(2, "read", 1),
        invoke(3, "read"),
        ok(3, "read", None),
        ok(1, "write", 1),
    ]


def test_new_then_old_read_inversion_is_not_linearizable() -> None:
    # Both reads overlap the write, but the second starts after the first saw the new value.
    events = new_then_old_read()
    result = check_history(events, "cas-register")
    assert not result.ok
    assert result.witness == events
    # Swapping which read came first makes it legal.
    events[2]["value"], events[4]["value"] = None, 1
    assert linearizable(events)


def test_cas_ok_needs_the_expected_value() -> None:
    assert linearizable(sequential((1, "write", 0, 0), (1, "cas", [0, 1], [0, 1]), (2, "read", None, 1)))
    assert not linearizable(sequential((1, "write", 0, 0), (1, "cas", [5, 1], [5, 1])))


def test_cas_fail_is_a_read_that_saw_another_value() -> None:
    write_zero = [invoke(1, "write", 0), ok(1, "write", 0)]
    mismatch = [invoke(2, "cas", [1, 2]), fail(2, "cas", [1, 2])]
    match = [invoke(2, "cas", [0, 2]), fail(2, "cas", [0, 2])]
    assert linearizable(write_zero + mismatch)
    # The compare cannot have failed when the register surely held the expected value...
    assert not linearizable(write_zero + match)
    # ...unless the cas overlaps the write and can be ordered before it.
    assert linearizable([write_zero[0], match[0], match[1], write_zero[1]])
    # A failed cas did not write: a later read still sees the old value.
    assert linearizable(write_zero + mismatch + sequential((3, "read", None, 0)))
    assert not linearizable(write_zero + mismatch + sequential((3, "read", None, 2)))


def test_failed_write_did_not_happen() -> None:
    failed = [invoke(1, "write", 2), fail(1, "write", 2)]
    assert linearizable(failed + sequential((2, "read", None, None)))
    assert not linearizable(failed + sequential((2, "read", None, 2)))


def test_unknown_write_may_take_effect_after_its_completion_or_never() -> None:
    for unknown in ([invoke(1, "write", 1), info(1, "write", 1)], [invoke(1, "write", 1)]):
        # Needed: the only explanation for reading 1.
        assert linearizable(unknown + sequential((2, "read", None, 1)))
        # Not needed: it never took effect.
        assert linearizable(unknown + sequential((2, "read", None, None), (2, "read", None, None)))
        # It took effect between the two reads, after the `info`.
        assert linearizable(unknown + sequential((2, "read", None, None), (2, "read", None, 1)))
        # But once seen it stays: no write could undo it.
        assert not linearizable(unknown + sequential((2, "read", None, 1), (2, "read", None, None)))


def test_unknown_operation_cannot_take_effect_before_its_invoke() -> None:
    events = [*sequential((2, "read", None, 1)), invoke(1, "write", 1)]
    assert not linearizable(events)


def test_unknown_cas_may_swap_or_not() -> None:
    prefix = [*sequential((1, "write", 0, 0)), invoke(2, "cas", [0, 1]), info(2, "cas", [0, 1])]
    assert linearizable(prefix + sequential((3, "read", None, 1)))
    assert linearizable(prefix + sequential((3, "read", None, 0)))
    assert not linearizable(prefix + sequential((3, "read", None, 7)))


def test_unknown_read_constrains_nothing() -> None:
    events = [*sequential((1, "write", 1, 1)), invoke(2, "read"), info(2, "read")]
    assert linearizable(events)
    assert linearizable([*sequential((1, "write", 1, 1)), invoke(2, "read")])


def test_process_may_invoke_again_after_info_and_nemesis_events_are_ignored() -> None:
    events = [
        invoke(1, "write", 1),
        info(1, "write", 1),
        {"process": "nemesis", "type": "info", "f": "start-partition", "value": None},
        invoke(1, "write", 2),
        ok(1, "write", 2),
        invoke(2, "read"),
        ok(2, "read", 1),  # the first write took effect late
    ]
    assert linearizable(events)


def test_empty_history_is_linearizable() -> None:
    assert linearizable([])
    assert linearizable([], "kv")


# --- kv (P-compositional) ----------------------------------------------------------------------


def test_kv_checks_each_key_independently() -> None:
    events = [
        invoke(1, "write", 1, key="x"),
        ok(1, "write", 1, key="x"),
        invoke(2, "write", 2, key="y"),
        ok(2, "write", 2, key="y"),
        invoke(3, "read", key="x"),
        ok(3, "read", 1, key="x"),
        invoke(3, "read", key="y"),
        ok(3, "read", 2, key="y"),
    ]
    result = check_history(events, "kv")
    assert result.ok
    assert "2 keys" in result.explanation
    # The same operations on a single register are not linearizable.
    unkeyed = [{k: v for k, v in event.items() if k != "key"} for event in events]
    assert not linearizable(unkeyed, "cas-register")


def test_kv_violation_reports_the_key_and_only_its_events() -> None:
    events = [
        invoke(1, "write", 1, key="x"),
        invoke(2, "write", 5, key="y"),
        ok(2, "write", 5, key="y"),
        ok(1, "write", 1, key="x"),
        invoke(3, "read", key="x"),
        ok(3, "read", 1, key="x"),
        invoke(3, "read", key="y"),
        ok(3, "read", None, key="y"),  # stale
    ]
    result = check_history(events, "kv")
    assert not result.ok
    assert "key 'y'" in result.explanation
    assert result.witness is not None
    assert {event["key"] for event in result.witness} == {"y"}
    assert result.witness == [events[1], events[2], events[6], events[7]]


# --- log -----------------------------------------------------------------------------------------


def test_log_reads_must_return_an_order_consistent_with_real_time() -> None:
    concurrent = [invoke(1, "append", 1), invoke(2, "append", 2), ok(1, "append", 1)]
    concurrent.append(ok(2, "append", 2))
    for seen in ([1, 2], [2, 1]):
        assert linearizable(concurrent + sequential((3, "read", None, seen)), "log")
    ordered = sequential((1, "append", 1, 1), (2, "append", 2, 2))
    assert linearizable(ordered + sequential((3, "read", None, [1, 2])), "log")
    assert not linearizable(ordered + sequential((3, "read", None, [2, 1])), "log")
    assert not linearizable(ordered + sequential((3, "read", None, [1])), "log")  # lost append
    assert not linearizable(ordered + sequential((3, "read", None, [1, 2, 2])), "log")


def test_log_failed_and_unknown_appends() -> None:
    failed = [invoke(1, "append", 9), fail(1, "append", 9)]
    assert linearizable(failed + sequential((2, "read", None, [])), "log")
    assert not linearizable(failed + sequential((2, "read", None, [9])), "log")
    unknown = [invoke(1, "append", 9), info(1, "append", 9)]
    assert linearizable(unknown + sequential((2, "read", None, [])), "log")
    assert linearizable(unknown + sequential((2, "read", None, []), (2, "read", None, [9])), "log")
    assert not linearizable(unknown + sequential((2, "read", None, [9, 9])), "log")


# --- brute-force cross-check on small random histories ------------------------------------------


@dataclass
class SmallOp:
    process: int
    f: str
    argument: Any
    completion: str  # ok | fail | info | none
    result: Any = None
    call: int = -1
    ret: float = float("inf")


def random_small_history(rng: random.Random, model: str) -> tuple[list[dict[str, Any]], list[SmallOp]]:
    """Arbitrary (often illegal) histories of up to 6 operations on 3 processes."""
    per_process: dict[int, list[SmallOp]] = {p: [] for p in range(3)}
    size = rng.randint(1, 6)
    for number in range(size):
        if model == "log":
            f = rng.choice(["read", "append"])
            argument = number if f == "append" else None
            result = rng.sample(range(size), rng.randint(0, min(3, size))) if f == "read" else None
        else:
            f = rng.choice(["read", "write", "cas"])
            argument = None
            if f == "write":
                argument = rng.randint(0, 2)
            elif f == "cas":
                argument = [rng.choice([None, 0, 1, 2]), rng.randint(0, 2)]
            result = rng.choice([None, 0, 1, 2]) if f == "read" else None
        completion = rng.choices(["ok", "fail", "info", "none"], weights=[8, 1, 1, 1])[0]
        per_process[rng.randrange(3)].append(SmallOp(-1, f, argument, completion, result))
    for process, ops in per_process.items():
        for position, op in enumerate(ops):
            op.process = process
            if op.completion == "none" and position != len(ops) - 1:
                op.completion = "info"  # only a process's last operation may lack a completion
    events: list[dict[str, Any]] = []
    cursors = {p: [0, False] for p in per_process}  # op index, invoked?
    while any(cursor[0] < len(per_process[p]) for p, cursor in cursors.items()):
        process = rng.choice([p for p, c in cursors.items() if c[0] < len(per_process[p])])
        cursor = cursors[process]
        op = per_process[process][cursor[0]]
        if not cursor[1]:
            op.call = len(events)
            events.append(invoke(process, op.f, op.argument))
            cursor[1] = True
            if op.completion == "none":
                cursor[0] += 1
            continue
        op.ret = len(events) if op.completion in ("ok", "fail") else float("inf")
        value = op.result if op.f == "read" else op.argument
        events.append({"process": process, "type": op.completion, "f": op.f, "value": value})
        cursor[0], cursor[1] = cursor[0] + 1, False
    return events, [op for ops in per_process.values() for op in ops]


def brute_force_linearizable(ops: list[SmallOp], model: str) -> bool:
    """Try every subset of unknown-outcome operations and every order of the chosen ones."""
    definite = [op for op in ops if op.completion == "ok" or (op.completion == "fail" and op.f == "cas")]
    # Reads with unknown results are always-legal no-ops; failed reads/writes never happened.
    maybe = [op for op in ops if op.completion in ("info", "none") and op.f != "read"]
    for size in range(len(maybe) + 1):
        for chosen in itertools.combinations(maybe, size):
            for order in itertools.permutations(definite + list(chosen)):
                if _respects_real_time(order) and _legal_sequence(order, model):
                    return True
    return False


def _respects_real_time(order: tuple[SmallOp, ...]) -> bool:
    return all(later.ret > earlier.call for i, earlier in enumerate(order) for later in order[i + 1 :])


def _legal_sequence(order: tuple[SmallOp, ...], model: str) -> bool:
    state: Any = [] if model == "log" else None
    for op in order:
        if op.f == "read":
            if op.result != state:
                return False
        elif op.f == "append":
            state = [*state, op.argument]
        elif op.f == "write":
            state = op.argument
        elif op.completion == "ok":
            if state != op.argument[0]:
                return False
            state = op.argument[1]
        elif op.completion == "fail":
            if state == op.argument[0]:
                return False
        elif state == op.argument[0]:  # an unknown cas that took effect
            state = op.argument[1]
    return True


@pytest.mark.parametrize(("model", "cases", "each_verdict"), [("cas-register", 1000, 200), ("log", 600, 100)])
def test_agrees_with_brute_force_on_small_random_histories(model: str, cases: int, each_verdict: int) -> None:
    rng = random.Random(20240604)
    verdicts = {True: 0, False: 0}
    for _ in range(cases):
        events, ops = random_small_history(rng, model)
        expected = brute_force_linearizable(ops, model)
        assert check_history(events, model).ok == expected, events
        verdicts[expected] += 1
    # Both verdicts must be well represented or the comparison proves little.
    assert min(verdicts.values()) >= each_verdict, verdicts


# --- generated histories: sequential simulation with concurrent windows -----------------------


def simulate(
    rng: random.Random,
    model: str,
    operations: int,
    processes: int,
    keys: int = 1,
    fail_rate: float = 0.05,
    info_rate: float = 0.05,
    values: int | None = 5,
) -> list[dict[str, Any]]:
    """A linearizable history: each operation takes effect at one random instant inside its
    invoke..completion window (or, for `info`/missing completions, possibly never). Register
    writes draw from `values` values (few values: many operations depend on each other), or
    are all distinct with `values=None`."""
    functions = ("append", "read") if model == "log" else ("read", "write", "cas")
    state: dict[str, Any] = {f"k{i}": [] if model == "log" else None for i in range(keys)}
    events: list[dict[str, Any]] = []
    idle = list(range(processes))
    next_process = processes
    in_flight: dict[int, dict[str, Any]] = {}
    invoked = 0
    fresh = itertools.count()

    def new_value() -> int:
        return next(fresh) if values is None else rng.randrange(values)

    while invoked < operations or in_flight:
        if idle and invoked < operations and (not in_flight or rng.random() < 0.5):
            process = idle.pop(rng.randrange(len(idle)))
            key, f = rng.choice(sorted(state)), rng.choice(functions)
            if f == "append":
                value = next(fresh)
            elif f == "write":
                value = new_value()
            elif f == "cas":
                expected = state[key] if rng.random() < 0.5 else new_value()
                value = [expected, new_value()]
            else:
                value = None
            roll = rng.random()
            fate = "fail" if roll < fail_rate and f != "cas" else "ok"
            fate = "info" if fail_rate <= roll < fail_rate + info_rate else fate
            event = invoke(process, f, value, **({"key": key} if model == "kv" else {}))
            events.append(event)
            in_flight[process] = {"event": event, "fate": fate, "done": False}
            invoked += 1
            continue
        process = rng.choice(sorted(in_flight))
        op = in_flight[process]
        event = op["event"]
        key = event.get("key", "k0")
        if not op["done"]:  # the linearization point
            op["done"] = True
            if op["fate"] == "ok" or (op["fate"] == "info" and rng.random() < 0.5):
                f, value = event["f"], event["value"]
                if f == "read":
                    op["result"] = list(state[key]) if model == "log" else state[key]
                elif f == "write":
                    state[key] = value
                elif f == "append":
                    state[key].append(value)
                else:
                    op["matched"] = state[key] == value[0]
                    state[key] = value[1] if op["matched"] else state[key]
            continue
        del in_flight[process]
        completion = {k: v for k, v in event.items() if k != "type"}
        if op["fate"] == "info":
            if rng.random() < 0.5:
                events.append({**completion, "type": "info"})
            idle.append(next_process)  # Jepsen retires a process whose outcome is unknown
            next_process += 1
            continue
        kind = "fail" if op["fate"] == "fail" or op.get("matched") is False else "ok"
        if event["f"] == "read" and kind == "ok":
            completion["value"] = op["result"]
        events.append({**completion, "type": kind})
        idle.append(process)
    return events


def mutate_one_read(rng: random.Random, events: list[dict[str, Any]], model: str) -> dict[str, Any]:
    """Make a random ok read return a value no operation wrote."""
    reads = [e for e in events if e["type"] == "ok" and e["f"] == "read"]
    victim = rng.choice(reads)
    victim["value"] = [*victim["value"], -1] if model == "log" else -1
    return victim


def make_one_read_stale(rng: random.Random, events: list[dict[str, Any]], model: str) -> dict[str, Any]:
    """Make an ok read return an older state, which is illegal yet only written values appear:
    a register read sees a value whose only write (values are distinct) was followed by another
    completed write before the read began; a log read sees two appends swapped although one
    completed before the other began."""
    ok_ops = []  # (invoke, completion, invoke index, completion index)
    started: dict[Any, int] = {}
    for index, event in enumerate(events):
        if event["type"] == "invoke":
            started[event["process"]] = index
        elif event["type"] == "ok":
            begin = started[event["process"]]
            ok_ops.append((events[begin], event, begin, index))
    writes = [op for op in ok_ops if op[0]["f"] in ("write", "append")]
    reads = [op for op in ok_ops if op[0]["f"] == "read"]
    rng.shuffle(reads)
    for _, victim, read_call, _ in reads:
        if model == "log":
            done = {w[0]["value"]: (w[2], w[3]) for w in writes}
            seen = victim["value"]
            for i in range(len(seen) - 1):
                first, second = done.get(seen[i]), done.get(seen[i + 1])
                if first and second and first[1] < second[0]:
                    seen[i], seen[i + 1] = seen[i + 1], seen[i]
                    return victim
            continue
        same_key = [w for w in writes if w[0].get("key") == victim.get("key") and w[3] < read_call]
        for old, newer in itertools.combinations(same_key, 2):
            if old[3] < newer[2] and old[0]["value"] != victim["value"]:
                victim["value"] = old[0]["value"]
                return victim
    raise AssertionError("no read could be made stale")


GENERATED = pytest.mark.parametrize(
    ("model", "operations", "processes", "keys", "info_rate"),
    [("cas-register", 1000, 5, 1, 0.01), ("kv", 2000, 5, 10, 0.05), ("log", 300, 4, 1, 0.05)],
)


@GENERATED
@pytest.mark.parametrize("values", [5, None])
def test_generated_legal_history_is_accepted_quickly(
    model: str, operations: int, processes: int, keys: int, info_rate: float, values: int | None
) -> None:
    rng = random.Random(operations + keys)
    events = simulate(rng, model, operations, processes, keys, info_rate=info_rate, values=values)
    assert sum(e["type"] == "info" for e in events) > 0
    started = time.perf_counter()
    result = check_history(events, model)
    elapsed = time.perf_counter() - started
    assert result.ok, result.explanation
    assert elapsed < 3.0, f"{model}: {elapsed:.2f} s"


@GENERATED
def test_generated_history_with_a_stale_read_is_rejected(
    model: str, operations: int, processes: int, keys: int, info_rate: float
) -> None:
    rng = random.Random(operations + keys)
    events = simulate(rng, model, operations, processes, keys, info_rate=info_rate, values=None)
    victim = make_one_read_stale(rng, events, model)
    result = check_history(events, model)
    assert not result.ok
    assert result.witness is not None
    assert victim in result.witness
    assert not check_history(result.witness, model).ok
    if model != "log":
        # The stale read, the write it saw, the write that overwrote it, and little else.
        # (A log read depends on every append it lists, so those witnesses stay large.)
        assert len(result.witness) <= 10, result.witness


@GENERATED
def test_read_of_a_value_nobody_wrote_is_its_own_witness(
    model: str, operations: int, processes: int, keys: int, info_rate: float
) -> None:
    rng = random.Random(5)
    events = simulate(rng, model, operations, processes, keys, info_rate=info_rate)
    victim = mutate_one_read(rng, events, model)
    result = check_history(events, model)
    assert result.witness is not None
    assert len(result.witness) == 2
    assert result.witness[1] == victim
    assert "observed a value that no operation wrote" in result.explanation


def test_search_budget_raises_instead_of_running_on() -> None:
    events = simulate(random.Random(3), "cas-register", 300, 5)
    assert check_history(events, "cas-register", max_steps=10**7).ok
    with pytest.raises(SearchBudgetExceeded, match="within 50 search steps"):
        check_history(events, "cas-register", max_steps=50)


def test_kv_2000_operations_check_well_under_a_second() -> None:
    events = simulate(random.Random(1), "kv", 2000, 5, keys=10)
    assert sum(e["type"] == "invoke" for e in events) == 2000
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        assert check_history(events, "kv").ok
        timings.append(time.perf_counter() - started)
    # The brief's target is "well under a second"; the bound leaves room for slow CI machines.
    assert min(timings) < 1.0, timings


# --- witnesses ---------------------------------------------------------------------------------


def operations_of(events: list[dict[str, Any]], model: str) -> list[Operation]:
    locations = [f"<history>:{n}" for n in range(1, len(events) + 1)]
    return parse_operations(events, locations, MODELS[model])


@functools.cache
def legal_and_illegal_histories(model: str) -> tuple[list[Any], list[Any]]:
    """Small random histories, and simulated ones with unknown outcomes and small value ranges
    (so that many operations depend on each other), split by verdict."""
    rng = random.Random(11)
    histories = [random_small_history(rng, model)[0] for _ in range(300)]
    for _ in range(30):
        histories.append(simulate(rng, model, 30, 3, fail_rate=0.1, info_rate=0.15))
        events = simulate(rng, model, 30, 3, fail_rate=0.1, info_rate=0.15, values=None)
        histories.append(events)
        mutated = json.loads(json.dumps(events))
        with contextlib.suppress(AssertionError):  # no read could be made stale
            make_one_read_stale(rng, mutated, model)
            histories.append(mutated)
    verdicts = [check_history(events, model).ok for events in histories]
    legal = [h for h, ok in zip(histories, verdicts, strict=True) if ok]
    return legal, [h for h, ok in zip(histories, verdicts, strict=True) if not ok]


@pytest.mark.parametrize("model", ["cas-register", "log"])
def test_footprint_removals_keep_legal_histories_legal(model: str) -> None:
    # The shrinker may only drop what this allows, so that an illegal witness proves the whole
    # history illegal. Single operations and runs of up to 4 concurrent-ish ones are tried.
    spec = MODELS[model]
    allowed = refused = 0
    for events in legal_and_illegal_histories(model)[0]:
        ops = operations_of(events, model)
        footprint = spec.footprint(ops)
        groups = [ops[i : i + size] for size in (1, 2, 3, 4) for i in range(len(ops) - size + 1)]
        for group in groups:
            if not footprint.removable(group):
                refused += 1
                continue
            allowed += 1
            rest = [op for op in ops if op not in group]
            assert is_linearizable(rest, spec), (events, group)
    assert allowed > 500 and refused > 100, (allowed, refused)


@pytest.mark.parametrize("model", ["cas-register", "log"])
def test_witness_is_an_illegal_sub_history_with_no_removable_operation_left(model: str) -> None:
    spec = MODELS[model]
    illegal = legal_and_illegal_histories(model)[1]
    assert len(illegal) > 100
    shrunk = stopped = 0
    for events in illegal:
        result = check_history(events, model)
        shrunk += "observed a value that no operation wrote" not in result.explanation
        assert result.witness is not None
        remaining = iter(events)
        assert all(event in remaining for event in result.witness)  # a sub-history, in order
        assert not check_history(result.witness, model).ok
        if "shrinking stopped" in result.explanation:
            stopped += 1  # a proof still, but not necessarily minimal
            continue
        # Every removal the shrinker may make (the footprint allows it, and it leaves no
        # operation newly observing a value nobody wrote) makes the witness linearizable.
        ops = operations_of(result.witness, model)
        footprint, unexplained = spec.footprint(ops), spec.unexplained(ops)
        for op in ops:
            rest = [o for o in ops if o is not op]
            if footprint.removable((op,)) and spec.unexplained(rest) <= unexplained:
                assert is_linearizable(rest, spec), result.witness
    assert shrunk > 50  # most witnesses come from shrinking, not from a lone impossible read
    assert stopped <= len(illegal) // 20, stopped


def test_witness_keeps_the_write_a_read_observed() -> None:
    # Shrinking must not drop the write and report "read 1, never written": that hides the
    # real violation (the second read went back in time).
    events = new_then_old_read()
    result = check_history(events, "cas-register")
    assert result.witness == events
    assert "3 operations" in result.explanation


def test_witness_drops_operations_that_cannot_matter() -> None:
    events = [
        *sequential((1, "write", 1, 1), (2, "read", None, 1), (1, "write", 2, 2)),
        invoke(3, "cas", [7, 8]),
        fail(3, "cas", [7, 8]),
        *sequential((2, "read", None, 1)),  # stale: the write of 2 had completed
        *sequential((1, "write", 3, 3), (2, "read", None, 3)),
    ]
    result = check_history(events, "cas-register")
    # Dropping the write of 1 would also "prove" it (a read of a value nobody wrote), but
    # would hide what went wrong.
    assert result.witness == events[0:2] + events[4:6] + events[8:10]
    assert result.explanation.endswith("process 1 write 1; process 1 write 2; process 2 read -> 1")


# --- the command function ----------------------------------------------------------------------


def write_history(path: Any, events: list[Any]) -> str:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return str(path)


def test_run_check_history_exit_codes_and_words(tmp_path: Any) -> None:
    legal = write_history(tmp_path / "legal.jsonl", sequential((1, "write", 1, 1), (2, "read", None, 1)))
    out = io.StringIO()
    assert run_check_history(legal, "cas-register", out) == 0
    assert out.getvalue().splitlines()[0] == "linearizable"

    illegal_events = sequential((1, "write", 1, 1), (2, "read", None, 3))
    illegal = write_history(tmp_path / "illegal.jsonl", illegal_events)
    out = io.StringIO()
    assert run_check_history(illegal, "cas-register", out) == 1
    lines = out.getvalue().splitlines()
    assert lines[0] == "not linearizable"
    assert lines[1].startswith("not linearizable: ")
    assert lines[2] == "witness (2 events):"
    assert [json.loads(line) for line in lines[3:]] == illegal_events[2:]


def test_run_check_history_bad_input_exits_2(tmp_path: Any) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"process": 1, "type": "invoke", "f": "read"}\nnot json\n')
    out = io.StringIO()
    assert run_check_history(str(bad), "cas-register", out) == 2
    assert out.getvalue().startswith(f"error: {bad}:2: not valid JSON")

    out = io.StringIO()
    assert run_check_history(str(tmp_path / "missing.jsonl"), "kv", out) == 2
    assert "cannot read" in out.getvalue()

    out = io.StringIO()
    assert run_check_history(str(bad), "queue", out) == 2
    assert "unknown model 'queue'" in out.getvalue()


def test_model_specific_errors_name_the_file_line(tmp_path: Any) -> None:
    path = write_history(tmp_path / "h.jsonl", [invoke(1, "append", 1), ok(1, "append", 1)])
    out = io.StringIO()
    assert run_check_history(path, "cas-register", out) == 2
    assert f"{path}:1: unknown f 'append' for model 'cas-register'" in out.getvalue()


def test_unknown_model_raises_a_typed_error() -> None:
    with pytest.raises(UnknownModelError, match="expected one of cas-register, kv, log"):
        check_history([], "register")


def test_result_is_a_frozen_value() -> None:
    result = check_history([], "log")
    assert isinstance(result, LinearizabilityResult)
    with pytest.raises(AttributeError):
        result.ok = False  # type: ignore[misc]


# --- HistoryFormatError --------------------------------------------------------------------------

W1 = json.dumps(invoke(1, "write", 1))


@pytest.mark.parametrize(
    ("lines", "line", "reason"),
    [
        ([W1, "{oops"], 2, "not valid JSON"),
        (["[1, 2]"], 1, "expected a JSON object per event, got list"),
        (['{"type": "invoke", "f": "read"}'], 1, "missing field 'process'"),
        (['{"process": 1, "f": "read"}'], 1, "missing field 'type'"),
        (['{"process": 1, "type": "invoke"}'], 1, "missing field 'f'"),
        (['{"process": 1, "type": "done", "f": "read"}'], 1, "unknown type 'done'"),
        (['{"process": 1, "type": "invoke", "f": "incr"}'], 1, "unknown f 'incr'"),
        (['{"process": true, "type": "invoke", "f": "read"}'], 1, "'process' must be"),
        (['{"process": 1, "type": "invoke", "f": "write"}'], 1, "missing field 'value'"),
        (['{"process": 1, "type": "invoke", "f": "cas", "value": 3}'], 1, "cas value must be"),
        ([W1, "", json.dumps(ok(2, "write", 1))], 3, "has no outstanding invoke"),
        ([W1, json.dumps(invoke(1, "read"))], 2, "is still outstanding"),
        ([W1, json.dumps(ok(1, "read", 1))], 2, "outstanding invoke at"),
        (
            [json.dumps(invoke(1, "read")), '{"process": 1, "type": "ok", "f": "read"}'],
            2,
            "missing field 'value'",
        ),
    ],
)
def test_history_format_errors_name_file_line_and_reason(
    tmp_path: Any, lines: list[str], line: int, reason: str
) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(HistoryFormatError) as caught:
        load_history(str(path))
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert reason in str(caught.value)


def test_load_history_skips_blank_lines_and_keeps_order(tmp_path: Any) -> None:
    events = sequential((1, "write", 1, 1), (2, "read", None, 1))
    path = tmp_path / "h.jsonl"
    lines = [json.dumps(e) for e in events]
    path.write_text("\n".join([*lines[:2], "", "  ", *lines[2:]]) + "\n")
    assert load_history(str(path)) == events


@pytest.mark.parametrize(
    ("events", "model", "reason"),
    [
        ([invoke(1, "read")], "kv", "<history>:1: missing field 'key' (required by model 'kv')"),
        ([invoke(1, "read", key="x")], "cas-register", "<history>:1: event has a 'key' field"),
        (
            [invoke(1, "read", key="x"), ok(1, "read", 1, key="y")],
            "kv",
            "<history>:2: completion key 'y' differs",
        ),
        ([invoke(1, "read"), ok(1, "read", 1)], "log", "<history>:2: a 'log' read must return"),
        ([invoke(1, "cas", [1, 2])], "log", "<history>:1: unknown f 'cas' for model 'log'"),
    ],
)
def test_model_specific_format_errors(events: list[dict[str, Any]], model: str, reason: str) -> None:
    with pytest.raises(HistoryFormatError) as caught:
        check_history(events, model)
    assert str(caught.value).startswith(reason)
