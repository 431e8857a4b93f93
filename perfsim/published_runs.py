"""Published end-to-end measurements the simulators are scored against: the row file reader and the comparison
record both validations (perfsim.parallel.validation, perfsim.serving.published) return."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from perfsim.errors import DataError

DATA_DIR = Path(__file__).resolve().parents[1] / "tests" / "data"


@dataclass
class Comparison:
    id: str
    source: str
    metric: str
    published: float
    predicted: float
    plan: dict
    assumed: list
    model: str = ""

    @property
    def error(self) -> float:
        """Signed relative error of the prediction."""
        return self.predicted / self.published - 1.0


def load_runs(path: str | Path, what: str) -> list[dict]:
    """The `runs` of a published-runs YAML; a one-line DataError when the file is missing."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: published {what} runs not found (the file ships with the repository's tests)")
    return yaml.safe_load(path.read_text())["runs"]
