"""``garrison up``: every node of a topology as local processes (being written)."""

from __future__ import annotations

import click


def register(main: click.Group) -> None:
    """Add ``garrison up`` to the ``garrison`` command."""
