"""Shared fixtures of the actor shell tests (Thespian's in-process simpleSystemBase)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from thespian.actors import ActorSystem


@pytest.fixture
def asys() -> Iterator[ActorSystem]:
    system = ActorSystem("simpleSystemBase", logDefs=None)
    try:
        yield system
    finally:
        system.shutdown()
