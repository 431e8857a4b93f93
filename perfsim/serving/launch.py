"""How to run a simulated deployment: each engine instance's launch command, with the settings the simulation
assumed pinned as flags, so the real server batches as the simulated one did.

Flags, by engine (names as each engine's documentation gives them):
  vllm     `vllm serve` engine arguments (docs.vllm.ai, Engine Arguments): --tensor-parallel-size,
           --pipeline-parallel-size, --data-parallel-size with --enable-expert-parallel (attention data parallel,
           experts over every rank), --max-num-seqs and --max-num-batched-tokens per data-parallel rank,
           --kv-cache-dtype, --quantization fp8 (on-the-fly FP8 of a 16-bit checkpoint); disaggregated pools
           exchange the KV cache with --kv-transfer-config through the NixlConnector (NixlConnector Usage Guide).
  sglang   `python -m sglang.launch_server` server arguments (docs.sglang.io, Server Arguments): --tp counts every
           GPU of the server, --dp with --enable-dp-attention, --ep-size, --pp-size; --max-running-requests and
           --chunked-prefill-size count the whole server (DP attention divides both by --dp, ServerArgs);
           --kv-cache-dtype fp8_e4m3; --disaggregation-mode prefill|decode.
  trtllm   `trtllm-serve` options (TensorRT-LLM, trtllm-serve): --tp_size, --pp_size, --ep_size, --max_batch_size
           (per attention-DP rank), --max_num_tokens, and --extra_llm_api_options, a YAML file of LLM API
           arguments: enable_attention_dp, kv_cache_config.dtype, cache_transceiver_config (disaggregated).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from perfsim.dtypes import SIXTEEN_BIT
from perfsim.errors import InvalidInputError
from perfsim.model import ModelSpec, load_model
from perfsim.serving.scheduler import engine_batching, engine_kv_dtype

LAUNCH_ENGINES = ("vllm", "sglang", "trtllm")
CHECKPOINT_VAR = "CHECKPOINT"   # the shell variable a command reads when no released checkpoint fits


@dataclass
class Launch:
    """One kind of engine instance: `instances` copies of `command`, each on `gpus` GPUs of `hardware`."""
    role: str              # "replica" (aggregated), "prefill" or "decode"
    instances: int
    gpus: int
    hardware: str
    command: str
    config_file: str | None = None   # the file the command reads (TensorRT-LLM's LLM API options), and its text
    config: str | None = None
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Pool:
    role: str
    hardware: str
    gpus_total: int
    tp: int
    ep: int
    pp: int
    attn_dp: int
    max_num_seqs: int | None
    max_num_batched_tokens: int | None = None   # per attention-DP rank; None: the engine's default on the GPU


def _format(release: str) -> str:
    """A listed release's weights as a serving dtype family: 16-bit or fp8 (plain or block-scaled)."""
    return "16-bit" if release == "bf16" else "fp8"


def checkpoint_for(spec: ModelSpec, dtype: str, asked: str | None = None) -> tuple[str | None, bool]:
    """(Hugging Face repository id, whether the engine must quantize it to FP8 on the fly) for serving `spec` in
    `dtype`: the repository asked for when the spec lists it in that format, else a listed release in that format
    (an Instruct one first), else for FP8 a 16-bit release quantized on load; None when no listed release fits
    (NVFP4, or no repository listed)."""
    repos = dict(spec.hf_repos)
    want = "16-bit" if dtype in SIXTEEN_BIT else dtype
    ranked = sorted(repos, key=lambda r: (str(asked).lower() != r.lower(), "instruct" not in r.lower()))
    same = [r for r in ranked if _format(repos[r]) == want]
    if same:
        return same[0], False
    sixteen = [r for r in ranked if _format(repos[r]) == "16-bit"]
    if dtype == "fp8" and sixteen:
        return sixteen[0], True
    return None, False


def settings_of(config: dict) -> dict:
    """A simulated run's deployment (ServeResult.config, its pools as resolved) as launch_commands' settings."""
    pools = config["pools"]

    def layout(pool: dict) -> dict:
        return {k: pool[k] for k in ("hardware", "tp", "ep", "pp", "attn_dp", "max_num_seqs",
                                     "max_num_batched_tokens")}
    if len(pools) == 1:
        return {**layout(pools[0]), "num_gpus": pools[0]["gpus"]}
    pre, dec = pools
    return {**layout(pre), "num_gpus": pre["gpus"] + dec["gpus"], "disagg": f"{pre['gpus']}:{dec['gpus']}",
            "prefill": layout(pre), "decode": layout(dec)}


