"""Hostile topology files get a path-named TopologyError, within bounded time and memory.

Each file is loaded in a child process with an address-space limit and a timeout, so a regression
(unbounded expansion, a runaway recursion) fails the test instead of eating the shared machine. Each
case first checks that its input really is hostile to a plain ``yaml.safe_load``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from supervisors.safe_yaml import MAX_NODES
from supervisors.topology import MAX_FILE_BYTES, TopologyError, load_topology, parse_topology

REPO = Path(__file__).resolve().parents[2]
CHILD_MEMORY_BYTES = 768 * 1024 * 1024  # the loader with pydantic and Thespian imported needs ~200 MB
CHILD_TIMEOUT_S = 60  # far above the ~1 s a bounded load takes on a loaded 2-core machine

_CHILD = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from supervisors.topology import TopologyError, load_topology
try:
    topo = load_topology(sys.argv[1])
    print(json.dumps({{"ok": True, "nodes": [n.name for n in topo.nodes]}}))
except TopologyError as exc:
    print(json.dumps({{"ok": False, "errors": exc.errors}}))
"""

VALID_TREE = """nodes:
  - name: n1
    data_dir: ./d
    tree:
      id: root
      children:
        - id: counter
          actor: actors.examples.Counter
"""


def load_in_child(path: Path) -> dict[str, Any]:
    """``load_topology(path)`` in a memory-limited child; any other exception fails the child."""
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD.format(limit=CHILD_MEMORY_BYTES), str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, f"loader raised something else than TopologyError:\n{proc.stderr[-3000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def errors_of(tmp_path: Path, content: str | bytes) -> list[str]:
    path = tmp_path / "t.yaml"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    result = load_in_child(path)
    assert result["ok"] is False, result
    return list(result["errors"])


def billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def expanded_size(value: Any) -> int:
    """Values a walker visits, following shared references as copies (what pydantic would build)."""
    if isinstance(value, list):
        return 1 + sum(expanded_size(v) for v in value)
    if isinstance(value, dict):
        return 1 + sum(expanded_size(v) for v in value.values())
    return 1


def test_billion_laughs_is_refused_at_the_alias_that_crosses_the_node_limit(tmp_path: Path) -> None:
    text = billion_laughs()
    small = yaml.safe_load(billion_laughs(levels=3))  # the same shape, small enough to walk
    assert expanded_size(small["a3"]) == (10**5 - 1) // 9  # level k stands for (10**(k+2) - 1) / 9 values
    assert 1000 * MAX_NODES < (10**11 - 1) // 9  # level 9: ten billion values for whatever walks it
    (error,) = errors_of(tmp_path, text)
    assert error.startswith(f"{tmp_path / 't.yaml'}:")
    assert "not valid YAML" in error and f"more than {MAX_NODES} values" in error
    line = int(error.split(":")[1])
    assert 2 <= line <= 10  # at an alias line, not at the end of the file


def test_alias_cycle_is_refused(tmp_path: Path) -> None:
    text = VALID_TREE + "          args: &me {self: *me}\n"
    cyclic = yaml.safe_load(text)["nodes"][0]["tree"]["children"][0]["args"]
    assert cyclic["self"] is cyclic  # a plain loader builds the cycle
    (error,) = errors_of(tmp_path, text)
    assert ":9: not valid YAML: alias *me is inside its own anchor (a cycle)" in error


@pytest.mark.parametrize(
    "nesting",
    [
        "x: " + "[" * 5000 + "]" * 5000 + "\n",
        "x:\n" + "- " * 5000 + "leaf\n",
    ],
    ids=["flow", "block"],
)
def test_deep_nesting_is_refused(tmp_path: Path, nesting: str) -> None:
    with pytest.raises(RecursionError):
        yaml.safe_load(nesting)
    (error,) = errors_of(tmp_path, nesting)
    assert "not valid YAML: nested deeper than 64 levels" in error
    assert error.startswith(f"{tmp_path / 't.yaml'}:")


def test_non_utf8_bytes_name_the_line(tmp_path: Path) -> None:
    content = VALID_TREE.encode().replace(b"id: counter", b"id: caf\xe9")
    with pytest.raises(UnicodeDecodeError):
        content.decode("utf-8")
    (error,) = errors_of(tmp_path, content)
    assert error == f"{tmp_path / 't.yaml'}:7: not UTF-8 text (byte 0xe9); save it as UTF-8"


