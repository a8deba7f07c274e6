"""Actor arguments as a schema: what a worker's ``args:`` may hold, checked before anything starts.

An actor class declares its arguments as a class attribute ``Args``::

    class ThresholdArgs(ActorArgs):                      # a pydantic model: unknown keys are errors
        threshold: float = Field(0.85, gt=0, le=1)
        window: int = Field(60, ge=1)

    class Detector(SupervisedActor):
        Args = ThresholdArgs
        args: ThresholdArgs                              # typed: self.args.threshold

A ``msgspec.Struct`` with ``forbid_unknown_fields=True`` works the same way. ``garrison validate``,
``garrison run`` and a topology reload check every worker's ``args`` against its class's ``Args`` and report
each problem by its path (``nodes[0].tree.children[1].args.treshold: unknown key (did you mean
threshold?)``); at runtime the actor gets the validated instance as ``self.args`` before ``on_start``.
An actor without ``Args`` keeps the old contract: ``on_start(args)`` receives the raw dict, unchecked.

Values are not coerced (``port: "1883"`` is an error, not 1883), matching the topology's own strictness;
an int is accepted where a float is expected.

Pure: pydantic and msgspec only.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Mapping
from typing import Annotated, Any, Union, get_args, get_origin

import msgspec
from pydantic import BaseModel, ConfigDict, ValidationError

__all__ = ["ActorArgs", "InvalidArgs", "Loc", "check_args", "format_loc", "schema_problem", "validate_args"]

Loc = tuple[int | str, ...]
_MAX_SHOWN = 60  # characters of an offending value quoted in a message


class ActorArgs(BaseModel):
    """Base for pydantic ``Args`` schemas: unknown keys are errors, nothing is coerced, no NaN/inf, and the
    instance is frozen (an actor's configuration does not change under it; a new one means a restart)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class InvalidArgs(ValueError):
    """A worker's ``args`` do not match its actor class's ``Args``; ``problems`` lists (path, what)."""

    def __init__(self, actor: str, problems: list[tuple[Loc, str]]) -> None:
        self.actor = actor
        self.problems = problems
        listed = "; ".join(f"args{format_loc(loc, nested=True)}: {what}" for loc, what in problems)
        super().__init__(
            f"{actor}: invalid args: {listed}. Fix the worker's args in the topology "
            "(`garrison validate FILE` names each problem with its line)"
        )


def format_loc(loc: Loc, nested: bool = False) -> str:
    """``("sinks", 0, "url")`` as ``sinks[0].url`` (``.sinks[0].url`` when ``nested``, to follow a prefix)."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out or nested else str(part))
    return out


def schema_problem(schema: object) -> str | None:
    """Why ``schema`` cannot be an ``Args`` class (None when it can). Accepting unknown keys would bring
    back exactly the silently ignored typo that schemas are for, so it must forbid them."""
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        if schema.model_config.get("extra") != "forbid":
            return (
                "must forbid unknown keys: subclass actors.args.ActorArgs or set model_config extra='forbid'"
            )
        return None
    if isinstance(schema, type) and issubclass(schema, msgspec.Struct):
        if not schema.__struct_config__.forbid_unknown_fields:
            return "must forbid unknown keys: declare it with msgspec.Struct, forbid_unknown_fields=True"
        return None
    return "must be a pydantic model (actors.args.ActorArgs) or a msgspec.Struct"


def check_args(schema: type[Any], raw: Mapping[str, Any]) -> tuple[Any, list[tuple[Loc, str]]]:
    """``(instance, [])`` when ``raw`` fits ``schema``, else ``(None, problems)``; each problem's path is
    relative to ``args`` and names keys of the file (never pydantic's internal union tags)."""
    if issubclass(schema, BaseModel):
        try:
            return schema.model_validate(dict(raw)), []
        except ValidationError as exc:
            return None, [_pydantic_problem(schema, raw, e) for e in exc.errors()]
    try:
        return msgspec.convert(dict(raw), schema, strict=True), []
    except msgspec.ValidationError as exc:
        return None, [_msgspec_problem(schema, raw, str(exc))]


def validate_args(schema: type[Any], raw: Mapping[str, Any], actor: str) -> Any:
    """The validated ``Args`` instance, or :class:`InvalidArgs` listing every problem."""
    instance, problems = check_args(schema, raw)
    if problems:
        raise InvalidArgs(actor, problems)
    return instance


# -- messages -----------------------------------------------------------------------------------------


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _unknown_key(schema: type[Any], loc: Loc) -> str:
    known = sorted(_keys_at(schema, loc[:-1]))
    key = str(loc[-1])
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        return f"unknown key (did you mean {close[0]}?)"
    if known:
        return f"unknown key (known keys: {', '.join(known)})"
    return "unknown key (this actor takes no args)" if len(loc) == 1 else "unknown key"


def _pydantic_problem(schema: type[Any], raw: Any, err: Any) -> tuple[Loc, str]:
    loc = _file_loc(raw, tuple(err["loc"]))
    kind = err["type"]
    if kind == "extra_forbidden":
        return loc, _unknown_key(schema, loc)
    if kind == "missing":
        return loc, "required key is missing"
    if kind == "union_tag_invalid":  # a discriminated union (e.g. a sink's ``kind``): name the key
        tag, expected = err["ctx"]["tag"], err["ctx"]["expected_tags"].replace("'", "")
        value = _value_at(raw, loc)
        key = next((k for k, v in value.items() if v == tag), None) if isinstance(value, Mapping) else None
        return (*loc, key) if key is not None else loc, f"must be one of {expected} (got {_shown(tag)})"
    if kind == "literal_error":
        expected = err["ctx"]["expected"].replace("'", "").replace(" or ", ", ")
        return loc, f"must be one of {expected} (got {_shown(err.get('input'))})"
    message = str(err["msg"]).removeprefix("Value error, ")
    if kind in ("value_error", "assertion_error"):
        return loc, message  # a validator of the schema: its message is written for the user
    return loc, f"{message} (got {_shown(err.get('input'))})"


_MSGSPEC_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MSGSPEC_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def _msgspec_problem(schema: type[Any], raw: Any, text: str) -> tuple[Loc, str]:
    match = _MSGSPEC_AT.match(text)
    what, path = (match.group("what"), match.group("path") or "") if match else (text, "")
    loc: Loc = tuple(int(index) if index else key for key, index in _MSGSPEC_PART.findall(path))
    if unknown := re.match(r"Object contains unknown field `(.+)`$", what):
        loc = (*loc, unknown.group(1))
        return loc, _unknown_key(schema, loc)
    if missing := re.match(r"Object missing required field `(.+)`$", what):
        return (*loc, missing.group(1)), "required key is missing"
    return loc, what.replace("`", "")


# -- paths --------------------------------------------------------------------------------------------


def _file_loc(raw: Any, loc: Loc) -> Loc:
    """``loc`` with the parts that are not in the document left out (pydantic puts the tag of a
    discriminated union member in the path): the path follows the raw value as far as it goes; the last
    part (a missing or unknown key) is kept."""
    out: list[int | str] = []
    node = raw
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if _has(node, part):
            node = node[part]
        elif not last:
            continue  # a union tag, or a key the value does not have: not part of the file's path
        out.append(part)
    return tuple(out)


def _has(node: Any, part: int | str) -> bool:
    if isinstance(node, Mapping):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _value_at(raw: Any, loc: Loc) -> Any:
    for part in loc:
        if not _has(raw, part):
            return None
        raw = raw[part]
    return raw


def _keys_at(tp: Any, loc: Loc) -> set[str]:
    """The keys a schema accepts at ``loc`` (inside lists, dicts and unions): candidates for 'did you
    mean'. Best effort: an empty set only means no suggestion."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _keys_at(get_args(tp)[0], loc)
    if origin is Union or isinstance(tp, types.UnionType):
        return set().union(*(_keys_at(member, loc) for member in get_args(tp)))
    fields = _fields(tp)
    if fields is not None:
        if not loc:
            return set(fields)
        inner = fields.get(str(loc[0]))
        return _keys_at(inner, loc[1:]) if inner is not None else set()
    if not loc:
        return set()
    if origin in (list, tuple, set, frozenset) and isinstance(loc[0], int):
        return _keys_at(get_args(tp)[0], loc[1:]) if get_args(tp) else set()
    if origin in (dict, Mapping) and len(get_args(tp)) == 2:
        return _keys_at(get_args(tp)[1], loc[1:])
    return set()


def _fields(tp: Any) -> dict[str, Any] | None:
    """Key -> type of a pydantic model or msgspec struct (None for anything else)."""
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return {(f.alias or name): f.annotation for name, f in tp.model_fields.items()}
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return {f.encode_name: f.type for f in msgspec.structs.fields(tp)}
    return None
