"""``bench.api_start`` runs both cases as named (a map of the whole log in memory, then none with the log
indexed on disk) and both answer the repeated incident_id with its index."""

from __future__ import annotations

import json

import pytest

from bench.api_start import main


def test_api_start_bench_measures_both_cases(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--incidents", "60"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    memory, disk = result["in memory"], result["on disk"]
    assert (memory["indexed"], memory["map_entries"]) == (False, 60)
    assert (disk["indexed"], disk["map_entries"]) == (True, 0)
    assert memory["answer"] == disk["answer"] == ["duplicate", 7]