def test_nul_and_control_characters_name_the_line(tmp_path: Path) -> None:
    (error,) = errors_of(tmp_path, VALID_TREE.replace("id: counter", "id: c\x00ounter"))
    assert error.startswith(f"{tmp_path / 't.yaml'}:7: not valid YAML: character '\\x00' is not allowed")


def test_a_5000_digit_integer_is_refused_at_its_line(tmp_path: Path) -> None:
    text = VALID_TREE.replace("id: root", "id: root\n      intensity: " + "9" * 5000)
    with pytest.raises(ValueError, match="integer string conversion"):
        yaml.safe_load(text)
    (error,) = errors_of(tmp_path, text)
    assert error == f"{tmp_path / 't.yaml'}:6: not valid YAML: number longer than 64 characters (column 18)"


def test_an_impossible_date_is_refused_at_its_line(tmp_path: Path) -> None:
    text = VALID_TREE + "          args: {since: 2020-13-45}\n"
    with pytest.raises(ValueError, match=r"month must be in 1\.\.12"):
        yaml.safe_load(text)
    (error,) = errors_of(tmp_path, text)
    assert f"{tmp_path / 't.yaml'}:9: not valid YAML: cannot read this value: month must be" in error


@pytest.mark.parametrize(
    ("setting", "path"),
    [
        ("shutdown_timeout: .inf", "children[0].shutdown_timeout"),
        ("backoff: {max: .inf}", "children[0].backoff.max"),
        ("shutdown_timeout: 1.0e+999", "children[0].shutdown_timeout"),
        ("shutdown_timeout: .nan", "children[0].shutdown_timeout"),
    ],
)
def test_infinite_or_nan_timeouts_are_refused(setting: str, path: str) -> None:
    text = VALID_TREE + f"          {setting}\n"
    raw = yaml.safe_load(text)["nodes"][0]["tree"]["children"][0]
    assert not all(abs(v) < float("inf") for v in _floats(raw))  # really infinite or NaN
    with pytest.raises(TopologyError) as err:
        parse_topology(text, "t.yaml")
    assert err.value.errors == [f"t.yaml:9: nodes[0].tree.{path}: Input should be a finite number"]


def _floats(value: Any) -> list[float]:
    if isinstance(value, dict):
        return [f for v in value.values() for f in _floats(v)]
    return [value] if isinstance(value, float) else []


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("shutdown_timeout: 86400", "shutdown_timeout: Input should be less than or equal to 3600"),
        ("backoff: {max: 1000000}", "backoff.max: Input should be less than or equal to 3600"),
        ("poison_after: 5000", "poison_after: Input should be less than or equal to 1000"),
    ],
)
def test_absurd_timeouts_have_an_upper_bound(setting: str, message: str) -> None:
    with pytest.raises(TopologyError) as err:
        parse_topology(VALID_TREE + f"          {setting}\n", "t.yaml")
    assert err.value.errors == [f"t.yaml:9: nodes[0].tree.children[0].{message}"]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("id: 42", "id: Input should be a valid string"),
        ("intensity: true", "intensity: Input should be a valid integer"),
        ("intensity: '3'", "intensity: Input should be a valid integer"),
        ("intensity: 3.5", "intensity: Input should be a valid integer"),
        ("intensity: 100000", "intensity: Input should be less than or equal to 10000"),
        ("period: true", "period: Input should be a valid number"),
        ("period: '5'", "period: Input should be a valid number"),
    ],
)
def test_types_are_strict(setting: str, message: str) -> None:
    text = VALID_TREE.replace("      id: root\n", f"      {setting}\n      id: root\n", 1)
    if setting.startswith("id:"):  # replaces the root's id
        text = VALID_TREE.replace("      id: root\n", f"      {setting}\n")
    with pytest.raises(TopologyError) as err:
        parse_topology(text, "t.yaml")
    assert err.value.errors == [f"t.yaml:5: nodes[0].tree.{message}"]


