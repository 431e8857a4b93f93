"""Serving simulation: a discrete-event model of an LLM server fleet on the calibrated cost model.

    from perfsim.serving import serve
    result = serve("llama-3.1-70b", "dgx-h100", num_gpus=8, tp=4, isl=1024, osl=256, rate=4.0)
    result.summary["ttft_p99_s"], result.summary["energy_per_token_j"]

Modules: arrivals (request streams and traces, with their prefix-cache hits), steptime (step-time tables from
the cost model), kvcache (paged KV capacity, disaggregated KV transfer), scheduler (one engine: continuous
batching, chunked prefill, static batching, prefix caching, preemption), host (the engine's host overhead per
step, added to the GPU's time or overlapped with it), speculative (draft tokens and their acceptance), simulate
(the event loop and `serve`), metrics, energy (power cap, carbon, cost), validation (against measured serving
runs), published (against published MLPerf results), sweep (load sweeps, capacity under SLOs), plan (deployment
search).
"""

from perfsim.serving.arrivals import Workload, closed_loop, gamma, poisson, trace
from perfsim.serving.simulate import SchedulerConfig, ServeResult, serve
from perfsim.serving.steptime import Deployment, StepModel, make_deployment

__all__ = ["Deployment", "SchedulerConfig", "ServeResult", "StepModel", "Workload", "closed_loop", "gamma",
           "make_deployment", "poisson", "serve", "trace"]
