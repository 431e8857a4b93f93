"""Parse human quantities ("80 GiB", "3.35 TB/s", "989 TFLOP/s", "700 W") into SI floats.

Internal values are plain floats in SI base units: seconds, bytes, FLOP, FLOP/s, B/s, W, J, Hz.
"""

from __future__ import annotations

import re

from perfsim.errors import SpecError

_DECIMAL = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
_BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50}
_TIME = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}

# unit family -> (accepted unit symbols, scale of the symbol relative to the SI unit)
_FAMILIES: dict[str, dict[str, float]] = {
    "bytes": {"B": 1.0, "b": 0.125},
    "bandwidth": {"B/s": 1.0, "b/s": 0.125, "bps": 0.125},
    "flops": {"FLOP/s": 1.0, "FLOPS": 1.0, "OP/s": 1.0, "OPS": 1.0},
    "power": {"W": 1.0},
    "energy": {"J": 1.0, "Wh": 3600.0},
    "frequency": {"Hz": 1.0},
}

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PATTERN = re.compile(rf"^\s*({_NUMBER})\s*([A-Za-zµ]{{0,2}}?)\s*([A-Za-z/]+)\s*$")


def parse(value: str | float | int, family: str, field: str = "value") -> float:
    """Parse `value` as a quantity of `family` (bytes, bandwidth, flops, power, energy, frequency, time).

    A bare number is taken as already in SI units.
    """
    if isinstance(value, bool):
        raise SpecError(f"{field}: expected a {family} quantity, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if family == "time":
        return _parse_time(text, field)
    units = _FAMILIES[family]
    m = _PATTERN.match(text)
    if m:
        number, prefix, unit = m.groups()
        # A prefix may have been swallowed into the unit (e.g. "GB/s" -> prefix "G", unit "B/s").
        for cand_prefix, cand_unit in ((prefix, unit), (prefix + unit[:1], unit[1:]), (prefix + unit[:2], unit[2:])):
            if cand_unit in units:
                scale = _BINARY.get(cand_prefix) or _DECIMAL.get(cand_prefix)
                if scale is not None:
                    return float(number) * scale * units[cand_unit]
    accepted = ", ".join(sorted(units))
    raise SpecError(f"{field}: cannot read {text!r} as {family}; use a number with a unit in {{{accepted}}} "
                    f"and an optional prefix (k, M, G, T, P or Ki, Mi, Gi, Ti), e.g. '80 GiB', '3.35 TB/s'")


def _parse_time(text: str, field: str) -> float:
    m = re.match(rf"^\s*({_NUMBER})\s*(s|ms|us|µs|ns)\s*$", text)
    if not m:
        raise SpecError(f"{field}: cannot read {text!r} as a time; use a number with s, ms, us or ns, e.g. '2 us'")
    return float(m.group(1)) * _TIME[m.group(2)]


def parse_money(value: str | float | int, field: str = "price") -> float:
    """Parse '$2.99' or 2.99 (US dollars)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip().replace("$", "").replace("USD", "").strip()
    try:
        return float(text)
    except ValueError:
        raise SpecError(f"{field}: cannot read {value!r} as US dollars; use e.g. '$2.99'") from None


def format_quantity(value: float, unit: str, binary: bool = False) -> str:
    """Format an SI float with a prefix, e.g. 3.35e12, 'B/s' -> '3.35 TB/s'."""
    if binary:
        for prefix, scale in (("Ti", 2.0**40), ("Gi", 2.0**30), ("Mi", 2.0**20), ("Ki", 2.0**10)):
            if abs(value) >= scale:
                return f"{value / scale:.4g} {prefix}{unit}"
        return f"{value:.4g} {unit}"
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.4g} {prefix}{unit}"
    if 0 < abs(value) < 1 and unit == "s":
        for prefix, scale in (("m", 1e-3), ("u", 1e-6), ("n", 1e-9)):
            if abs(value) >= scale:
                return f"{value / scale:.4g} {prefix}{unit}"
    return f"{value:.4g} {unit}"