def test_duplicate_keys_are_errors_reported_with_the_schema_errors_sorted_by_line() -> None:
    text = VALID_TREE.replace("      id: root\n", "      id: root\n      intensity: 3\n      intensity: 30\n")
    text += "          restart: sometimes\n          args: {a: 1, a: 2}\n"
    assert yaml.safe_load(text)["nodes"][0]["tree"]["intensity"] == 30  # a plain loader keeps the last
    with pytest.raises(TopologyError) as err:
        parse_topology(text, "t.yaml")
    assert err.value.errors == [
        "t.yaml:7: nodes[0].tree.intensity: duplicate key (YAML would silently keep only the last one)",
        "t.yaml:11: nodes[0].tree.children[0].restart: must be one of permanent, transient, temporary",
        "t.yaml:12: nodes[0].tree.children[0].args.a: duplicate key (YAML would silently keep only the "
        "last one)",
        "t.yaml:12: nodes[0].tree.children[0].args.a: unknown key (this actor takes no args)",
    ]


def test_merge_keys_are_not_duplicates() -> None:
    text = VALID_TREE.replace(
        "          actor: actors.examples.Counter\n",
        "          actor: actors.examples.Counter\n"
        "          backoff: &fast {min: 0.5, max: 4}\n"
        "        - id: other\n"
        "          actor: actors.examples.Counter\n"
        "          backoff: {<<: *fast, max: 8}\n",
    )
    other = parse_topology(text, "t.yaml").node(None).tree.children[1]
    assert (other.backoff.min_s, other.backoff.max_s) == (0.5, 8)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nodes: [\n  {name: a,\n", ":3: not valid YAML: while parsing a flow node"),
        ("nodes:\n\t- name: a\n", ":2: not valid YAML: while scanning for the next token"),
        ("a: 1\n---\nb: 2\n", ":2: not valid YAML: expected a single document in the stream"),
        ("a: *nope\n", ":1: not valid YAML: found undefined alias 'nope'"),
        ("a: !!python/object:os.system {}\n", ":1: not valid YAML: could not determine a constructor"),
        ("- 1\n- 2\n", ":1: top level must be a mapping with a 'nodes:' list"),
        ("", ":1: top level must be a mapping with a 'nodes:' list"),
    ],
)
def test_yaml_errors_are_file_line_errors(tmp_path: Path, text: str, message: str) -> None:
    (error,) = errors_of(tmp_path, text)
    assert error.startswith(f"{tmp_path / 't.yaml'}{message}"), error


def test_a_huge_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    with open(path, "wb") as handle:  # sparse: 2 GiB on paper, a few blocks on disk
        handle.write(VALID_TREE.encode())
        handle.truncate(2 * 1024**3)
    assert path.stat().st_size > CHILD_MEMORY_BYTES  # reading it whole would fail the child
    result = load_in_child(path)
    assert result["errors"] == [f"{path}: larger than {MAX_FILE_BYTES // 1024} KiB; a topology is a few KB"]


def test_a_fifo_or_a_directory_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    # opening a FIFO for reading blocks until a writer comes: the child's timeout bounds a regression
    assert load_in_child(fifo)["errors"] == [f"{fifo}: not a regular file"]
    with pytest.raises(TopologyError, match="cannot read: Is a directory"):
        load_topology(tmp_path)


def test_many_errors_are_capped() -> None:
    children = "".join(
        f"        - {{id: c{i}, actor: actors.examples.Counter, restart: x}}\n" for i in range(80)
    )
    text = VALID_TREE.split("        - id: counter")[0] + children
    with pytest.raises(TopologyError) as err:
        parse_topology(text, "t.yaml")
    assert len(err.value.errors) == 51 and err.value.errors[-1] == "... and 30 more error(s)"
    assert err.value.errors[0].startswith("t.yaml:7: nodes[0].tree.children[0].restart")


def test_an_actor_module_that_exits_on_import_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "exits_on_import.py").write_text("import sys\nsys.exit(3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(TopologyError) as err:
        parse_topology(VALID_TREE.replace("actors.examples.Counter", "exits_on_import.Thing"), "t.yaml")
    assert err.value.errors == [
        "t.yaml:8: nodes[0].tree.children[0].actor: cannot import module 'exits_on_import': SystemExit: 3"
    ]
