"""What-if hardware (perfsim.whatif, `--what-if KEY=VALUE`): changed numbers, physics kept, one-line errors."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import perfsim
from perfsim.cli import main
from perfsim.errors import PerfsimError
from perfsim.serving import serve
from perfsim.whatif import parse_items, what_if


def run_main(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_values_are_factors_or_quantities():
    base = perfsim.load_hardware("h100-sxm")
    faster = what_if("h100-sxm", {"memory_bandwidth": "x1.5", "peak_fp8": "2 PFLOP/s", "memory_capacity": "141 GB"})
    assert faster.memory_bw_Bps == pytest.approx(1.5 * base.memory_bw_Bps)
    assert faster.peak_flops("fp8") == pytest.approx(2e15) and faster.memory_bytes == pytest.approx(141e9)
    # the achievable matmul share of a changed peak stays; other peaks untouched
    assert faster.compute.mamf["fp8"] / 2e15 == pytest.approx(base.compute.mamf["fp8"] / base.peak_flops("fp8"))
    assert faster.peak_flops("bf16") == base.peak_flops("bf16")
    assert faster.name == base.name and "what-if" in faster.summary
    system = what_if("dgx-h100", {"compute": "2x", "link_bandwidth": "x0.5", "nic_bandwidth": "100 GB/s"})
    ref = perfsim.load_hardware("dgx-h100")
    assert system.gpu.peak_flops("bf16") == pytest.approx(2 * ref.gpu.peak_flops("bf16"))
    assert system.intra_link.bandwidth == pytest.approx(ref.intra_link.bandwidth / 2)
    assert system.nic.bandwidth == pytest.approx(100e9) and system.gpu.name == ref.gpu.name
    assert what_if("dgx-h100", {}) is ref
    fast = what_if("h100-sxm", {"clock": "2.196 GHz"})            # 1.2 x 1.83 GHz
    assert fast.compute.clock == pytest.approx(2.196e9) and fast.peak_flops("fp8") == pytest.approx(
        1.2 * base.peak_flops("fp8")) and fast.level("l2").bandwidth == pytest.approx(1.2 * base.level("l2").bandwidth)
    assert fast.memory_bw_Bps == base.memory_bw_Bps               # HBM has its own clock


def test_a_unit_factor_changes_nothing_the_profile_still_applies():
    kwargs = dict(task="decode", batch=32, context=2048, tp=8)
    base = perfsim.predict("llama-3.1-70b", "dgx-h100", **kwargs)
    same = perfsim.predict("llama-3.1-70b", what_if("dgx-h100", {"memory_bandwidth": "x1"}), **kwargs)
    assert same.latency_s == pytest.approx(base.latency_s, rel=1e-12)


def test_more_memory_lets_a_model_fit():
    kwargs = dict(task="decode", batch=1, context=1024)
    assert not perfsim.predict("llama-3.1-70b", "h100-sxm", **kwargs).fits_in_memory
    bigger = what_if("h100-sxm", {"memory_capacity": "192 GB"})
    assert perfsim.predict("llama-3.1-70b", bigger, **kwargs).fits_in_memory


KEYS = ["memory_bandwidth", "cache_bandwidth", "compute", "clock", "peak_bf16", "link_bandwidth"]
CASES = [("llama-3.1-8b", "decode", 1), ("llama-3.1-8b", "prefill", 1), ("qwen3-30b-a3b", "decode", 1),
         ("llama-3.1-70b", "decode", 4), ("llama-3.1-70b", "prefill", 4)]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(KEYS), st.floats(1.0, 4.0), st.sampled_from(CASES), st.sampled_from([1, 16, 128]))
def test_more_bandwidth_or_compute_never_predicts_slower(key, factor, case, batch):
    model, task, tp = case
    kwargs = dict(task=task, batch=batch, tp=tp, **({"context": 2048} if task == "decode" else {"seq": 512}))
    hw = "dgx-h100"
    base = perfsim.predict(model, hw, **kwargs).latency_s
    better = perfsim.predict(model, what_if(hw, {key: f"x{factor}"}), **kwargs).latency_s
    worse = perfsim.predict(model, what_if(hw, {key: f"x{1 / factor}"}), **kwargs).latency_s
    assert better <= base * (1 + 1e-9) and worse >= base * (1 - 1e-9)


def test_serving_on_faster_memory_is_faster_and_leaves_the_real_gpu_alone():
    kwargs = dict(isl=512, osl=64, concurrency=16, num_requests=64)
    before = serve("llama-3.1-8b", "h100-sxm", **kwargs).summary["tpot_s"]
    faster = serve("llama-3.1-8b", what_if("h100-sxm", {"memory_bandwidth": "x2"}), **kwargs).summary["tpot_s"]
    after = serve("llama-3.1-8b", "h100-sxm", **kwargs).summary["tpot_s"]   # no step table shared by name
    assert faster < before and after == before


@pytest.mark.parametrize("hardware, changes, match", [
    ("h100-sxm", {"foo": "x2"}, "unknown key 'foo'"),
    ("h100-sxm", {"memory_bandwidth": "fast"}, "memory_bandwidth"),
    ("h100-sxm", {"memory_bandwidth": "x0"}, "factor must be"),
    ("h100-sxm", {"memory_bandwidth": "-3 TB/s"}, "must be > 0"),
    ("h100-sxm", {"peak_fp8": "x1e308"}, "finite"),
    ("h100-sxm", {"memory_bandwidth": "1e400 TB/s"}, "finite"),
    ("h100-sxm", {"compute": "5 TFLOP/s"}, "takes a factor"),
    ("h100-sxm", {"peak_fp4": "x2"}, "no fp4 peak"),
    ("h100-sxm", {"link_bandwidth": "x2"}, "needs a system"),
    ("h100-sxm", {"tdp": "10 W"}, "not a valid spec"),
    ("nvlink4", {"memory_bandwidth": "x2"}, "is a link"),
])
def test_bad_changes_are_one_line_errors(hardware, changes, match):
    with pytest.raises(PerfsimError, match=match) as err:
        what_if(hardware, changes)
    assert str(err.value).startswith("what-if") and "\n" not in str(err.value)


def test_cli_items_and_commands(tmp_path, capsys):
    assert parse_items(["memory_bandwidth=x2", " compute = 1.5x "]) == {"memory_bandwidth": "x2", "compute": "1.5x"}
    common = ["-m", "llama-3.1-8b", "-H", "h100-sxm", "--task", "decode", "--batch", "8", "--context", "1024"]
    code, out, _ = run_main(["predict", *common, "--json"], capsys)
    base = json.loads(out)["latency_s"]
    code, out, _ = run_main(["predict", *common, "--what-if", "memory_bandwidth=x2", "--json"], capsys)
    assert code == 0 and json.loads(out)["latency_s"] < base
    chart = tmp_path / "roof.png"
    code, _, _ = run_main(["roofline", *common, "--what-if", "compute=x2", "--out", str(chart)], capsys)
    assert code == 0 and chart.stat().st_size > 0
    code, out, _ = run_main(["hw", "show", "dgx-h100", "--what-if", "link_bandwidth=x2", "--json"], capsys)
    assert code == 0 and "what-if: link_bandwidth=x2" in json.loads(out)["summary"]
    code, out, err = run_main(["predict", *common, "--what-if", "memory_bandwidth"], capsys)
    assert code == 2 and out == "" and err.startswith("error: what-if:") and len(err.strip().splitlines()) == 1



def test_plan_serve_searches_the_changed_systems(capsys):
    from perfsim.serving.plan import plan_serving
    kwargs = dict(isl=1024, osl=128, rate=4.0, slo_tpot=0.03, num_requests=150, disagg=False, top=3)
    base = plan_serving("llama-3.1-70b", "dgx-h100", **kwargs).candidates
    faster = plan_serving("llama-3.1-70b", "dgx-h100", what_if={"memory_bandwidth": "x2"}, **kwargs).candidates
    tpot = {p.fleet: p.tpot_p90_s for p in base}
    shared = [p for p in faster if p.fleet in tpot]
    assert shared and all(p.tpot_p90_s < tpot[p.fleet] for p in shared)
    code, out, _ = run_main(["plan", "--task", "serve", "-m", "llama-3.1-8b", "-H", "dgx-h100", "--rate", "2",
                             "--isl", "512", "--osl", "64", "--what-if", "compute=x2"], capsys)
    assert code == 0 and "what-if: compute=x2" in out
    code, out, err = run_main(["plan", "--task", "serve", "-m", "llama-3.1-8b", "-H", "dgx-h100", "--rate", "2",
                               "--what-if", "compute=fast"], capsys)
    assert code == 2 and err.startswith("error: what-if:")


def test_a_changed_system_saves_as_yaml_with_its_device_inline(tmp_path):
    import yaml
    changed = what_if("dgx-h100", {"memory_bandwidth": "x1.5", "link_latency": "x2"})
    path = tmp_path / "dgx-h100-faster.yaml"
    path.write_text(yaml.safe_dump(changed.model_dump(mode="json"), sort_keys=False))
    loaded = perfsim.load_hardware(path)
    assert loaded.gpu == changed.gpu and loaded.intra_link == changed.intra_link
    kwargs = dict(task="decode", batch=16, context=1024, tp=8)
    assert perfsim.predict("llama-3.1-70b", path, **kwargs).latency_s == \
        pytest.approx(perfsim.predict("llama-3.1-70b", changed, **kwargs).latency_s)


def test_an_inline_device_with_a_missing_field_names_it(tmp_path):
    path = tmp_path / "node.yaml"
    path.write_text("name: node\nkind: system\ndevices_per_node: 4\nintra_node_link: nvlink4\nnics_per_node: 0\n"
                    "source: my lab\ndevice:\n  name: g\n  kind: gpu\n  vendor: ACME\n"
                    "  compute: {units: 100, clock: 1.5GHz, peak: {bf16: 500 TFLOP/s, fp32: 50 TFLOP/s}, source: lab}\n"
                    "  memory: [{name: hbm, capacity: 80 GB, bandwidth: 2 TB/s}]\n"
                    "  power: {tdp: 500 W, idle: 80 W, source: lab}\n")
    with pytest.raises(PerfsimError, match=r"device\.spec\.memory\.0\.source") as err:
        perfsim.load_hardware(path)
    assert "\n" not in str(err.value)
