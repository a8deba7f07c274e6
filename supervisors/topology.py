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

Unknown keys are errors. A worker's ``actor`` must import and be a ``SupervisedActor`` subclass, and its
``args`` must fit the class's ``Args`` schema (``actors.args``: unknown keys, wrong types, out-of-range
values), all checked before anything starts (OTP's ``check_childspecs``).

Users' actors import from the topology file's directory, the working directory and the directories of an
optional top-level ``python_path:`` list (relative to the file), appended to ``sys.path`` in that order
before the actor classes are checked. The launcher loads the topology before its ActorSystem exists and
every actor process is forked from it, so the actors import from the same places. Appended, not prepended:
garrison's own packages (``actors``, ``supervisors``, ``models``) and installed ones keep their names.

A running node reloads this file when it changes, so whatever the file holds, loading it ends quickly
with a :class:`TopologyError` listing every problem as ``file:line: path: what``, sorted by line: the
YAML is bounded (``supervisors.safe_yaml``: size, values after alias expansion, nesting, number length,
no alias cycles), duplicate keys are errors, and values are strictly typed (``intensity: true`` is not
1), finite and bounded (``shutdown_timeout: .inf`` would make a node that never stops).
"""

from __future__ import annotations

import importlib
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError

from supervisors.safe_yaml import MAX_CHARS, YamlProblem, load_bounded
from supervisors.spec import Backoff, ChildSpec, Restart, Strategy, SupervisorSpec, WorkerSpec
from supervisors.topology_cluster import (
    DEFAULT_ROLE,
    Address,
    ClusterConfig,
    ClusterModel,
    cluster_problems,
    parse_address,
)

DEFAULT_TOPOLOGY = Path(__file__).with_name("default_topology.yaml")
MAX_FILE_BYTES = MAX_CHARS  # checked on the bytes before decoding, then on the characters
_MAX_REPORTED_ERRORS = 50


class TopologyError(Exception):
    """A topology file is unreadable or invalid; ``errors`` lists every problem found."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        super().__init__(f"{source}: {len(errors)} error(s)\n" + "\n".join(f"  {e}" for e in errors))


class _Strict(BaseModel):
    # strict: `intensity: true` or `period: "5"` are mistakes, not values to coerce; finite: `.inf` as a
    # timeout would make a node that never stops.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


# Upper bounds: far above any sane setting, low enough that a typo cannot hang a stop or a restart.
_MAX_TIMEOUT_S = 3600.0
_MAX_PERIOD_S = 86_400.0
_MAX_INTENSITY = 10_000


class BackoffModel(_Strict):
    min: float = Field(0.1, gt=0, le=_MAX_TIMEOUT_S)
    max: float = Field(10.0, gt=0, le=_MAX_TIMEOUT_S)
    jitter: float = Field(0.2, ge=0, le=1)
    reset_after: float = Field(30.0, ge=0, le=_MAX_PERIOD_S)


class WorkerModel(_Strict):
    id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$")
    actor: str = Field(min_length=1, max_length=500, pattern=r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)+$")
    args: dict[str, Any] = Field(default_factory=dict)
    restart: Literal["permanent", "transient", "temporary"] = "permanent"
    shutdown_timeout: float = Field(5.0, gt=0, le=_MAX_TIMEOUT_S)
    backoff: BackoffModel | None = None
    poison_after: int = Field(3, ge=1, le=1000)
    start_timeout: float = Field(30.0, gt=0, le=_MAX_TIMEOUT_S)


class SupervisorModel(_Strict):
    id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.-]+$")
    strategy: Literal["one_for_one", "one_for_all", "rest_for_one"] = "one_for_one"
    intensity: int = Field(3, ge=0, le=_MAX_INTENSITY)
    period: float = Field(5.0, gt=0, le=_MAX_PERIOD_S)
    restart: Literal["permanent", "transient", "temporary"] = "permanent"
    shutdown_timeout: float | None = Field(None, gt=0, le=_MAX_TIMEOUT_S)
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
    # the cluster's view of the node (supervisors.topology_cluster checks them)
    role: Literal["gateway", "edge"] | None = None
    peer: str | None = Field(None, min_length=1, max_length=300)
    api: str | None = Field(None, min_length=1, max_length=300)


class TopologyModel(_Strict):
    python_path: list[str] = Field(default_factory=list, max_length=50)
    nodes: list[NodeModel] = Field(min_length=1)
    cluster: ClusterModel | None = None


