"""The README's CLI tour runs as written (each command exits 0), so the examples stay true."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from perfsim.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"
# left out: long fits and scoring (benchmarks time them), a GPU measurement, and placeholder or generated paths
SLOW_OR_EXTERNAL = ("perfsim validate", "perfsim calibrate", "path/to/", "my-h100.yaml")


def tour_commands() -> list[str]:
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("perfsim ") and not any(s in line for s in SLOW_OR_EXTERNAL):
                commands.append(line)
    return commands


def test_the_tour_is_there():
    assert len(tour_commands()) >= 12


@pytest.mark.parametrize("command", tour_commands())
def test_readme_command_runs(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)   # charts the tour writes land here
    code = main(shlex.split(command)[1:])
    err = capsys.readouterr().err
    assert code == 0, err[-300:]
