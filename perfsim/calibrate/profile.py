"""Calibration profiles: fitted CostParams for a device, with the data they were fitted on.

Shipped profiles live in perfsim/profiles/<device>.yaml. A device without one is costed with the
transfer profile, the H100's: parameters fitted on H100 data only, which carry over through the
device's own peaks, bandwidths, unit count and clock (the transfer that `perfsim validate` scores).
"""

from __future__ import annotations

import os
import tempfile
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from perfsim.cost.params import CostParams
from perfsim.errors import SpecError
from perfsim.specfiles import read_mapping, validation_message

PROFILE_DIR = Path(__file__).resolve().parent.parent / "profiles"
TRANSFER = "h100-sxm"


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    device: str
    fitted_on: list[str] = []
    split: str = ""
    scores: dict[str, dict[str, float]] = {}
    created: str = ""
    params: CostParams = CostParams()


def load_profile(path: str | Path) -> Profile:
    path = Path(path)
    try:
        return Profile.model_validate(read_mapping(path))
    except ValidationError as exc:
        raise SpecError(validation_message(str(path), exc)) from None


@lru_cache(maxsize=64)
def shipped_profile(device_name: str) -> Profile | None:
    """The shipped profile for a device name, else the transfer profile, else None."""
    for name in (device_name, TRANSFER):
        path = PROFILE_DIR / f"{name}.yaml"
        if path.is_file():
            return load_profile(path)
    return None


def resolve(profile: str | Path | Profile | None, device_name: str) -> Profile | None:
    """'auto' -> shipped (or transfer) profile; None/'none' -> no profile (roofline); else a path."""
    if profile is None or profile == "none":
        return None
    if isinstance(profile, Profile):
        return profile
    if profile == "auto":
        return shipped_profile(device_name)
    return load_profile(profile)


def save_profile(profile: Profile, path: str | Path) -> Path:
    """Write atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".yaml", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(profile.model_dump(mode="json"), fh, sort_keys=False)
    os.replace(tmp, path)
    return path
