"""The scratch directory of a benchmark that starts node processes: removed after a run that went
through (unless ``--keep``), kept and named on stderr after one that failed, so its node logs can be read."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from bench.raft_commit_pysyncobj import PySyncObjBenchError
from bench.restart_latency import BenchError

T = TypeVar("T")


def run_in_scratch(prefix: str, keep: bool, run: Callable[[Path], T]) -> T | None:
    """``run(tmp)`` in a new temporary directory; None (after saying why and where) if the benchmark
    failed. Any other exception propagates and leaves the directory too."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        result = run(tmp)
    except (BenchError, PySyncObjBenchError) as exc:
        print(f"benchmark failed: {exc}; node logs in {tmp}", file=sys.stderr)
        return None
    if not keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return result