def _pools(settings: dict) -> list[_Pool]:
    """The engine pools of a deployment given as serve() keywords (a plan's settings)."""
    hardware = settings["hardware"]
    hardware = hardware if isinstance(hardware, str) else getattr(hardware, "name", str(hardware))
    base = {k: settings.get(k) or 1 for k in ("tp", "ep", "pp", "attn_dp")}
    if not settings.get("disagg"):
        return [_Pool("replica", hardware, int(settings["num_gpus"]), base["tp"], base["ep"], base["pp"],
                      base["attn_dp"], settings.get("max_num_seqs"), settings.get("max_num_batched_tokens"))]
    p_gpus, d_gpus = (int(x) for x in str(settings["disagg"]).split(":"))
    out = []
    for role, gpus in (("prefill", p_gpus), ("decode", d_gpus)):
        over = settings.get(role) or {}
        hw = over.get("hardware", hardware)
        hw = hw if isinstance(hw, str) else getattr(hw, "name", str(hw))
        lay = {k: over.get(k) or base[k] for k in base}
        out.append(_Pool(role, hw, gpus, lay["tp"], lay["ep"], lay["pp"], lay["attn_dp"], over.get("max_num_seqs"),
                         over.get("max_num_batched_tokens")))
    return out


@dataclass
class _Instance:
    """What one engine instance's command states: its checkpoint and pool, per-rank token budget, formats."""
    repo: str
    pool: _Pool
    budget: int
    kv_fp8: bool
    quantize: bool     # FP8 of a 16-bit release, quantized on load
    fp16: bool         # activations in FP16 rather than the release's BF16
    disagg: bool


def _vllm(x: _Instance) -> tuple[str, None]:
    p = x.pool
    args = ["vllm", "serve", x.repo, "--tensor-parallel-size", str(p.tp)]
    if p.pp > 1:
        args += ["--pipeline-parallel-size", str(p.pp)]
    if p.attn_dp > 1:
        args += ["--data-parallel-size", str(p.attn_dp)]
    if p.ep > 1:
        args += ["--enable-expert-parallel"]   # experts over all tp x dp GPUs of the instance
    if p.max_num_seqs:
        args += ["--max-num-seqs", str(p.max_num_seqs)]
    args += ["--max-num-batched-tokens", str(x.budget)]
    if x.fp16:
        args += ["--dtype", "float16"]
    if x.quantize:
        args += ["--quantization", "fp8"]
    if x.kv_fp8:
        args += ["--kv-cache-dtype", "fp8"]
    if x.disagg:
        args += ["--kv-transfer-config", "'" + json.dumps({"kv_connector": "NixlConnector", "kv_role": "kv_both"},
                                                         separators=(",", ":")) + "'"]
    return " ".join(args), None


def _sglang(x: _Instance) -> tuple[str, None]:
    p = x.pool
    args = ["python", "-m", "sglang.launch_server", "--model-path", x.repo, "--tp", str(p.tp * p.attn_dp)]
    if p.attn_dp > 1:
        args += ["--dp", str(p.attn_dp), "--enable-dp-attention"]
    if p.ep > 1:
        args += ["--ep-size", str(p.ep)]
    if p.pp > 1:
        args += ["--pp-size", str(p.pp)]
    if p.max_num_seqs:
        args += ["--max-running-requests", str(p.max_num_seqs * p.attn_dp)]
    args += ["--chunked-prefill-size", str(x.budget * p.attn_dp)]
    if x.fp16:
        args += ["--dtype", "float16"]
    if x.quantize:
        args += ["--quantization", "fp8"]
    if x.kv_fp8:
        args += ["--kv-cache-dtype", "fp8_e4m3"]
    if x.disagg:
        args += ["--disaggregation-mode", p.role]
    return " ".join(args), None


