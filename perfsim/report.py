"""Figures: the roofline chart of a device with a workload's ops placed on it."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from perfsim.errors import InvalidInputError  # noqa: E402
from perfsim.hardware import Device  # noqa: E402
from perfsim.predict import Estimate  # noqa: E402

FIGURE_SUFFIXES = (".png", ".svg", ".pdf")


def check_figure_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() not in FIGURE_SUFFIXES:
        raise InvalidInputError(f"out: {str(path)!r} must end in one of {', '.join(FIGURE_SUFFIXES)}")
    if not path.parent.exists():
        raise InvalidInputError(f"out: folder {str(path.parent)!r} does not exist")
    return path


def save_figure(fig, path: str | Path) -> Path:
    """Write atomically: a temporary file in the same folder, then rename."""
    path = check_figure_path(path)
    fd, tmp = tempfile.mkstemp(suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=130, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def roofline_figure(device: Device, estimate: Estimate | None = None, max_labels: int = 12):
    """Ceilings per dtype (matrix units) and per memory level, with the estimate's ops placed on them."""
    fig, ax = plt.subplots(figsize=(9, 6))
    intensities = [b.intensity for b in estimate.breakdown if b.intensity > 0] if estimate else []
    lo = min([0.1] + intensities) / 2
    hi = max([1e4] + intensities) * 2
    xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    mem_colors = plt.cm.Blues([0.9, 0.7, 0.5, 0.35])
    top = max(device.compute.peak.values())
    for color, level in zip(mem_colors, reversed(device.memory), strict=False):
        ax.plot(xs, [min(top, level.bandwidth * x) for x in xs], color=color, lw=1.5,
                label=f"{level.name} {level.bandwidth / 1e12:.3g} TB/s")
    ceilings: dict[float, list[str]] = {}
    for dtype, peak in device.compute.peak.items():
        ceilings.setdefault(peak, []).append(dtype)
    for peak, dtypes in ceilings.items():
        ax.axhline(peak, color="0.55", lw=0.8, ls="--")
        ax.text(hi, peak, f" {'/'.join(dtypes)} {peak / 1e12:.4g} TFLOP/s", va="center", fontsize=7, color="0.3")
    if estimate:
        rows = [b for b in estimate.breakdown if b.flops > 0 and b.time_s > 0]
        labels: dict[tuple[int, int], list] = {}  # ops at nearly the same point share one label
        for b in rows:
            achieved = b.flops / b.time_s
            marker = {"compute": "o", "memory": "s", "comm": "^", "overhead": "x"}.get(b.bound, "o")
            ax.scatter(b.intensity, achieved, s=30 + 300 * b.time_s / estimate.latency_s, marker=marker,
                       zorder=3, alpha=0.8)
            key = (round(math.log10(b.intensity) / 0.25), round(math.log10(achieved) / 0.25))
            labels.setdefault(key, []).append((b.time_s, b.name, b.intensity, achieved))
        for group in sorted(labels.values(), key=lambda g: -sum(t for t, *_ in g))[:max_labels]:
            group.sort(reverse=True)
            _, _, x, y = group[0]
            ax.annotate(", ".join(name for _, name, _, _ in group), (x, y), fontsize=7, xytext=(4, 4),
                        textcoords="offset points")
        ax.set_title(f"{estimate.model} {estimate.task} on {device.name}: batch {estimate.batch}, "
                     f"{'seq ' + str(estimate.seq) if estimate.seq else 'context ' + str(estimate.context)}")
    else:
        ax.set_title(f"Roofline of {device.name}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(top / 10 ** math.ceil(math.log10(top / (device.memory_bw_Bps * lo))), top * 3)
    ax.set_xlabel("arithmetic intensity (FLOP / byte of main-memory traffic)")
    ax.set_ylabel("FLOP/s")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, title="memory roofs")
    return fig
