"""Every built-in actor's ``Args`` schema: its defaults are the ones the actor used to read with
``args.get``, and ``garrison validate`` on a real file names a typo (with a suggestion), a wrong type and an
out-of-range value by path and line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner

from actors.args import check_args, validate_args
from actors.base import SupervisedActor
from supervisors.cli import main
from supervisors.topology import TopologyError, parse_topology

REPO = Path(__file__).resolve().parents[2]

# actor -> defaults it must keep (what its on_start read with args.get before the schema)
DEFAULTS: dict[str, dict[str, Any]] = {
    "actors.pipeline.sensor.SimulatedSensorActor": {
        "sensors": None,
        "seed": 7,
        "scenario": "default",
        "speedup": 300.0,
        "tick": 0.1,
        "max_steps": 10**9,
    },
    "actors.pipeline.inference.InferenceActor": {
        "model": None,
        "threshold": 0.85,
        "poll_interval": 0.05,
        "batch_limit": 4096,
    },
    "actors.pipeline.incident_log.IncidentLogActor": {"poll_interval": 0.05},
    "actors.examples.Heartbeat": {"interval": 5.0},
    "actors.examples.Counter": {},
    "actors.pipeline.mqtt_bridge.MqttBridgeActor": {
        "host": "127.0.0.1",
        "port": 1883,
        "topic": "sensor/+/raw",
        "client_id": None,
        "username": None,
        "password": None,
        "tls": None,
        "qos": 1,
        "keepalive": 30,
        "reconnect_min": 1,
        "reconnect_max": 30,
        "batch": 1000,
        "max_payload": 64 * 1024,
    },
    "actors.raft.replica.RaftReplicaActor": {
        "replica": None,
        "peers": [],
        "publish": True,
        "trusted_keys": None,
        "election_ticks": 15,
        "heartbeat_ticks": 3,
        "snapshot_every": 1000,
    },
    "actors.crdt.replica.CrdtReplicaActor": {
        "replica": None,
        "peers": [],
        "consume_readings": True,
        "reading_interval_s": 10.0,
        "report_interval": 5.0,
    },
    "actors.dispatch.actor.DispatcherActor": {
        "sinks": [],
        "poll_interval": 0.05,
        "max_attempts": 5,
        "backoff": {"base": 0.5, "cap": 30.0, "factor": 2.0, "jitter": 0.5},
        "breaker": {"failure_threshold": 5, "reset_timeout": 10.0},
        "batch": 100,
        "seed": None,
    },
}

# actor -> (args with a typo, the key it means), (a wrong type: key, value), (out of range: key, value)
CASES: dict[str, tuple[tuple[str, str], tuple[str, str], tuple[str, str]] | tuple[str, str]] = {
    "actors.pipeline.sensor.SimulatedSensorActor": (
        ("spedup", "speedup"),
        ("speedup", '"fast"'),
        ("tick", "0"),
    ),
    "actors.pipeline.inference.InferenceActor": (
        ("treshold", "threshold"),
        ("batch_limit", '"all"'),
        ("threshold", "1.5"),
    ),
    "actors.pipeline.incident_log.IncidentLogActor": (
        ("poll_intervl", "poll_interval"),
        ("poll_interval", "[1]"),
        ("poll_interval", "-1"),
    ),
    "actors.examples.Heartbeat": (("intervall", "interval"), ("interval", "{a: 1}"), ("interval", "0")),
    "actors.pipeline.mqtt_bridge.MqttBridgeActor": (("prot", "port"), ("port", '"1883"'), ("port", "70000")),
    "actors.raft.replica.RaftReplicaActor": (
        ("pubish", "publish"),
        ("peers", "gw1"),
        ("election_ticks", "1"),
    ),
    "actors.crdt.replica.CrdtReplicaActor": (
        ("gossip_intervall", "gossip_interval"),
        ("consume_readings", '"yes"'),
        ("report_interval", "0"),
    ),
    "actors.dispatch.actor.DispatcherActor": (
        ("max_attemps", "max_attempts"),
        ("batch", "1.5"),
        ("max_attempts", "0"),
    ),
}


def _topology(actor: str, args_flow: str) -> str:
    # the worker's args are on line 10
    return (
        "nodes:\n"
        "  - name: n1\n"
        "    data_dir: ./d\n"
        "    tree:\n"
        "      id: root\n"
        "      children:\n"
        "        - id: ok\n"
        "          actor: actors.examples.Counter\n"
        f"        - {{id: w, actor: {actor},\n"
        f"           args: {args_flow}}}\n"
    )


def _validate(tmp_path: Path, text: str) -> tuple[int, str]:
    path = tmp_path / "topology.yaml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["validate", str(path)])
    return result.exit_code, result.output  # stdout and stderr


def _schema(actor: str) -> type[Any]:
    module, _, name = actor.rpartition(".")
    cls = getattr(__import__(module, fromlist=[name]), name)
    assert issubclass(cls, SupervisedActor) and cls.Args is not None, f"{actor} declares no Args"
    return cls.Args  # type: ignore[no-any-return]


@pytest.mark.parametrize("actor", sorted(DEFAULTS))
def test_defaults_are_what_the_actor_read_before(actor: str) -> None:
    instance = validate_args(_schema(actor), {}, actor)
    dumped = instance.model_dump()
    for key, value in DEFAULTS[actor].items():
        assert dumped[key] == value, f"{actor}.{key}"
    assert set(DEFAULTS[actor]) <= set(dumped)


@pytest.mark.parametrize("actor", sorted(CASES))
def test_validate_names_a_typo_with_its_suggestion(actor: str, tmp_path: Path) -> None:
    (typo, meant), _, _ = CASES[actor]  # type: ignore[misc]
    code, out = _validate(tmp_path, _topology(actor, f"{{{typo}: 1}}"))
    assert code == 1, out
    assert f":10: nodes[0].tree.children[1].args.{typo}: unknown key (did you mean {meant}?)" in out, out


@pytest.mark.parametrize("actor", sorted(CASES))
def test_validate_names_a_wrong_type(actor: str, tmp_path: Path) -> None:
    _, (key, value), _ = CASES[actor]  # type: ignore[misc]
    code, out = _validate(tmp_path, _topology(actor, f"{{{key}: {value}}}"))
    assert code == 1, out
    line = next(line for line in out.splitlines() if f"args.{key}" in line)
    assert ":10: nodes[0].tree.children[1]" in line and "valid" in line, line


@pytest.mark.parametrize("actor", sorted(CASES))
def test_validate_names_an_out_of_range_value(actor: str, tmp_path: Path) -> None:
    _, _, (key, value) = CASES[actor]  # type: ignore[misc]
    code, out = _validate(tmp_path, _topology(actor, f"{{{key}: {value}}}"))
    assert code == 1, out
    line = next(line for line in out.splitlines() if f"args.{key}" in line)
    assert ":10: nodes[0].tree.children[1]" in line, line
    assert "greater than" in line or "less than" in line, line
    assert f"(got {value})" in line, line


def test_an_actor_without_args_reports_any_key(tmp_path: Path) -> None:
    code, out = _validate(tmp_path, _topology("actors.examples.Counter", "{start: 5}"))
    assert code == 1
    assert ":10: nodes[0].tree.children[1].args.start: unknown key (this actor takes no args)" in out, out


def test_nested_sinks_name_the_sink_and_its_key(tmp_path: Path) -> None:
    text = (
        "nodes:\n"
        "  - name: n1\n"
        "    data_dir: ./d\n"
        "    tree:\n"
        "      id: root\n"
        "      children:\n"
        "        - id: dispatch\n"
        "          actor: actors.dispatch.actor.DispatcherActor\n"
        "          args:\n"
        "            sinks:\n"
        "              - {kind: file, path: a.jsonl}\n"
        "              - {kind: webhook, url: 'http://127.0.0.1:9/x', timout: 2}\n"
        "              - {kind: smtp, host: mail}\n"
        "              - {kind: webhook, url: 'ftp://x'}\n"
        "              - {path: b.jsonl}\n"
    )
    code, out = _validate(tmp_path, text)
    assert code == 1
    args = "nodes[0].tree.children[0].args"
    assert f":12: {args}.sinks[1].timout: unknown key (did you mean timeout?)" in out, out
    assert f":13: {args}.sinks[2].kind: must be one of file, webhook, mqtt (got 'smtp')" in out, out
    assert f":14: {args}.sinks[3].url: must start with http:// or https://" in out, out
    # two file sinks without names would share their offsets: refused before anything starts
    code, out = _validate(
        tmp_path, text.split("              - {kind: webhook")[0] + "              - {path: b.jsonl}\n"
    )
    assert code == 1
    assert f":9: {args}: sinks ['file', 'file']: give sinks of the same kind distinct 'name's" in out, out


def test_cross_field_rules_are_load_errors() -> None:
    raft = _schema("actors.raft.replica.RaftReplicaActor")
    _, problems = check_args(raft, {"election_ticks": 3, "heartbeat_ticks": 3})
    assert problems == [((), "heartbeat_ticks (3) must be below election_ticks (3)")]
    sensor = _schema("actors.pipeline.sensor.SimulatedSensorActor")
    _, problems = check_args(sensor, {"sensors": ["S1", "S9"]})
    assert len(problems) == 1 and "['S9'] are not in the default scenario" in problems[0][1]


def test_validate_exits_1_and_lists_every_problem_from_the_command_line(tmp_path: Path) -> None:
    """The installed command end to end (a real process): every worker's args problem at once."""
    path = tmp_path / "x.yaml"
    path.write_text(
        "nodes:\n"
        "  - name: n1\n"
        "    data_dir: ./d\n"
        "    tree:\n"
        "      id: root\n"
        "      children:\n"
        "        - id: inference\n"
        "          actor: actors.pipeline.inference.InferenceActor\n"
        "          args:\n"
        "            treshold: 0.9\n"
        "        - id: bridge\n"
        "          actor: actors.pipeline.mqtt_bridge.MqttBridgeActor\n"
        "          args: {port: 0}\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "supervisors.cli", "validate", str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0] == f"{path}: 2 error(s)"
    assert lines[1].strip() == (
        f"{path}:10: nodes[0].tree.children[0].args.treshold: unknown key (did you mean threshold?)"
    )
    assert lines[2].strip().startswith(f"{path}:13: nodes[0].tree.children[1].args.port: ")


def test_the_shipped_topologies_validate() -> None:
    for path in sorted((REPO / "config").glob("*.yaml")):
        runner = CliRunner().invoke(main, ["validate", str(path)])
        assert runner.exit_code == 0, runner.output


def test_a_msgspec_schema_works_like_a_pydantic_one() -> None:
    class Args(msgspec.Struct, forbid_unknown_fields=True):
        threshold: float = 0.5
        port: int = 1

    assert check_args(Args, {"port": 2}) == (Args(0.5, 2), [])
    assert check_args(Args, {"treshold": 1})[1] == [(("treshold",), "unknown key (did you mean threshold?)")]
    assert check_args(Args, {"port": "2"})[1] == [(("port",), "Expected int, got str")]


def test_a_schema_that_accepts_unknown_keys_is_refused_at_load(tmp_path: Path) -> None:
    """A lenient schema would bring back the silently ignored typo, so the topology refuses the class."""
    pkg = tmp_path / "lenient_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "actor.py").write_text(
        "from pydantic import BaseModel\n"
        "from actors.base import SupervisedActor\n"
        "class Loose(BaseModel):\n"
        "    x: int = 1\n"
        "class A(SupervisedActor):\n"
        "    Args = Loose\n"
    )
    text = _topology("lenient_pkg.actor.A", "{}")
    with pytest.raises(TopologyError) as err:
        parse_topology(text, str(tmp_path / "t.yaml"), code_dir=tmp_path)
    assert "lenient_pkg.actor.A.Args must forbid unknown keys" in str(err.value)