@dataclass(frozen=True, slots=True)
class NodeConfig:
    name: str
    data_dir: Path
    tree: SupervisorSpec
    role: str = DEFAULT_ROLE  # gateway | edge
    peer: Address | None = None
    api: Address | None = None
    cluster: ClusterConfig | None = None  # None: a node on its own (no cluster: section)


@dataclass(frozen=True, slots=True)
class Topology:
    source: str
    nodes: tuple[NodeConfig, ...]
    cluster: ClusterConfig | None = None

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


def _line_for(index: dict[tuple[Any, ...], int], loc: tuple[int | str, ...]) -> int | None:
    while loc:
        if loc in index:
            return index[loc]
        loc = loc[:-1]
    return None


# -- semantic checks ----------------------------------------------------------------------------------


def _check_actor_class(dotted: str) -> tuple[type[Any] | None, str | None]:
    """The class named ``dotted`` if it is a usable actor class, else why not."""
    from actors.args import schema_problem
    from actors.base import SupervisedActor  # imported late: validating must not need Thespian up front

    module_name, _, class_name = dotted.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # any import failure is the user's to see; sys.exit too
        hint = ""
        if isinstance(exc, ModuleNotFoundError) and exc.name and module_name.startswith(exc.name):
            hint = " (searched the topology's directory, the working directory and python_path too)"
        return None, f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}{hint}"
    cls = getattr(module, class_name, None)
    if cls is None:
        return None, f"module {module_name!r} has no class {class_name!r}"
    if not (isinstance(cls, type) and issubclass(cls, SupervisedActor)):
        return None, f"{dotted} is not a SupervisedActor subclass"
    schema = cls.Args
    if schema is not None and (problem := schema_problem(schema)) is not None:
        return None, f"{dotted}.Args {problem}"
    return cls, None


def _worker_errors(
    actor: str, args: Any, loc: tuple[int | str, ...]
) -> list[tuple[tuple[int | str, ...], str]]:
    """The actor class of a worker at ``loc``, and its ``args`` against the class's ``Args`` schema."""
    from actors.args import check_args

    cls, problem = _check_actor_class(actor)
    if problem:
        return [((*loc, "actor"), problem)]
    schema = cls.Args if cls is not None else None
    if schema is None or not isinstance(args, dict):
        return []  # no schema: args stay an unchecked dict; not a mapping: the model reports it
    _, problems = check_args(schema, args)
    return [((*loc, "args", *where), what) for where, what in problems]


def _raw_actor_errors(data: Any, loc: tuple[int | str, ...] = ()) -> list[tuple[tuple[int | str, ...], str]]:
    """Actor classes and args checked on the raw document, so they are reported along with schema errors."""
    errors: list[tuple[tuple[int | str, ...], str]] = []
    if isinstance(data, dict):
        actor = data.get("actor")
        if isinstance(actor, str) and "." in actor:
            errors += _worker_errors(actor, data.get("args", {}), loc)
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
            errors.extend(_worker_errors(child.actor, child.args, here))
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
            start_timeout=entry.start_timeout,
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


# -- users' code --------------------------------------------------------------------------------------


def user_code_dirs(topology_dir: Path | None, python_path: list[str]) -> list[Path]:
    """Where users' actor modules import from: ``python_path`` entries (relative to the topology's
    directory), the topology's directory, then the working directory."""
    base = topology_dir if topology_dir is not None else Path.cwd()
    dirs = [base / entry for entry in python_path]
    if topology_dir is not None:
        dirs.append(topology_dir)
    dirs.append(Path.cwd())
    return [Path(os.path.abspath(d)) for d in dirs]


def _python_path_entries(data: dict[str, Any]) -> list[str]:
    """The usable strings of a raw ``python_path`` (the model reports anything else with its line)."""
    raw = data.get("python_path")
    if not isinstance(raw, list):
        return []
    return [p for p in raw[:50] if isinstance(p, str) and p and "\0" not in p and len(p) < 4096]


def _use_user_code(dirs: list[Path]) -> None:
    for d in dirs:
        if str(d) not in sys.path:
            sys.path.append(str(d))
    importlib.invalidate_caches()  # the finders' caches predate these directories


def _python_path_errors(
    topology_dir: Path | None, entries: list[str]
) -> list[tuple[tuple[int | str, ...], str]]:
    dirs = user_code_dirs(topology_dir, entries)[: len(entries)]
    return [
        (("python_path", i), f"no such directory: {d} (entries are relative to the topology file)")
        for i, d in enumerate(dirs)
        if not d.is_dir()
    ]


