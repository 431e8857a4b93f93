"""Find and read the YAML spec files shipped with perfsim (hardware/, workloads/) or given as paths."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from perfsim.errors import SpecError, one_line

_PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The shipped folder `name` ('hardware' or 'workloads'): inside the wheel, or at the repo root."""
    for candidate in (_PACKAGE_DIR / "_data" / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise SpecError(f"{name}: the shipped spec folder is missing from the installation")


def looks_like_path(text: str) -> bool:
    return text.endswith((".yaml", ".yml", ".json", ".csv", ".parquet")) or "/" in text or "\\" in text


def read_mapping(path: Path) -> dict[str, Any]:
    """Read a YAML or JSON file that must hold one mapping; one-line errors otherwise."""
    if not path.is_file():
        raise SpecError(f"{path}: no such file")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise SpecError(f"{path}: malformed {kind}{line}: {one_line(getattr(exc, 'problem', None) or exc)}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: expected a mapping of fields at the top level, got {type(data).__name__}")
    return data


def validation_message(source: str, exc: ValidationError) -> str:
    """First pydantic error as one line: '<source>: field a.b: <what is wrong>'."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    elif err["type"] == "missing":
        msg = "required field is missing"
    return one_line(f"{source}: field {loc}: {msg}")


def yaml_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.yaml") if p.is_file())


@cache
def shipped_names(folder: str) -> dict[str, Path]:
    """name -> file for the YAML specs shipped in `folder` ('hardware' or 'workloads')."""
    names: dict[str, Path] = {}
    for path in yaml_files(data_dir(folder)):
        try:  # a broken shipped file must not hide the others; the tests load every file
            name = read_mapping(path).get("name")
        except SpecError:
            continue
        if isinstance(name, str):
            names[name] = path
    return names


def find_spec(name_or_path: str | Path, folder: str) -> Path | None:
    """The file of a shipped name in `folder`, or the resolved path of a user's file; None if neither."""
    text = str(name_or_path)
    if text in shipped_names(folder):
        return shipped_names(folder)[text]
    if looks_like_path(text) or Path(text).is_file():
        return Path(text).resolve()
    return None
