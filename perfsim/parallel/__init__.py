"""Parallel plans (TP, SP, PP, DP/ZeRO, EP, CP) for training and multi-GPU inference: validity, memory, time."""

from perfsim.parallel.plan import Plan, check_plan, plan_problems
from perfsim.parallel.step import ParallelEstimate, infer_step, predict_parallel, train_step

__all__ = ["Plan", "ParallelEstimate", "check_plan", "infer_step", "plan_problems", "predict_parallel",
           "train_step"]