def parse_topology(
    text: str, source: str, base_dir: Path | None = None, code_dir: Path | None = None
) -> Topology:
    """Validate ``text`` (the contents of ``source``); raise :class:`TopologyError` with every problem,
    sorted by line. Bounded in time and memory whatever ``text`` is (see ``supervisors.safe_yaml``).
    ``code_dir`` is the topology file's directory: users' actors import from it (see the module
    docstring), which is why parsing appends to ``sys.path``."""
    try:
        loaded = load_bounded(text)
    except YamlProblem as problem:
        where = f"{source}:{problem.line}" if problem.line else source
        raise TopologyError(source, [f"{where}: not valid YAML: {problem.message}"]) from None
    data = loaded.data
    if not isinstance(data, dict):
        raise TopologyError(source, [f"{source}:1: top level must be a mapping with a 'nodes:' list"])
    found: list[tuple[int, str]] = []
    entries = _python_path_entries(data)
    _use_user_code(user_code_dirs(code_dir, entries))

    def report(loc: tuple[int | str, ...], message: str, line: int | None = None) -> None:
        line = line or _line_for(loaded.lines, _clean_loc(loc))
        where = f"{source}:{line}: " if line else f"{source}: "
        found.append((line or 0, f"{where}{_format_path(loc)}: {message}"))

    for loc, line in loaded.duplicate_keys:
        report(loc, "duplicate key (YAML would silently keep only the last one)", line)
    model = None
    try:
        model = TopologyModel.model_validate(data)
    except ValidationError as exc:
        for e in exc.errors():
            report(e["loc"], _message(e))
        for loc, msg in _raw_actor_errors(data):
            report(loc, msg)
    cluster = None
    if model is not None:
        cluster_dir = code_dir if code_dir is not None else Path.cwd()
        cluster, cluster_errors = cluster_problems(model.nodes, model.cluster, cluster_dir)
        for loc, msg in [*_python_path_errors(code_dir, entries), *_semantic_errors(model), *cluster_errors]:
            report(loc, msg)
    if found:
        raise TopologyError(source, _capped([message for _, message in sorted(found, key=lambda f: f[0])]))
    assert model is not None
    base = base_dir or Path.cwd()
    nodes = tuple(
        NodeConfig(
            name=n.name,
            data_dir=(base / n.data_dir).resolve()
            if not Path(n.data_dir).is_absolute()
            else Path(n.data_dir),
            tree=_to_spec(n.tree),  # type: ignore[arg-type]
            role=n.role or DEFAULT_ROLE,
            peer=cluster.member(n.name).peer if cluster else None,
            api=cluster.member(n.name).api if cluster else (parse_address(n.api) if n.api else None),
            cluster=cluster,
        )
        for n in model.nodes
    )
    return Topology(source, nodes, cluster)


def _capped(errors: list[str]) -> list[str]:
    if len(errors) <= _MAX_REPORTED_ERRORS:
        return errors
    return [*errors[:_MAX_REPORTED_ERRORS], f"... and {len(errors) - _MAX_REPORTED_ERRORS} more error(s)"]


def _read_text(file: Path) -> str:
    """The file's text, refusing what cannot be a topology before reading it all (a FIFO or device would
    block or never end, a huge file would only be refused after filling memory)."""
    source = str(file)
    try:
        # O_NONBLOCK: opening a FIFO would otherwise wait for a writer; no effect on a regular file.
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK)
        with open(fd, "rb", buffering=0) as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise TopologyError(source, [f"{source}: not a regular file"])
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise TopologyError(source, [f"{source}: cannot read: {exc.strerror or exc}"]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise TopologyError(
            source, [f"{source}: larger than {MAX_FILE_BYTES // 1024} KiB; a topology is a few KB"]
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise TopologyError(
            source, [f"{source}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save it as UTF-8"]
        ) from None


def load_topology(path: str | Path | None = None) -> Topology:
    """Load a topology file (the embedded default when ``path`` is None). Raises only
    :class:`TopologyError`, whatever the file holds: a running node reloads it and must survive."""
    file = Path(path) if path is not None else DEFAULT_TOPOLOGY
    try:
        # the embedded default's directory is garrison's own package: not a place for users' code
        code_dir = None if path is None else file.parent
        return parse_topology(_read_text(file), str(file), code_dir=code_dir)
    except TopologyError:
        raise
    except Exception as exc:  # RecursionError, MemoryError, a loader bug: must not take a running node down
        raise TopologyError(
            str(file),
            [
                f"{file}: cannot load: {type(exc).__name__}: {exc} (a bug in garrison's loader; please report it)"
            ],
        ) from exc
