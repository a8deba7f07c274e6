"""Topology files: YAML, validated up front, every error at once with its path (and line) in the file.

    nodes:
      - name: edge-1
        data_dir: ./garrison-data/edge-1        # relative paths resolve against the current directory
        tree:                                   # a supervisor ...
          id: root
          strategy: one_for_one                 # one_for_one | one_for_all | rest_for_one
          intensity: 3                          # more than 3 restarts ...
          period: 5                             # ... within 5 s escalates
          children:
            - id: counter                       # ... or a worker
              actor: actors.examples.Counter    # dotted path of a SupervisedActor subclass
              args: {}
              restart: permanent                # permanent | transient | temporary
              shutdown_timeout: 5
              backoff: {min: 0.1, max: 10, jitter: 0.2, reset_after: 30}

Unknown keys are errors. A worker's ``actor`` must import and be a ``SupervisedActor`` subclass, checked
before anything starts (OTP's ``check_childspecs``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

from supervisors.spec import Backoff, ChildSpec, Restart, Strategy, SupervisorSpec, WorkerSpec

DEFAULT_TOPOLOGY = Path(__file__).with_name("default_topology.yaml")


class TopologyError(Exception):
    """A topology file is unreadable or invalid; ``errors`` lists every problem found."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        super().__init__(f"{source}: {len(errors)} error(s)\n" + "\n".join(f"  {e}" for e in errors))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BackoffModel(_Strict):
    min: float = Field(0.1, gt=0)
    max: float = Field(10.0, gt=0)
    jitter: float = Field(0.2, ge=0, le=1)
    reset_after: float = Field(30.0, ge=0)


class WorkerModel(_Strict):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    actor: str = Field(min_length=1, pattern=r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)+$")
    args: dict[str, Any] = Field(default_factory=dict)
    restart: Literal["permanent", "transient", "temporary"] = "permanent"
    shutdown_timeout: float = Field(5.0, gt=0)
    backoff: BackoffModel | None = None
    poison_after: int = Field(3, ge=1, le=1000)


class SupervisorModel(_Strict):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    strategy: Literal["one_for_one", "one_for_all", "rest_for_one"] = "one_for_one"
    intensity: int = Field(3, ge=0)
    period: float = Field(5.0, gt=0)
    restart: Literal["permanent", "transient", "temporary"] = "permanent"
    shutdown_timeout: float | None = Field(None, gt=0)
    backoff: BackoffModel | None = None
    poison_after: int = Field(3, ge=1, le=1000)
    children: list[TreeEntry] = Field(default_factory=list)


def _entry_kind(value: Any) -> str:
    if isinstance(value, dict) and "actor" in value:
        return "worker"
    return "supervisor"


TreeEntry = Annotated[
    Annotated[WorkerModel, Tag("worker")] | Annotated[SupervisorModel, Tag("supervisor")],
    Discriminator(_entry_kind),
]
SupervisorModel.model_rebuild()


