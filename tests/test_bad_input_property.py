"""Property: whatever number a user gives one of serve's or predict's numeric options, perfsim either runs, with no
infinite figure in its result (in a serving summary NaN marks a figure that is undefined, e.g. TPOT of one-token
replies, and prints as null), or refuses it with a one-line PerfsimError; no other exception escapes."""

import json
import math
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfsim import Plan, plan, predict, train_step
from perfsim.errors import PerfsimError
from perfsim.serving import serve

BASE = dict(model="llama-3.1-8b", hardware="h100-sxm", isl=64, osl=8, num_requests=6, timeline_bins=2)
FLOAT_OPTIONS = ["rate", "burstiness", "think_time", "ramp", "price_per_gpu_hour", "grid_intensity", "pue",
                 "slo_ttft", "slo_tpot", "slo_e2e", "length_spread", "step_overhead_s", "gpu_memory_utilization",
                 "request_latency_s", "power_limit", "kv_free_fraction"]
INT_OPTIONS = ["max_num_seqs", "max_num_batched_tokens", "block_size", "recv_interval", "concurrency", "spec_tokens",
               "turns", "prefix_len", "isl", "osl", "num_requests"]
ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -1.0, 1e-300, 5e-324, 1e300])
# large enough to be absurd, small enough that an accepted value still simulates in a moment
ANY_INT = st.integers(-10**6, 10**6) | st.sampled_from([0, -1, 2**31, 10**12])


def _workload(option: str, value) -> dict:
    kw = dict(BASE, rate=2.0)
    if option in ("ramp", "concurrency"):
        kw = dict(BASE, concurrency=3)
    if option == "burstiness":
        kw["rate"] = 0.5
    if option in ("think_time", "turns"):
        kw.update(turns=2, think_time=1.0)
    if option == "num_requests" and isinstance(value, int) and value > 10**4:
        value = 10**8   # over the bound: refused before anything is allocated
    kw[option] = value
    return kw


def _check(kw: dict) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")   # a numpy warning would be a second line under the CLI's error
            res = serve(**kw)
    except PerfsimError as exc:
        assert "\n" not in str(exc), str(exc)
        return
    for key, v in res.summary.items():
        if isinstance(v, float):
            assert not math.isinf(v), (key, v)


CORNERS = [float("nan"), float("inf"), -float("inf"), 5e-324, 1e-300, 1e300, -1.0, 0.0]


@pytest.mark.parametrize("option", FLOAT_OPTIONS)
def test_serve_float_options_at_the_corners(option):
    for value in CORNERS:
        _check(_workload(option, value))


@pytest.mark.parametrize("option", INT_OPTIONS)
def test_serve_integer_options_at_the_corners(option):
    for value in (-1, 0, 1, 2**31, 10**12):
        _check(_workload(option, value))


@settings(max_examples=160, deadline=None)
@given(option=st.sampled_from(FLOAT_OPTIONS), value=ANY_FLOAT)
def test_serve_float_options_run_or_refuse_in_one_line(option, value):
    _check(_workload(option, value))


@settings(max_examples=80, deadline=None)
@given(option=st.sampled_from(INT_OPTIONS), value=ANY_INT)
def test_serve_integer_options_run_or_refuse_in_one_line(option, value):
    _check(_workload(option, value))


@pytest.mark.parametrize("task, option", [(t, o) for t in ("prefill", "decode", "train")
                                          for o in ("batch", "seq", "context", "tp", "ep")])
def test_predict_options_at_the_corners(task, option):
    base = {"prefill": dict(batch=2, seq=256), "decode": dict(batch=4, context=512), "train": dict(batch=2, seq=256)}
    for value in [*CORNERS, 2.5, True, 2**31, 10**12]:
        kw = dict(base[task], task=task)
        kw[option] = value
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                est = predict("qwen3-30b-a3b", "dgx-h100" if option in ("tp", "ep") else "h100-sxm", **kw)
        except PerfsimError as exc:
            assert "\n" not in str(exc), str(exc)
            continue
        assert all(math.isfinite(x) for x in (est.latency_s, est.energy_j, est.tokens_per_s)), (kw, est.latency_s)


@pytest.mark.parametrize("option", ["num_gpus", "global_batch", "seq", "max_memory_fraction", "top", "max_micro_batch"])
def test_plan_options_at_the_corners(option):
    for value in [*CORNERS, 2.5, True, 2**31]:
        kw = dict(num_gpus=8, global_batch=16, seq=1024, top=3)
        kw[option] = value
        _refused_or_finite(lambda kw=kw: plan("llama-3.1-8b", "dgx-h100", **kw).plans[0].latency_s)


@pytest.mark.parametrize("option", ["tp", "pp", "dp", "ep", "cp", "micro_batch", "interleave", "zero"])
def test_train_step_plan_fields_at_the_corners(option):
    for value in [*CORNERS, 2.5, True, 2**31]:
        kw = dict(tp=2, pp=2, dp=2, micro_batch=1)
        kw[option] = value
        _refused_or_finite(lambda kw=kw: train_step("llama-3.1-8b", "dgx-h100", Plan(**kw), global_batch=16,
                                                    seq=1024).latency_s)


def _refused_or_finite(run) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            value = run()
    except PerfsimError as exc:
        assert "\n" not in str(exc), str(exc)
        return
    assert math.isfinite(value)


CELLS = st.sampled_from(["0", "1", "12", "-1", "0.5", "nan", "inf", "-inf", "1e308", "1e18", "abc", "", "3.7",
                         "2023-11-16 18:15:46", "[1, 2]", "null", "true"])


@settings(max_examples=120, deadline=None)
@given(rows=st.lists(st.tuples(CELLS, CELLS, CELLS), min_size=1, max_size=6), jsonl=st.booleans())
def test_any_trace_is_read_or_refused_in_one_line(tmp_path_factory, rows, jsonl):
    from perfsim.serving import arrivals
    path = tmp_path_factory.mktemp("trace") / ("t.jsonl" if jsonl else "t.csv")
    if jsonl:
        keys = ("arrival_s", "input_len", "output_len")
        path.write_text("".join(json.dumps(dict(zip(keys, r, strict=True))) + "\n" for r in rows))
    else:
        path.write_text("arrival_s,input_len,output_len\n" + "".join(",".join(r) + "\n" for r in rows))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            w = arrivals.trace(path)
    except PerfsimError as exc:
        assert "\n" not in str(exc), str(exc)
        return
    assert (w.input_len >= 1).all() and (w.output_len >= 1).all() and math.isfinite(float(w.arrival_s.max()))
