"""``garrison model build --help`` lists real options, kept in step with ``python -m models.build``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import models.build
from models.detector import DEFAULT_MODEL_PATH
from supervisors import cli

REPO = Path(__file__).resolve().parents[2]


def test_help_lists_the_options_with_their_defaults() -> None:
    result = CliRunner().invoke(cli.main, ["model", "build", "--help"])
    assert result.exit_code == 0
    assert "--seed INTEGER" in result.output and "[default: 7]" in result.output
    assert "--out FILE" in result.output and "models/gas_detector.onnx" in result.output


def test_options_and_defaults_mirror_the_build_scripts_argparse() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "models.build", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    script_options = set(re.findall(r"--[a-z][a-z-]+", proc.stdout)) - {"--help"}
    command = cli.model.commands["build"]
    click_options = {opt for p in command.params for opt in p.opts}
    assert click_options == script_options
    assert cli.MODEL_BUILD_SEED == models.build.DEFAULT_SEED
    assert DEFAULT_MODEL_PATH.resolve() == cli.MODEL_BUILD_OUT


def test_options_reach_the_build_script(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[list[str]] = []
    monkeypatch.setattr(models.build, "main", lambda argv: seen.append(list(argv)) or 0)
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(cli.main, ["model", "build", "--seed", "11", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert seen == [["--seed", "11", "--out", str(out)]]
    assert CliRunner().invoke(cli.main, ["model", "build", "--sed", "1"]).exit_code == 2  # a typo is an error
