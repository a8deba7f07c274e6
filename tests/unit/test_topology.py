from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from supervisors.cli import main
from supervisors.spec import Strategy, SupervisorSpec, WorkerSpec
from supervisors.topology import DEFAULT_TOPOLOGY, TopologyError, load_topology, parse_topology

GOOD = """
nodes:
  - name: n1
    data_dir: ./d
    tree:
      id: root
      strategy: rest_for_one
      children:
        - id: counter
          actor: actors.examples.Counter
          backoff: {min: 0.5, max: 4}
        - id: sub
          children:
            - {id: hb, actor: actors.examples.Heartbeat, restart: transient}
"""

BAD = """
nodes:
  - name: n1
    data_dir: ./d
    colour: red
    tree:
      id: root
      strategy: one_for_some
      children:
        - id: a
          actor: actors.examples.Counter
        - id: b
          actor: actors.examples.Counter
        - id: c
          actor: actors.examples.Counter
          restart: sometimes
        - id: d
          actor: actors.examples.Nope
"""


def test_good_topology_becomes_specs(tmp_path: Path) -> None:
    topo = parse_topology(GOOD, "good.yaml", base_dir=tmp_path)
    node = topo.node(None)
    assert node.data_dir == (tmp_path / "d").resolve()
    assert node.tree.strategy is Strategy.REST_FOR_ONE
    counter, sub = node.tree.children
    assert isinstance(counter, WorkerSpec) and counter.backoff.min_s == 0.5
    assert isinstance(sub, SupervisorSpec) and sub.children[0].restart == "transient"


def test_all_schema_errors_at_once_with_paths_and_lines() -> None:
    with pytest.raises(TopologyError) as err:
        parse_topology(BAD, "bad.yaml")
    assert err.value.errors == [  # sorted by line
        "bad.yaml:5: nodes[0].colour: unknown key",
        "bad.yaml:8: nodes[0].tree.strategy: must be one of one_for_one, one_for_all, rest_for_one",
        "bad.yaml:16: nodes[0].tree.children[2].restart: must be one of permanent, transient, temporary",
        "bad.yaml:18: nodes[0].tree.children[3].actor: module 'actors.examples' has no class 'Nope'",
    ]


@pytest.mark.parametrize(
    ("actor", "message"),
    [
        ("actors.nope.Thing", "cannot import module 'actors.nope'"),
        ("actors.examples.Nope", "module 'actors.examples' has no class 'Nope'"),
        ("actors.eventlog.EventLog", "actors.eventlog.EventLog is not a SupervisedActor subclass"),
    ],
)
def test_actor_class_is_checked_before_anything_starts(actor: str, message: str) -> None:
    text = GOOD.replace("actors.examples.Counter", actor)
    with pytest.raises(TopologyError) as err:
        parse_topology(text, "t.yaml")
    (error,) = err.value.errors
    assert error.startswith(f"t.yaml:10: nodes[0].tree.children[0].actor: {message}")


def test_duplicate_ids_and_node_selection() -> None:
    text = GOOD.replace("id: sub", "id: counter")
    with pytest.raises(TopologyError, match=r"children\[1\]\.id: duplicate child id 'counter'"):
        parse_topology(text, "t.yaml")
    two = GOOD + GOOD.split("nodes:\n", 1)[1].replace("name: n1", "name: n2")
    topo = parse_topology(two, "t.yaml")
    assert topo.node("n2").name == "n2"
    with pytest.raises(TopologyError, match="--node is required"):
        topo.node(None)
    with pytest.raises(TopologyError, match="no such node"):
        topo.node("n9")


def test_default_topology_is_shipped_and_valid() -> None:
    assert DEFAULT_TOPOLOGY.exists()
    assert load_topology().nodes[0].data_dir.name == "edge-1"


def test_validate_command_exit_codes(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(GOOD)
    bad.write_text(BAD)
    runner = CliRunner()
    ok = runner.invoke(main, ["validate", str(good)])
    assert ok.exit_code == 0 and "ok (1 node(s): n1)" in ok.output
    failed = runner.invoke(main, ["validate", str(bad)])
    assert failed.exit_code == 1 and "must be one of permanent, transient, temporary" in failed.output
    missing = runner.invoke(main, ["validate", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 1 and "cannot read" in missing.output


@pytest.mark.parametrize(
    "path", sorted(Path(__file__).resolve().parents[2].joinpath("config").glob("*.yaml"))
)
def test_shipped_topologies_are_valid(path: Path) -> None:
    assert load_topology(path).nodes


def test_poison_after_is_per_child_with_default_and_bounds() -> None:
    text = GOOD.replace("restart: transient}", "restart: transient, poison_after: 7}")
    tree = parse_topology(text, "t.yaml").node(None).tree
    assert tree.poison_after == 3 and tree.children[0].poison_after == 3
    assert tree.children[1].children[0].poison_after == 7
    for bad in ("0", "1001"):
        with pytest.raises(TopologyError, match=r"children\[0\]\.poison_after"):
            parse_topology(text.replace("poison_after: 7", f"poison_after: {bad}"), "t.yaml")
