"""Energy, power cap, carbon and dollars of a serving (or training) run.

Per GPU and per engine step of length t with dynamic (switching) energy E_dyn from the cost model
(perfsim.cost.energy: J per FLOP by dtype + J per byte of main memory):

  P = P_static + s * E_dyn / t                         (first-order CMOS power: static + switching)
  power cap L (the device TDP, or --power-limit):  if P > L the clocks throttle until it fits. The power
  above idle, (P_static - P_idle) + s * E_dyn / t, scales with the clock (P ~ f at fixed voltage) while the
  work's energy stays the same, so the step stretches to
      t' = max(t, ((P_static - P_idle) * t + s * E_dyn) / (L - P_idle))
  and costs P_idle * t' + (P_static - P_idle) * t + s * E_dyn;
  run energy = sum over steps of that + P_idle * (time the GPU has no work)

P_static (W per GPU while it works) and s (a scale on the cost model's switching energy) default to the
device's idle power and 1; `fit_energy` in the validation module fits them per GPU type on measured
serving runs, and those fits (perfsim/serving/energy_fit.yaml, with the data they came from) are used
where they exist for the device.

Carbon: kg CO2e = kWh * PUE * grid intensity (kg/kWh). Dollars: GPUs * hours * price per GPU-hour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from perfsim import units
from perfsim.errors import InvalidInputError, SpecError, check_number
from perfsim.hardware import Device

FIT_FILE = Path(__file__).resolve().parent / "energy_fit.yaml"
# US average grid carbon intensity: EPA eGRID2022 national total output emission rate, 823.1 lb CO2e/MWh.
DEFAULT_GRID_KG_PER_KWH = 823.1 * 0.45359237 / 1000.0
J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class EnergyParams:
    static_w: float            # per GPU, while it runs steps
    idle_w: float              # per GPU, while it has no work
    dynamic_scale: float = 1.0
    cap_w: float = 0.0         # per GPU power limit (TDP or --power-limit)
    source: str = "device spec"


@lru_cache(maxsize=1)
def _fits() -> dict:
    if not FIT_FILE.is_file():
        return {}
    try:
        data = yaml.safe_load(FIT_FILE.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise SpecError(f"{FIT_FILE}: not valid YAML ({exc})") from None
    return data.get("devices", {}) or {}


def parse_power_limit(value: str | float | None, device: Device) -> float | None:
    """'330W' / 330 -> watts per GPU; must lie above the device's idle power."""
    if value is None or value == "":
        return None
    try:
        watts = units.parse(value, "power", field="power-limit")
    except SpecError as exc:
        raise InvalidInputError(str(exc)) from None
    if not math.isfinite(watts) or not watts > device.power.idle:
        raise InvalidInputError(f"power-limit: {watts:g} W is at or below the idle power of {device.name} "
                                f"({device.power.idle:g} W); give a limit between that and its TDP "
                                f"({device.power.tdp:g} W)")
    return watts


def energy_params(device: Device, power_limit_w: float | None = None, use_fit: bool = True,
                  static_w: float | None = None, dynamic_scale: float | None = None) -> EnergyParams:
    """The coefficients for a device: explicit values, else the shipped fit, else the device spec."""
    fit = _fits().get(device.name, {}) if use_fit else {}
    s_w = static_w if static_w is not None else fit.get("static_w", device.power.idle)
    scale = dynamic_scale if dynamic_scale is not None else fit.get("dynamic_scale", 1.0)
    if static_w is not None or dynamic_scale is not None:
        source = "given values"
    elif fit:
        source = fit.get("source", "fitted")
    else:
        source = "device spec: idle power as static power, cost-model switching energy"
    cap = min(device.power.tdp, power_limit_w) if power_limit_w else device.power.tdp
    if cap <= min(device.power.idle, s_w):
        raise InvalidInputError(f"power-limit: {cap:g} W leaves no headroom above the idle power "
                                f"{min(device.power.idle, s_w):g} W of {device.name}")
    return EnergyParams(static_w=float(s_w), idle_w=float(min(device.power.idle, s_w)), dynamic_scale=float(scale),
                        cap_w=float(cap), source=str(source))


