"""Extra CLI commands, each a module exposing register(app); options they share with perfsim.cli."""

import typer

WhatIfOpt = typer.Option(None, "--what-if",
                         help="Change the hardware, KEY=VALUE, repeatable: a factor (memory_bandwidth=x1.5) or a "
                              "quantity (peak_fp8=2PFLOP/s, link_bandwidth=900GB/s); keys: memory_bandwidth, "
                              "memory_capacity, cache_bandwidth, compute, clock, peak_<dtype>, link_bandwidth, "
                              "link_latency, nic_bandwidth, tdp.")
