"""perfsim: analytical performance simulator and roofline modeler for transformer and MoE workloads."""

from perfsim import ops
from perfsim.costmodel import op_time
from perfsim.hardware import load_hardware
from perfsim.model import load_model
from perfsim.parallel import Plan, train_step
from perfsim.predict import Estimate, predict
from perfsim.search import plan
from perfsim.serving import serve as simulate_serving
from perfsim.whatif import what_if

__all__ = ["Estimate", "Plan", "load_hardware", "load_model", "op_time", "ops", "plan", "predict",
           "simulate_serving", "train_step", "what_if"]
__version__ = "0.1.0"
