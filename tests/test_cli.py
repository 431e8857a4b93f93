"""The CLI through typer's runner and through a real subprocess: output, JSON contract, bad input."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import perfsim
from perfsim.cli import app, main

runner = CliRunner()


def run_main(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_predict_json_contract(capsys):
    code, out, _ = run_main(["predict", "--model", "llama-2-7b", "--hardware", "h100-sxm", "--task", "decode",
                             "--batch", "8", "--context", "1024", "--json"], capsys)
    assert code == 0
    data = json.loads(out)
    for key in ("latency_s", "tokens_per_s", "memory_per_device_bytes", "energy_j", "breakdown"):
        assert key in data
    assert data["latency_s"] > 0 and data["tokens_per_s"] == pytest.approx(8 / data["latency_s"])
    assert data["memory_per_device_bytes"] > 13e9  # 6.7B bf16 weights alone


def test_prefill_latency_covers_whole_batch(capsys):
    base = ["predict", "-m", "llama-2-7b", "-H", "h100-sxm", "--task", "prefill", "--seq", "512", "--json"]
    _, one, _ = run_main(base + ["--batch", "1"], capsys)
    _, four, _ = run_main(base + ["--batch", "4"], capsys)
    assert json.loads(four)["latency_s"] > 3 * json.loads(one)["latency_s"]


def test_weight_quantization_shrinks_memory(capsys):
    base = ["predict", "-m", "llama-2-7b", "-H", "h100-sxm", "--context", "128", "--json"]
    _, bf16, _ = run_main(base, capsys)
    _, int4, _ = run_main(base + ["--weight-dtype", "int4"], capsys)
    kept = 2.0 * perfsim.load_model("llama-2-7b").unquantized_params()   # embeddings and LM head stay 16-bit
    assert json.loads(int4)["memory_breakdown"]["weights"] == pytest.approx(
        (json.loads(bf16)["memory_breakdown"]["weights"] - kept) / 4 + kept)


def test_hw_and_models_listing(capsys):
    code, out, _ = run_main(["hw", "list", "--json"], capsys)
    items = json.loads(out)
    assert code == 0 and all({"name", "kind"} <= set(i) for i in items)
    assert {i["kind"] for i in items} <= {"gpu", "cpu", "fpga", "accelerator", "link", "system"}
    code, out, _ = run_main(["models", "show", "llama-2-7b", "--json"], capsys)
    data = json.loads(out)
    assert data["params_total"] == data["params_active"]
    # llama-2-7b: 32 layers x K and V x 4096 x bf16 per token, no recurrent state
    assert data["kv_cache_bytes_per_token"] == 32 * 2 * 4096 * 2 and data["recurrent_state_bytes_per_sequence"] == 0
    code, out, _ = run_main(["models", "show", "nemotron-nano-12b-v2", "--json"], capsys)
    data = json.loads(out)
    assert data["layers_by_mixer"] == {"attention": 6, "mamba": 28}
    assert data["kv_cache_bytes_per_token"] == 6 * 2 * 8 * 128 * 2 and data["recurrent_state_bytes_per_sequence"] > 0


def test_roofline_writes_chart(tmp_path, capsys):
    out = tmp_path / "r.svg"
    code, text, _ = run_main(["roofline", "-m", "llama-2-7b", "-H", "h100-sxm", "--task", "prefill", "--seq", "256",
                              "--out", str(out)], capsys)
    assert code == 0 and out.stat().st_size > 1000 and "qkv_proj" in text


@pytest.mark.parametrize("args, field", [
    (["predict", "-m", "no-such-model", "-H", "h100-sxm", "--context", "1"], "model"),
    (["predict", "-m", "llama-2-7b", "-H", "no-such-gpu", "--context", "1"], "hardware"),
    (["predict", "-m", "llama-2-7b", "-H", "h100-sxm", "--batch", "-2", "--context", "1"], "batch"),
    (["predict", "-m", "llama-2-7b", "-H", "h100-sxm", "--context", "999999"], "context"),
    (["predict", "-m", "llama-2-7b", "-H", "h100-sxm", "--task", "prefill"], "seq"),
    (["predict", "-m", "llama-2-7b", "-H", "h100-sxm", "--task", "nope", "--seq", "4"], "--task"),
    (["predict", "-m", "llama-2-7b", "-H", "h100-sxm", "--context", "4", "--tp", "2"], "hardware"),
])
def test_bad_input_is_one_line_exit_2(args, field, capsys):
    code, out, err = run_main(args, capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and field in err and "Traceback" not in err


def test_malformed_hardware_yaml(tmp_path, capsys):
    bad = tmp_path / "gpu.yaml"
    bad.write_text("name: x\nkind: gpu\ncompute: [unclosed\n")
    code, _, err = run_main(["predict", "-m", "llama-2-7b", "-H", str(bad), "--context", "1"], capsys)
    assert code == 2 and "malformed YAML" in err and err.count("\n") == 1


def test_negative_bandwidth_rejected(tmp_path, capsys):
    import yaml

    from perfsim.specfiles import data_dir
    spec = yaml.safe_load((data_dir("hardware") / "devices" / "h100-sxm.yaml").read_text())
    spec["memory"][-1]["bandwidth"] = "-3 TB/s"
    path = tmp_path / "neg.yaml"
    path.write_text(yaml.safe_dump(spec))
    code, _, err = run_main(["predict", "-m", "llama-2-7b", "-H", str(path), "--context", "1"], capsys)
    assert code == 2 and "memory.2.bandwidth" in err


def test_roofline_bad_output_writes_nothing(tmp_path, capsys):
    target = tmp_path / "chart.txt"
    code, _, err = run_main(["roofline", "-m", "llama-2-7b", "-H", "h100-sxm", "--seq", "4", "--task", "prefill",
                             "--out", str(target)], capsys)
    assert code == 2 and "out" in err and not target.exists() and list(tmp_path.iterdir()) == []


def test_typer_runner_help():
    result = runner.invoke(app, ["predict", "--help"])
    assert result.exit_code == 0 and "--context" in result.output


def test_real_subprocess():
    ok = subprocess.run([sys.executable, "-m", "perfsim.cli", "predict", "-m", "llama-2-7b", "-H", "h100-sxm",
                         "--context", "100", "--json"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and json.loads(ok.stdout)["latency_s"] > 0
    bad = subprocess.run([sys.executable, "-m", "perfsim.cli", "predict", "-m", "nope", "-H", "h100-sxm",
                          "--context", "1"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stdout == "" and bad.stderr.startswith("error: model:")
    assert "Traceback" not in bad.stderr


def test_train_footprint_power_cap_slows_and_costs(capsys):
    base = ["predict", "--task", "train", "-m", "llama-3.1-8b", "-H", "dgx-h100", "--num-gpus", "8", "--tp", "2",
            "--dp", "4", "--global-batch", "64", "--seq", "4096", "--steps", "10", "--json"]
    _, free, _ = run_main(base, capsys)
    _, capped, _ = run_main(base + ["--power-limit", "300W"], capsys)
    free, capped = json.loads(free)["footprint"], json.loads(capped)["footprint"]
    assert free["kwh"] > 0 and free["cost_usd"] > 0 and free["co2e_kg"] > 0
    assert capped["throttled"] and capped["duration_s"] > free["duration_s"]
    assert capped["avg_power_w"] <= 8 * 300 * (1 + 1e-9)


def test_predict_compares_several_hardware(capsys):
    args = ["predict", "-m", "llama-3.1-8b", "-H", "a100-sxm-80gb,h100-sxm,h200-sxm", "--task", "decode",
            "--batch", "8", "--context", "2048"]
    code, out, _ = run_main([*args, "--json"], capsys)
    assert code == 0
    rows = json.loads(out)
    assert [r["hardware"] for r in rows] == ["a100-sxm-80gb", "h100-sxm", "h200-sxm"]
    latency = [r["latency_s"] for r in rows]
    assert latency[0] > latency[1] > latency[2]          # decode follows HBM bandwidth: 2.0 < 3.35 < 4.8 TB/s
    code, out, _ = run_main(["predict", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--task", "decode", "--batch", "8",
                             "--context", "2048", "--json"], capsys)
    assert json.loads(out)["latency_s"] == rows[1]["latency_s"]   # one name: the plain JSON object, the same figure
    code, out, _ = run_main(args, capsys)
    assert code == 0 and all(name in out for name in ("a100-sxm-80gb", "h100-sxm", "h200-sxm", "speedup"))
    code, out, err = run_main(["predict", "-m", "llama-3.1-8b", "-H", "h100-sxm,nope", "--context", "8"], capsys)
    assert code == 2 and out == "" and err.startswith("error: hardware:")