def throttle_coefficients(p: EnergyParams) -> tuple[float, float]:
    """(a, b) with the capped step time t' = max(t, a * t + b * E_dyn): a = (P_static - P_idle) / (L - P_idle),
    b = s / (L - P_idle)."""
    head = p.cap_w - p.idle_w
    return (p.static_w - p.idle_w) / head, p.dynamic_scale / head


def throttle(t_s: float, e_dyn_gpu_j: float, p: EnergyParams) -> float:
    """Step time under the power cap (module docstring)."""
    a, b = throttle_coefficients(p)
    need = a * t_s + b * e_dyn_gpu_j
    return need if need > t_s else t_s


def step_energy(t_s: float, t_capped_s: float, e_dyn_gpu_j: float, p: EnergyParams) -> float:
    """Joules per GPU of a step that would take t_s unthrottled and took t_capped_s."""
    return p.idle_w * t_capped_s + (p.static_w - p.idle_w) * t_s + p.dynamic_scale * e_dyn_gpu_j


def check_footprint_inputs(price_per_gpu_hour: float | None, grid_kg_per_kwh: float, pue: float) -> None:
    """One-line errors for a price, grid intensity or PUE that is not a finite number in its range."""
    if price_per_gpu_hour is not None:
        check_number("price-per-gpu-hour", price_per_gpu_hour, "dollars")
    check_number("grid-intensity", grid_kg_per_kwh, "kg CO2e/kWh", inclusive=True)
    check_number("pue", pue, "(facility power / IT power)", low=1.0, inclusive=True)


def footprint(energy_j: float, duration_s: float, gpus: int, price_per_gpu_hour: float | None,
              grid_kg_per_kwh: float = DEFAULT_GRID_KG_PER_KWH, pue: float = 1.0) -> dict:
    """kWh (at the wall: times PUE), kg CO2e and US dollars of a run on `gpus` GPUs for `duration_s`."""
    check_footprint_inputs(price_per_gpu_hour, grid_kg_per_kwh, pue)
    kwh = energy_j * pue / J_PER_KWH
    out = {"kwh": kwh, "co2e_kg": kwh * grid_kg_per_kwh, "grid_kg_per_kwh": grid_kg_per_kwh, "pue": pue,
           "gpu_hours": gpus * duration_s / 3600.0,
           "price_per_gpu_hour": price_per_gpu_hour,
           "cost_usd": None if price_per_gpu_hour is None else gpus * duration_s / 3600.0 * price_per_gpu_hour}
    return out


def run_footprint(estimate, steps: int = 1, power_limit: str | float | None = None,
                  price_per_gpu_hour: float | None = None, grid_kg_per_kwh: float = DEFAULT_GRID_KG_PER_KWH,
                  pue: float = 1.0) -> dict:
    """Energy, power, carbon and cost of `steps` repetitions of a predict() Estimate (e.g. training steps),
    with the power cap applied: the step stretches when its power would exceed the limit."""
    from perfsim.hardware import load_device
    device = load_device(estimate.hardware)
    gpus = max(1, estimate.num_gpus)
    limit = parse_power_limit(power_limit, device)
    p = energy_params(device, limit, use_fit=False)
    # estimate.energy_j = dynamic + idle * t (perfsim.cost.energy.run_energy); recover the switching part
    dyn_gpu = max(0.0, estimate.energy_j / gpus - device.power.idle * estimate.latency_s)
    t = throttle(estimate.latency_s, dyn_gpu, p)
    step_j = gpus * step_energy(estimate.latency_s, t, dyn_gpu, p)
    step_j = min(step_j, gpus * p.cap_w * t)
    total_j = step_j * steps
    price = price_per_gpu_hour if price_per_gpu_hour is not None else (device.price.per_hour if device.price else None)
    out = {"step_time_s": t, "throttled": t > estimate.latency_s, "slowdown": t / estimate.latency_s
           if estimate.latency_s else 1.0, "energy_j": total_j, "avg_power_w": step_j / t if t else 0.0,
           "duration_s": t * steps}
    out.update(footprint(total_j, t * steps, gpus, price, grid_kg_per_kwh, pue))
    return out
