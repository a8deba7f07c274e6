"""YAML for files an operator (or an attacker) may hand us: bounded in size, nodes, depth and numbers.

PyYAML's safe loader refuses arbitrary objects but not resource exhaustion: aliases of aliases ("billion
laughs") expand exponentially in anything that walks the result, an alias inside its own anchor makes a
cycle that recursive walkers never leave, deep nesting overflows the composer's recursion, and a
5000-digit integer trips Python's int-conversion limit with a bare ``ValueError``. This loader counts
every node as it is composed (an alias counts as the whole subtree it stands for), refuses cycles and deep
nesting at the event where they happen, and turns every failure into :class:`YamlProblem` with a line.

Pure: PyYAML only, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.reader import ReaderError

# A real topology is a few KB with a few hundred nodes; these limits are far above that and far below
# what it takes to hurt a small edge machine.
MAX_CHARS = 256 * 1024
MAX_NODES = 20_000  # after alias expansion
MAX_DEPTH = 64  # nested collections; a supervisor level costs two (mapping + children list)
MAX_NUMBER_CHARS = 64  # of an int or float scalar, before conversion

Path = tuple[int | str, ...]


class YamlProblem(Exception):
    """The text cannot be loaded; ``line`` is 1-based (None when unknown), ``message`` says why."""

    def __init__(self, line: int | None, message: str) -> None:
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}" if line else message)


@dataclass
class LoadedYaml:
    data: Any
    lines: dict[Path, int] = field(default_factory=dict)  # path in the document -> 1-based line
    duplicate_keys: list[tuple[Path, int]] = field(default_factory=list)  # path of the repeated key, line


def _mark(event: yaml.Event) -> yaml.Mark | None:
    # this loader is PyYAML's pure-Python one: its marks are yaml.Mark (the stubs also allow libyaml's)
    mark = event.start_mark
    return mark if isinstance(mark, yaml.Mark) else None


class _BoundedLoader(yaml.SafeLoader):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0
        self._nodes = 0
        self._open_anchors: set[str] = set()  # anchors whose node is still being composed
        self._anchor_sizes: dict[str, int] = {}  # anchor -> nodes in its subtree, aliases expanded

    def _count(self, nodes: int, mark: yaml.Mark | None) -> None:
        self._nodes += nodes
        if self._nodes > MAX_NODES:
            raise ComposerError(
                None,
                None,
                f"more than {MAX_NODES} values (aliases counted as what they expand to); "
                "a topology is far smaller, is this the right file?",
                mark,
            )

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event = self.peek_event()
        mark = _mark(event)
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open_anchors:
                raise ComposerError(
                    None, None, f"alias *{event.anchor} is inside its own anchor (a cycle)", mark
                )
            self._count(self._anchor_sizes.get(event.anchor or "", 1), mark)
            return super().compose_node(parent, index)  # undefined aliases are refused there
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
        self._count(1, mark)
        before, anchor = self._nodes, event.anchor
        if anchor is not None:
            self._open_anchors.add(anchor)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if anchor is not None:
                self._open_anchors.discard(anchor)
        if anchor is not None:
            self._anchor_sizes[anchor] = self._nodes - before + 1
        return node

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # A scalar the resolver accepted can still fail to convert (2020-13-45 as a date, !!int abc):
        # report it at its node instead of as a bare ValueError.
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:
            raise ConstructorError(None, None, f"cannot read this value: {exc}", node.start_mark) from None

    def construct_bounded_number(self, node: yaml.ScalarNode) -> Any:
        if len(node.value) > MAX_NUMBER_CHARS:
            raise ConstructorError(
                None, None, f"number longer than {MAX_NUMBER_CHARS} characters", node.start_mark
            )
        if node.tag.endswith(":int"):
            return self.construct_yaml_int(node)
        return self.construct_yaml_float(node)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_bounded_number)
_BoundedLoader.add_constructor("tag:yaml.org,2002:float", _BoundedLoader.construct_bounded_number)


def _walk(node: yaml.Node, path: Path, out: LoadedYaml) -> None:
    """Lines of every path, and repeated keys (PyYAML silently keeps the last one). Runs before
    construction, which rewrites merge keys (``<<``) in place; bounded by MAX_NODES and MAX_DEPTH."""
    out.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[tuple[str, str]] = set()
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode):
                continue  # a collection as a key: the constructor refuses it, with its line
            sub = (*path, key.value)
            if (key.tag, key.value) in seen:
                out.duplicate_keys.append((sub, key.start_mark.line + 1))
            seen.add((key.tag, key.value))
            out.lines.setdefault(sub, key.start_mark.line + 1)
            _walk(value, sub, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), out)


def _problem(exc: yaml.YAMLError, text: str) -> YamlProblem:
    if isinstance(exc, ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        char = chr(exc.character) if isinstance(exc.character, int) else exc.character
        return YamlProblem(line, f"character {char!r} is not allowed in YAML")
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        parts = [p for p in (exc.context, exc.problem) if p]
        where = f" (column {mark.column + 1})" if mark else ""
        return YamlProblem(mark.line + 1 if mark else None, ", ".join(parts) + where)
    return YamlProblem(None, str(exc))


def load_bounded(text: str) -> LoadedYaml:
    """Load one YAML document within the limits above; raise :class:`YamlProblem` otherwise."""
    if len(text) > MAX_CHARS:
        raise YamlProblem(None, f"larger than {MAX_CHARS // 1024} KiB; a topology is a few KB")
    loader = None
    try:
        loader = _BoundedLoader(text)  # refuses non-printable characters already
        root = loader.get_single_node()
        out = LoadedYaml(data=None)
        if root is not None:
            _walk(root, (), out)
            out.data = loader.construct_document(root)
        return out
    except yaml.YAMLError as exc:
        raise _problem(exc, text) from None
    finally:
        if loader is not None:
            loader.dispose()
