"""Load sweeps and capacity search (perfsim.serving.sweep, `perfsim serve --concurrency 1,4,16 | --rate max`)."""

from __future__ import annotations

import json

import pytest

from perfsim.cli import main
from perfsim.errors import PerfsimError
from perfsim.serving import serve
from perfsim.serving.sweep import capacity, max_rate, parse_loads, saturated_rate, sweep

MODEL, GPU = "llama-3.1-8b", "h100-sxm"


def run_main(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("text, integer, expected", [
    ("4", True, [4]), ("1, 4,16,4", True, [1, 4, 16]), ("0.5,2", False, [0.5, 2.0]), ("8.0", True, [8])])
def test_loads_parse_in_order_without_duplicates(text, integer, expected):
    assert parse_loads(text, "concurrency", integer, 1e-9 if not integer else 1) == expected


@pytest.mark.parametrize("text", ["", "1,,2", "a", "1.5", "0", "-2", "nan", "inf", "4," * 65 + "4"])
def test_bad_loads_are_one_line_errors_naming_the_flag(text):
    with pytest.raises(PerfsimError) as err:
        parse_loads(text, "concurrency", True, 1)
    assert str(err.value).startswith("concurrency:") and "\n" not in str(err.value)


@pytest.mark.parametrize("limit", [0.07, 3.3, 9.9])
def test_max_rate_brackets_the_threshold(limit):
    found = max_rate(lambda r: r <= limit, hi=10.0, bisections=8)
    assert found <= limit < found + 10.0 / 2 ** 8


def test_capacity_says_when_every_probe_met_the_goal():
    class Met:
        summary = {"slo_attainment": 1.0}
    found = capacity(lambda r: Met(), saturated_rate=5.0)
    assert found.at_top and found.rate == pytest.approx(10.0, rel=1 / 2 ** 7)


def test_a_concurrency_sweep_trades_interactivity_for_throughput():
    points = sweep(lambda c: serve(MODEL, GPU, isl=512, osl=64, concurrency=c, num_requests=64), [1, 4, 16])
    rows = [p.row() for p in points]
    assert [p.load for p in points] == [1, 4, 16]
    per_gpu = [r["throughput_tokens_per_s_per_gpu"] for r in rows]
    per_user = [r["tokens_per_s_per_user"] for r in rows]
    assert per_gpu[0] < per_gpu[1] < per_gpu[2]          # batching raises throughput ...
    assert per_user[0] >= per_user[1] >= per_user[2]      # ... and slows each user's stream
    for r, p in zip(rows, points, strict=True):
        assert r["tokens_per_s_per_user"] == pytest.approx(1.0 / p.result.summary["tpot_s"])


def test_saturated_rate_is_the_saturated_window_over_the_output_per_request():
    s = serve(MODEL, GPU, isl=512, osl=64, concurrency=32, num_requests=200).summary
    assert saturated_rate(s) == pytest.approx(s["saturated_tokens_per_s"] / 64)
    assert saturated_rate(s) >= s["requests_per_s"]          # the fill and drain tails dilute the whole run's rate
    # every request in one batch: no window between the first completion and the last first token
    once = serve(MODEL, GPU, isl=512, osl=64, concurrency=200, num_requests=200).summary
    assert saturated_rate(once) == once["requests_per_s"]


def test_capacity_meets_the_goal_and_tighter_slos_lower_it():
    def run(slo_tpot):
        return lambda r: serve(MODEL, GPU, isl=512, osl=64, rate=r, num_requests=300, slo_tpot=slo_tpot)
    saturated = serve(MODEL, GPU, isl=512, osl=64, concurrency=300, num_requests=300).summary["requests_per_s"]
    loose, tight = capacity(run(0.02), saturated), capacity(run(0.009), saturated)
    for found in (loose, tight):
        assert not found.at_top and found.result is not None and found.result.summary["slo_attainment"] >= 0.9
        assert 0 < found.rate < 2 * saturated
    assert tight.rate < loose.rate
    # just above the search's resolution the goal is missed
    above = run(0.009)(tight.rate + 2 * saturated / 2 ** 8)
    assert above.summary["slo_attainment"] < 0.9


def test_cli_sweep_json_table_chart_and_requests(tmp_path, capsys):
    base = ["serve", "-m", MODEL, "-H", GPU, "--isl", "512", "--osl", "64", "--num-requests", "40"]
    code, out, _ = run_main(base + ["--concurrency", "2,8", "--json"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc["load"] == "concurrency" and [p["concurrency"] for p in doc["points"]] == [2, 8]
    for p in doc["points"]:
        for key in ("ttft_s", "tpot_s", "ttft_p99_s", "throughput_tokens_per_s", "energy_per_token_j"):
            assert key in p
    chart, csv = tmp_path / "curve.png", tmp_path / "requests.csv"
    code, out, _ = run_main(base + ["--rate", "1,3", "--out", str(chart), "--requests-csv", str(csv)], capsys)
    assert code == 0 and "rate sweep" in out and chart.stat().st_size > 0
    lines = csv.read_text().splitlines()
    assert lines[0].endswith(",rate") and len(lines) == 1 + 2 * 40


def test_a_sweep_with_slos_names_its_best_load(capsys):
    base = ["serve", "-m", MODEL, "-H", GPU, "--isl", "512", "--osl", "64", "--num-requests", "60",
            "--concurrency", "1,8,32", "--json"]
    code, out, _ = run_main([*base, "--slo-tpot", "1.0"], capsys)        # every load meets a 1 s TPOT
    doc = json.loads(out)
    per_gpu = {p["concurrency"]: p["throughput_tokens_per_s_per_gpu"] for p in doc["points"]}
    assert code == 0 and doc["slo_attainment_goal"] == 0.9 and doc["best_load_within_slo"] == max(per_gpu,
                                                                                                   key=per_gpu.get)
    code, out, _ = run_main([*base, "--slo-tpot", "1e-6"], capsys)       # none does
    assert code == 0 and json.loads(out)["best_load_within_slo"] is None
    code, out, _ = run_main(base[:-1], capsys)                           # no SLO: no best load claimed
    assert code == 0 and "best within" not in out


def test_cli_single_load_keeps_the_plain_json_contract(capsys):
    code, out, _ = run_main(["serve", "-m", MODEL, "-H", GPU, "--concurrency", "4", "--num-requests", "16",
                             "--json"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert "points" not in doc and doc["ttft_s"] > 0 and doc["num_requests"] == 16


def test_cli_capacity(capsys):
    code, out, _ = run_main(["serve", "-m", MODEL, "-H", GPU, "--isl", "512", "--osl", "64", "--num-requests",
                             "200", "--rate", "max", "--slo-tpot", "0.02", "--slo-attainment", "0.95", "--json"],
                            capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc["slo_attainment_goal"] == 0.95 and 0 < doc["capacity_requests_per_s"] < doc["search_top_requests_per_s"]
    assert doc["at_capacity"]["slo_attainment"] >= 0.95


@pytest.mark.parametrize("args, flag", [
    (["--concurrency", "4", "--rate", "2"], "concurrency"),
    (["--rate", "max"], "rate"),
    (["--rate", "2", "--slo-attainment", "0.5"], "slo-attainment"),
    (["--rate", "1,2", "--slo-attainment", "0.5"], "slo-attainment"),               # no SLO to attain
    (["--rate", "1,2", "--slo-ttft", "1", "--slo-attainment", "2", "--out", "{tmp}/c.png"], "slo-attainment"),
    (["--rate", "max", "--slo-ttft", "1", "--slo-attainment", "1.5"], "slo-attainment"),
    (["--concurrency", "4", "--out", "{tmp}/one.png"], "out"),
    (["--concurrency", "4,0", "--out", "{tmp}/bad.png"], "concurrency"),
    (["--concurrency", "4,8", "--out", "{tmp}/chart.txt"], "out"),
])
def test_cli_sweep_bad_input_exits_2_and_writes_nothing(args, flag, tmp_path, capsys):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, out, err = run_main(["serve", "-m", MODEL, "-H", GPU, "--num-requests", "20", *args], capsys)
    assert code == 2 and out == ""
    assert err.strip().startswith(f"error: {flag}:") and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
