"""Pure cost functions: roofline, efficiency models, communication, memory, energy. No I/O."""

from perfsim.cost.opcost import OpCost
from perfsim.cost.roofline import roofline

__all__ = ["OpCost", "roofline"]
