"""Plan-search speed: plans evaluated per second and the time of a full search.

GPT-3 175B on 1024 A100s and a 1T GPT (Megatron, Narayanan et al. 2021) on 3072 A100s (DGX A100 80GB),
sequence 2048, global batch 1536 and 3072; and DeepSeek-V3 (MoE) on 256 H100s. Each search is complete:
fresh caches, every distinct operator shape priced, every plan scored. Reading the YAML library and the
calibration profile happens once per process and is printed apart. Target: full 1T search < 2 s.

    python benchmarks/plan_speed.py
"""

from __future__ import annotations

import time

CASES = [("gpt3-175b", "dgx-a100-80gb", 1024, 1536, 2048), ("megatron-1t", "dgx-a100-80gb", 3072, 3072, 2048),
         ("deepseek-v3", "dgx-h100", 256, 1024, 4096)]


def main() -> None:
    t0 = time.perf_counter()
    from perfsim import load_hardware, load_model
    from perfsim.search import plan
    for model, hw, *_ in CASES:   # the library read once per process (YAML specs, calibration profile)
        load_model(model), load_hardware(hw).gpu
    print(f"import perfsim and read the specs: {time.perf_counter() - t0:.2f} s (once per process)")
    for model, hw, n, gb, seq in CASES:
        times = []
        for _ in range(3):   # every call is a full search: new caches, every operator shape priced again
            t = time.perf_counter()
            r = plan(model, hw, n, global_batch=gb, seq=seq, top=1)
            times.append(time.perf_counter() - t)
        best = r.plans[0]
        print(f"{model} on {n} x {hw} (global batch {gb}, seq {seq}): {r.evaluated:,} plans evaluated, "
              f"{r.feasible:,} fit; full search {times[0]:.2f} s first, {min(times):.2f} s best of 3 = "
              f"{r.evaluated / min(times):,.0f} plans/s ({1e6 * min(times) / r.evaluated:.1f} us per plan)")
        print(f"    best: tp {best.tp} pp {best.pp} dp {best.dp} ep {best.ep} cp {best.cp} micro-batch "
              f"{best.micro_batch} recompute {best.recompute} zero {best.zero} interleave {best.interleave}: step "
              f"{best.latency_s:.2f} s, MFU {100 * best.mfu:.1f}%, {best.memory_per_device_bytes / 2**30:.1f} GiB/GPU")


if __name__ == "__main__":
    main()
