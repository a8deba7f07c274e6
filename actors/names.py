"""Actor names: tree paths (``root/pipeline/inference``) and how a name given by an actor is resolved.

A name is absolute when it starts with ``/`` or with the root's id (``root/counter``); otherwise it is
relative to the sender's supervisor: ``counter`` is a sibling, ``sub/worker`` a child of the sibling
supervisor ``sub``, ``../x`` a sibling of the sender's supervisor. ``./name`` forces a relative name (for
a sibling that happens to share the root's id). Pure: no I/O.
"""

from __future__ import annotations

__all__ = ["BadPath", "resolve"]

_MAX_PATH = 1024


class BadPath(ValueError):
    """A name that cannot denote an actor (empty segment, ``..`` above the root, too long)."""


def resolve(target: str, supervisor_path: str) -> str:
    """The absolute path named by ``target`` when sent by a child of ``supervisor_path`` ("" for the
    root itself, which can use absolute names only)."""
    if not isinstance(target, str) or not target or len(target) > _MAX_PATH:
        raise BadPath(f"{target!r}: an actor name is a non-empty path such as 'root/counter' or 'counter'")
    root_id = supervisor_path.split("/", 1)[0]
    segments = target.split("/")
    base: list[str]
    if target.startswith("/"):
        base, segments = [], segments[1:]
    elif not supervisor_path or (segments[0] == root_id and segments[0] not in (".", "..")):
        base = []
    else:
        base = supervisor_path.split("/")
    parts = list(base)
    for seg in segments:
        if seg == ".":
            continue
        if seg == "..":
            if len(parts) <= 1:
                raise BadPath(f"{target!r} from {supervisor_path or 'the root'}: '..' goes above the root")
            parts.pop()
        elif not seg:
            raise BadPath(f"{target!r}: empty path segment (use names like 'root/pipeline/inference')")
        else:
            parts.append(seg)
    if not parts:
        raise BadPath(f"{target!r}: names no actor")
    return "/".join(parts)
