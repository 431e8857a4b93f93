"""perfsim: analytical performance simulator and roofline modeler for transformer and MoE workloads."""

from perfsim.hardware import load_hardware
from perfsim.model import load_model

__all__ = ["load_hardware", "load_model"]
__version__ = "0.1.0"

from perfsim import ops  # noqa: E402
from perfsim.costmodel import op_time  # noqa: E402
from perfsim.predict import Estimate, predict  # noqa: E402

__all__ += ["ops", "op_time", "predict", "Estimate"]