class NodeModel(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    data_dir: str = Field(min_length=1)
    tree: SupervisorModel


class TopologyModel(_Strict):
    nodes: list[NodeModel] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class NodeConfig:
    name: str
    data_dir: Path
    tree: SupervisorSpec


@dataclass(frozen=True, slots=True)
class Topology:
    source: str
    nodes: tuple[NodeConfig, ...]

    def node(self, name: str | None) -> NodeConfig:
        if name is None:
            if len(self.nodes) == 1:
                return self.nodes[0]
            names = ", ".join(n.name for n in self.nodes)
            raise TopologyError(self.source, [f"--node is required: the topology has nodes {names}"])
        for node in self.nodes:
            if node.name == name:
                return node
        names = ", ".join(n.name for n in self.nodes)
        raise TopologyError(self.source, [f"--node {name}: no such node (nodes: {names})"])


# -- error formatting ---------------------------------------------------------------------------------


def _format_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if part in ("worker", "supervisor"):  # discriminator tags, not keys of the file
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _clean_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    return tuple(p for p in loc if p not in ("worker", "supervisor"))


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "literal_error":
        expected = err["ctx"]["expected"].replace("'", "").replace(" or ", ", ")
        return f"must be one of {expected}"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    return str(err["msg"])


def _line_index(node: yaml.Node | None, path: tuple[int | str, ...] = ()) -> dict[tuple[Any, ...], int]:
    """Map every path in the YAML document to its 1-based line, for errors a person can jump to."""
    index: dict[tuple[Any, ...], int] = {}
    if node is None:
        return index
    index[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            sub = (*path, key.value)
            index[sub] = key.start_mark.line + 1
            index.update({k: v for k, v in _line_index(value, sub).items() if k != sub})
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            index.update(_line_index(item, (*path, i)))
    return index


def _line_for(index: dict[tuple[Any, ...], int], loc: tuple[int | str, ...]) -> int | None:
    while loc:
        if loc in index:
            return index[loc]
        loc = loc[:-1]
    return None


# -- semantic checks ----------------------------------------------------------------------------------


def _check_actor_class(dotted: str) -> str | None:
    from actors.base import SupervisedActor  # imported late: validating must not need Thespian up front

    module_name, _, class_name = dotted.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any import failure is the user's to see
        return f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
    cls = getattr(module, class_name, None)
    if cls is None:
        return f"module {module_name!r} has no class {class_name!r}"
    if not (isinstance(cls, type) and issubclass(cls, SupervisedActor)):
        return f"{dotted} is not a SupervisedActor subclass"
    return None


def _raw_actor_errors(data: Any, loc: tuple[int | str, ...] = ()) -> list[tuple[tuple[int | str, ...], str]]:
    """Actor classes checked on the raw document, so they are reported along with schema errors."""
    errors: list[tuple[tuple[int | str, ...], str]] = []
    if isinstance(data, dict):
        actor = data.get("actor")
        if isinstance(actor, str) and "." in actor:
            problem = _check_actor_class(actor)
            if problem:
                errors.append(((*loc, "actor"), problem))
        for key, value in data.items():
            if key != "args":
                errors += _raw_actor_errors(value, (*loc, key))
    elif isinstance(data, list):
        for i, item in enumerate(data):
            errors += _raw_actor_errors(item, (*loc, i))
    return errors


def _semantic_errors(model: TopologyModel) -> list[tuple[tuple[int | str, ...], str]]:
    errors: list[tuple[tuple[int | str, ...], str]] = []
    seen_nodes: set[str] = set()
    for n, node in enumerate(model.nodes):
        if node.name in seen_nodes:
            errors.append((("nodes", n, "name"), f"duplicate node name {node.name!r}"))
        seen_nodes.add(node.name)
        errors.extend(_tree_errors(node.tree, ("nodes", n, "tree")))
    return errors


def _tree_errors(sup: SupervisorModel, loc: tuple[int | str, ...]) -> list[tuple[tuple[int | str, ...], str]]:
    errors: list[tuple[tuple[int | str, ...], str]] = []
    seen: set[str] = set()
    for i, child in enumerate(sup.children):
        here = (*loc, "children", i)
        if child.id in seen:
            errors.append(((*here, "id"), f"duplicate child id {child.id!r} under {sup.id!r}"))
        seen.add(child.id)
        if isinstance(child, SupervisorModel):
            errors.extend(_tree_errors(child, here))
        else:
            problem = _check_actor_class(child.actor)
            if problem:
                errors.append(((*here, "actor"), problem))
        if child.backoff is not None and child.backoff.min > child.backoff.max:
            errors.append(((*here, "backoff", "min"), "must not exceed backoff.max"))
    return errors


# -- conversion ---------------------------------------------------------------------------------------


def _backoff(model: BackoffModel | None) -> Backoff | None:
    if model is None:
        return None
    return Backoff(model.min, model.max, model.jitter, model.reset_after)


def _to_spec(entry: WorkerModel | SupervisorModel) -> ChildSpec:
    if isinstance(entry, WorkerModel):
        return WorkerSpec(
            id=entry.id,
            actor=entry.actor,
            args=dict(entry.args),
            restart=Restart(entry.restart),
            shutdown_timeout=entry.shutdown_timeout,
            backoff=_backoff(entry.backoff),
            poison_after=entry.poison_after,
        )
    return SupervisorSpec(
        id=entry.id,
        strategy=Strategy(entry.strategy),
        intensity=entry.intensity,
        period=entry.period,
        children=tuple(_to_spec(c) for c in entry.children),
        restart=Restart(entry.restart),
        shutdown_timeout=entry.shutdown_timeout,
        backoff=_backoff(entry.backoff),
        poison_after=entry.poison_after,
    )


def parse_topology(text: str, source: str, base_dir: Path | None = None) -> Topology:
    """Validate ``text`` (the contents of ``source``); raise :class:`TopologyError` with every problem."""
    try:
        document = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TopologyError(source, [f"{source}: not valid YAML: {exc}"]) from exc
    lines = _line_index(document)
    if not isinstance(data, dict):
        raise TopologyError(source, [f"{source}: top level must be a mapping with a 'nodes:' list"])

    def where(loc: tuple[int | str, ...]) -> str:
        line = _line_for(lines, _clean_loc(loc))
        return f"{source}:{line}: " if line else f"{source}: "

    try:
        model = TopologyModel.model_validate(data)
    except ValidationError as exc:
        errors = [f"{where(e['loc'])}{_format_path(e['loc'])}: {_message(e)}" for e in exc.errors()]
        errors += [f"{where(loc)}{_format_path(loc)}: {msg}" for loc, msg in _raw_actor_errors(data)]
        raise TopologyError(source, errors) from None
    semantic = _semantic_errors(model)
    if semantic:
        raise TopologyError(source, [f"{where(loc)}{_format_path(loc)}: {msg}" for loc, msg in semantic])
    base = base_dir or Path.cwd()
    nodes = tuple(
        NodeConfig(
            name=n.name,
            data_dir=(base / n.data_dir).resolve()
            if not Path(n.data_dir).is_absolute()
            else Path(n.data_dir),
            tree=_to_spec(n.tree),  # type: ignore[arg-type]
        )
        for n in model.nodes
    )
    return Topology(source, nodes)


def load_topology(path: str | Path | None = None) -> Topology:
    """Load a topology file (the embedded default when ``path`` is None)."""
    file = Path(path) if path is not None else DEFAULT_TOPOLOGY
    try:
        text = file.read_text()
    except OSError as exc:
        raise TopologyError(str(file), [f"{file}: cannot read: {exc.strerror}"]) from exc
    return parse_topology(text, str(file))
