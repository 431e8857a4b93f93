"""`perfsim validate` and `perfsim calibrate` from the command line: outputs and one-line errors."""

import json

import pytest

from perfsim import measured
from perfsim.calibrate.profile import load_profile
from perfsim.cli import main
from perfsim.errors import DataError

try:
    measured.data_root()
    HAVE_DATA = True
except DataError:
    HAVE_DATA = False
needs_data = pytest.mark.skipif(not HAVE_DATA, reason="measured data (shared/data/measured) not found")


def run(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@needs_data
def test_validate_lists_datasets(capsys):
    code, out, _ = run(["validate", "--list"], capsys)
    assert code == 0 and "aic-h100-gemm" in out and "vidur-a100" in out


@needs_data
def test_calibrate_from_table_writes_a_profile_predict_uses(tmp_path, capsys):
    out = tmp_path / "a100.yaml"
    code, text, _ = run(["calibrate", "--from", "llmcompass-a100-matmul", "--hardware", "a100-sxm-80gb",
                         "--out", str(out), "--quick", "--json"], capsys)
    assert code == 0
    profile = load_profile(out)
    assert profile.device == "a100-sxm-80gb" and profile.fitted_on == ["llmcompass-a100-matmul"]
    assert json.loads(text)["scores"]["llmcompass-a100-matmul"]["mape"] < 0.5
    code, text, _ = run(["predict", "-m", "llama-2-7b", "-H", "a100-sxm-80gb", "--task", "prefill", "--seq", "512",
                         "--profile", str(out), "--json"], capsys)
    assert code == 0 and "llmcompass-a100-matmul" in json.loads(text)["assumptions"][-1]


@pytest.mark.parametrize("args, field", [
    (["validate", "--dataset", "no-such-set"], "dataset"),
    (["validate", "--dataset", "some/file.csv"], "file.csv"),
    (["calibrate", "--out", "x.yaml"], "from"),
    (["calibrate", "--from", "aic-h100-gemm", "--out", "x.yaml"], "hardware"),
    (["calibrate", "--from", "aic-h100-gemm", "--hardware", "h100-sxm", "--out", "x.txt"], "out"),
    (["calibrate", "--device", "tpu", "--out", "calib"], "device"),
    (["predict", "-m", "llama-2-7b", "-H", "h100-sxm", "--context", "8", "--profile", "missing.yaml"], "missing.yaml"),
])
def test_bad_calibration_input_is_one_line(args, field, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(args, capsys)
    assert code == 2 and out == "" and err.count("\n") == 1 and field in err
    assert list(tmp_path.iterdir()) == []


def test_cuda_calibration_without_a_gpu_is_one_line(tmp_path, capsys):
    try:
        import torch
        if torch.cuda.is_available():
            pytest.skip("a CUDA GPU is present")
    except ImportError:
        pass
    code, _, err = run(["calibrate", "--device", "cuda", "--out", str(tmp_path / "c")], capsys)
    assert code == 2 and err.startswith("error: device:") and err.count("\n") == 1


def test_validate_table_names_every_data_set(capsys, monkeypatch):
    """Serving sets have no 'all' row (ttft, tpot): the name goes on each set's first row."""
    import perfsim.validate as val
    scores = [val.Score("aic-silicon-refs", g, "all", 18, 1.0, 1.5, 0.9, 1.4) for g in ("ttft", "tpot")]
    scores += [val.Score("vidur-a100", g, "a100-sxm-80gb", 10, 0.4, 0.9, 0.07, 0.16) for g in ("all", "add")]
    monkeypatch.setattr(val, "validate", lambda *a, **k: val.Report(split="test split", scores=scores))
    code, out, _ = run(["validate", "--dataset", "aic-silicon-refs"], capsys)
    assert code == 0
    rows = [line for line in out.splitlines() if "%" in line]
    assert len(rows) == 4
    assert "aic-silicon-refs" in rows[0] and "aic-silicon-refs" not in rows[1]
    assert "vidur-a100" in rows[2] and "vidur-a100" not in rows[3]


@needs_data
def test_validate_a_file_takes_its_gpu_from_the_rows(tmp_path, capsys):
    import pandas as pd
    raw = pd.read_parquet(measured.data_root() / "aiconfigurator/h100_sxm/gemm_perf.parquet").iloc[::200]
    raw.to_csv(tmp_path / "gemm_perf.txt", index=False)
    code, out, _ = run(["validate", "--dataset", str(tmp_path / "gemm_perf.txt"), "--quick", "--json"], capsys)
    assert code == 0
    scores = json.loads(out)["scores"]
    assert scores and {s["hardware"] for s in scores} == {"h100-sxm"}
    # a file naming no GPU needs --hardware, said in one line
    raw.drop(columns=["device"]).to_csv(tmp_path / "anon.txt", index=False)
    code, out, err = run(["validate", "--dataset", str(tmp_path / "anon.txt")], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1 and "--hardware" in err