def _trtllm(x: _Instance) -> tuple[str, str | None]:
    p = x.pool
    args = ["trtllm-serve", x.repo, "--tp_size", str(p.tp * p.attn_dp)]
    if p.pp > 1:
        args += ["--pp_size", str(p.pp)]
    if p.ep > 1:
        args += ["--ep_size", str(p.ep)]
    if p.max_num_seqs:
        args += ["--max_batch_size", str(p.max_num_seqs)]
    args += ["--max_num_tokens", str(x.budget)]
    lines = []
    if x.fp16:
        lines.append("dtype: float16")
    if p.attn_dp > 1:
        lines.append("enable_attention_dp: true")
    if x.kv_fp8:
        lines += ["kv_cache_config:", "  dtype: fp8"]
    if x.disagg:
        lines += ["cache_transceiver_config:", "  backend: DEFAULT"]
    return " ".join(args), "\n".join(lines) + "\n" if lines else None


COMMANDS = {"vllm": _vllm, "sglang": _sglang, "trtllm": _trtllm}


def launch_commands(model: str | ModelSpec, settings: dict, engine: str = "vllm", dtype: str | None = None,
                    systems: dict | None = None) -> list[Launch]:
    """The launch commands of a deployment given as serve() keywords (hardware, num_gpus, tp, ep, pp, attn_dp,
    max_num_seqs, max_num_batched_tokens; disagg "P:D" with prefill / decode overrides; settings_of gives a
    simulated run's), as `engine` runs it in `dtype` (None: the checkpoint's). Without a token budget, the one the
    simulation used: the engine's default on the pool's GPU (`systems`: the systems by name, as simulated, e.g.
    after a what-if; else loaded by name)."""
    from perfsim.hardware import load_device
    name = (engine or "").lower()
    if name not in COMMANDS:
        raise InvalidInputError(f"engine: launch commands exist for {', '.join(LAUNCH_ENGINES)}; got {engine!r}")
    spec = load_model(model)
    run = spec.run_dtype("serve", dtype)
    repo, quantize = checkpoint_for(spec, run, model if isinstance(model, str) else None)
    notes = []
    if repo is None:
        what = "an NVFP4" if run == "fp4" else f"a {run.upper()}"
        notes.append(f"{CHECKPOINT_VAR}: {what} checkpoint of {spec.name} (no listed Hugging Face release is one)")
        repo = "$" + CHECKPOINT_VAR
    elif quantize and name == "trtllm":
        notes.append(f"{CHECKPOINT_VAR}: an FP8 export of {repo} (TensorRT Model Optimizer); TensorRT-LLM does not "
                     "quantize on load")
        repo, quantize = "$" + CHECKPOINT_VAR, False
    kv_fp8 = engine_kv_dtype(spec, run, name) == "fp8"
    pools = _pools(settings)
    disagg = len(pools) > 1
    out = []
    for pool in pools:
        system = (systems or {}).get(pool.hardware)
        device = load_device(pool.hardware) if system is None else getattr(system, "gpu", system)
        budget = pool.max_num_batched_tokens or engine_batching(name, device, pool.attn_dp)[1]
        per = pool.tp * pool.attn_dp * pool.pp
        if pool.gpus_total % per:
            raise InvalidInputError(f"num_gpus: {pool.gpus_total} GPUs of the {pool.role} pool are not a multiple of "
                                    f"one instance's {per}")
        command, config = COMMANDS[name](_Instance(repo, pool, budget, kv_fp8, quantize, run == "fp16", disagg))
        config_file = None
        if config:
            config_file = f"{pool.role}.yaml"
            command += f" --extra_llm_api_options {config_file}"
        pool_notes = list(notes)
        if name == "vllm" and pool.ep > 1 and pool.ep != pool.tp * pool.attn_dp:
            pool_notes.append(f"vLLM spreads the experts over all {pool.tp * pool.attn_dp} GPUs of an instance "
                              f"(the simulation: {pool.ep})")
        if disagg and pool.role == "prefill":
            pool_notes.append({"vllm": "route requests with a disaggregation proxy (NVIDIA Dynamo, llm-d or vLLM's "
                                       "disaggregated proxy example) in front of both pools",
                               "sglang": "route requests with the SGLang router in PD mode "
                                         "(sglang_router.launch_router --pd-disaggregation) in front of both pools",
                               "trtllm": "route requests with trtllm-serve disaggregated (its config lists the "
                                         "context and generation servers) or NVIDIA Dynamo"}[name])
        out.append(Launch(pool.role, pool.gpus_total // per, per, pool.hardware, command, config_file, config,
                          pool_notes))
    return out
