"""vLLM as a second measuring backend (the paper's engine): decoding, acceptance counters and
end-to-end wall times of a prompt set, with tensor parallelism and draft-model or EAGLE
speculation.

vLLM pins its own torch and transformers, so it lives in its own environment
(`bash workflow/scripts/setup_vllm.sh`, `.venv-vllm` at the repository root); this module finds
its Python (MOESD_VLLM_PYTHON, else that default), checks the request cheaply here (folders,
architectures, vocabularies, devices: one-line errors before any model loads) and runs
`vllm_worker.py` there as a subprocess.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from moesd.architectures import split_problem
from moesd.paths import REPO_ROOT

PYTHON_SETTING = "MOESD_VLLM_PYTHON"
DEFAULT_PYTHON = REPO_ROOT / ".venv-vllm" / "bin" / "python"
SETUP_COMMAND = "bash workflow/scripts/setup_vllm.sh"
WORKER = Path(__file__).with_name("vllm_worker.py")
METHODS = ("draft_model", "eagle")
DRAFT_SAMPLING = ("probabilistic", "greedy")  # vLLM's draft_sample_method
# model_type values whose vLLM implementation this project has run (tests/test_vllm.py)
ARCHITECTURES = ("qwen2", "qwen2_moe", "mixtral", "opt", "llama", "mistral", "qwen3", "qwen3_moe", "olmoe")
# vLLM 0.32's CPU attention has no kernel below this head size (8 and 16 fail, 32, 48, 64 run)
CPU_MIN_HEAD_SIZE = 32
THREAD_SETTINGS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


class VllmError(ValueError):
    """A request vLLM cannot serve, or a missing vLLM environment."""


class VllmFailure(RuntimeError):
    """vLLM itself failed (the worker's root error in one line): a measured point records it."""


def vllm_python() -> Path:
    """The vLLM environment's Python: MOESD_VLLM_PYTHON, else .venv-vllm at the repository root."""
    path = Path(os.environ.get(PYTHON_SETTING) or DEFAULT_PYTHON)
    if not path.is_file():
        raise VllmError(
            f"no vLLM environment: {path} does not exist (set it up with `{SETUP_COMMAND}`, or set {PYTHON_SETTING})"
        )
    return path


@dataclass
class VllmRequest:
    target: Path  # folders of Hugging Face checkpoints
    prompts: list[list[int]]
    draft: Path | None = None
    mode: str = "ar"
    method: str = "draft_model"
    draft_sampling: str = "probabilistic"  # or greedy (vLLM V1's default; see vllm_worker)
    gamma: int = 4
    tensor_parallel_size: int = 1
    dtype: str = "float32"
    temperature: float = 0.0
    max_new_tokens: int = 64
    ignore_eos: bool = True
    seed: int = 0
    batch_size: int = 8
    device: str = "cpu"
    warmup: int = 0
    repeats: int = 1
    hf_overrides: dict = field(default_factory=dict)
    enforce_eager: bool = False  # no CUDA graphs / torch.compile (config vllm.enforce_eager)
    in_process: bool = False  # the engine core (and a TP 1 worker) in the calling process (config vllm.in_process)
    gpu_memory_utilization: float | None = None  # default: 0.9 on a GPU, a small share of RAM on a CPU


def hf_config(folder: Path, role: str) -> dict:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise VllmError(f"{role} {folder}: no config.json (vLLM loads a Hugging Face checkpoint folder)")
    return json.loads(path.read_text())


def device_count(device: str) -> int:
    """Tensor-parallel ranks the device can give: GPUs on cuda, cores on a CPU (a rank a core)."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.device_count()
    return len(os.sched_getaffinity(0))


def check(request: VllmRequest) -> None:
    """Everything that can be checked without vLLM: one line naming the option and the reason."""
    if request.mode not in ("ar", "sd"):
        raise VllmError(f"--mode must be ar or sd, got {request.mode!r}")
    if request.mode == "sd" and request.draft is None:
        raise VllmError("--mode sd needs --draft (a draft model or an EAGLE head)")
    if request.draft_sampling not in DRAFT_SAMPLING:
        raise VllmError(f"--draft-sampling must be one of {', '.join(DRAFT_SAMPLING)}, got {request.draft_sampling!r}")
    if request.method not in METHODS:
        raise VllmError(f"--speculative-method must be one of {', '.join(METHODS)}, got {request.method!r}")
    for name in ("gamma", "tensor_parallel_size", "batch_size", "max_new_tokens", "repeats"):
        if getattr(request, name) < 1:
            raise VllmError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(request, name)}")
    if not request.prompts:
        raise VllmError("no prompts")
    target = hf_config(request.target, "--target")
    if target.get("model_type") not in ARCHITECTURES:
        raise VllmError(
            f"--target {request.target}: architecture {target.get('model_type')!r} is not one the vLLM backend "
            f"supports ({', '.join(ARCHITECTURES)})"
        )
    if request.mode == "sd":
        draft = hf_config(request.draft, "--draft")
        if request.method == "draft_model" and draft.get("vocab_size") != target.get("vocab_size"):
            raise VllmError(
                f"--draft {request.draft}: vocabulary {draft.get('vocab_size')} differs from the target's "
                f"{target.get('vocab_size')} (a draft model proposes the target's token ids)"
            )
    configs = [("--target", target)] + ([("--draft", draft)] if request.mode == "sd" else [])
    if not request.device.startswith("cuda"):
        for role, config in configs:
            size = head_size(config)
            if size is not None and size < CPU_MIN_HEAD_SIZE:
                raise VllmError(
                    f"{role}: head size {size}; vLLM's CPU attention needs at least {CPU_MIN_HEAD_SIZE} "
                    "(fewer heads for the width)"
                )
    available = device_count(request.device)
    if request.tensor_parallel_size > available:
        what = "GPUs" if request.device.startswith("cuda") else "CPU cores"
        raise VllmError(f"--tensor-parallel-size {request.tensor_parallel_size}: this machine gives {available} {what}")
    for role, config in configs:  # the draft (or EAGLE head) runs over the target's ranks (docs/vllm.md)
        split = split_problem(config, request.tensor_parallel_size)
        if split:
            raise VllmError(f"{role}: {split} (vLLM runs a draft on the target's tensor-parallel ranks)")
    vocab = target.get("vocab_size", 0)
    bad = [i for i, ids in enumerate(request.prompts) if not ids or max(ids) >= vocab or min(ids) < 0]
    if bad:
        raise VllmError(f"prompt {bad[0]}: empty or token ids outside the target's vocabulary {vocab}")


def head_size(config: dict) -> int | None:
    """Attention head size of a Hugging Face config (head_dim, else width over heads)."""
    if config.get("head_dim"):
        return int(config["head_dim"])
    width, heads = config.get("hidden_size"), config.get("num_attention_heads")
    return width // heads if width and heads else None


def _environment(request: VllmRequest) -> dict:
    env = dict(os.environ)
    if not request.device.startswith("cuda"):
        cores = sorted(os.sched_getaffinity(0))
        per_rank = max(1, len(cores) // request.tensor_parallel_size)
        ranks = [cores[i * per_rank : (i + 1) * per_rank] for i in range(request.tensor_parallel_size)]
        env["VLLM_CPU_OMP_THREADS_BIND"] = "|".join(  # one core range per rank: "0-1", or "0|1" at TP 2
            f"{rank[0]}-{rank[-1]}" if len(rank) > 1 else str(rank[0]) for rank in ranks
        )
        # a rank's math libraries take as many threads as it has cores: Snakemake sets these to the
        # job's threads, and two MKL threads spinning on a rank's one core made every decode step
        # 20-30x slower (found by the rehearsal: docs/benchmarks.md)
        env.update({name: str(per_rank) for name in THREAD_SETTINGS})
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache: tiny models, small machines
        env["CUDA_VISIBLE_DEVICES"] = ""
    if request.in_process:  # one import of vLLM instead of one per process (engine core, worker)
        env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    return env


@dataclass
class VllmResult:
    outputs: list[list[int]]
    seconds: list[float]
    metrics: dict
    prefill_seconds: list[float] = field(default_factory=list)  # passes with prefill: one per timed repeat
    peak_running: int | None = None  # passes with slots: the most sequences decoded at once

    def acceptance(self) -> dict:
        """vLLM's speculative-decoding counters as the acceptance tables' quantities: drafts,
        drafted and accepted tokens, accepted per position (non-increasing), the per-token
        acceptance rate alpha = accepted / drafted and sigma = tokens per round / (gamma + 1)."""
        m = self.metrics
        drafts = m.get("vllm:spec_decode_num_drafts", 0)
        drafted = m.get("vllm:spec_decode_num_draft_tokens", 0)
        accepted = m.get("vllm:spec_decode_num_accepted_tokens", 0)
        per_position = m.get("vllm:spec_decode_num_accepted_tokens_per_pos", [])
        gamma = len(per_position)
        return {
            "rounds": drafts,
            "drafted": drafted,
            "accepted": accepted,
            "accepted_per_position": per_position,
            "alpha": accepted / drafted if drafted else float("nan"),
            "sigma": (accepted + drafts) / (drafts * (gamma + 1)) if drafts and gamma else float("nan"),
        }


def _cause(log: str) -> str:
    """The root error of a failed worker: the first "...Error: ..." line of its log outside
    vLLM's warnings (its engine re-raises the root error in several processes, and wraps it in
    an EngineDeadError last), else the last line. For pydantic's ValidationError (vLLM checks its
    configs with pydantic), the first error's detail line, not its header ("1 validation error
    for SpeculativeConfig")."""
    lines = log.splitlines()
    found = [
        (i, match)
        for i, line in enumerate(lines)
        if " WARNING " not in line and "Traceback" not in line
        for match in [re.search(r"\b(\w+(Error|Exception)): (.*)", line)]
        if match
    ]
    roots = [(i, m) for i, m in found if m.group(1) != "EngineDeadError"] or found
    if not roots:
        stripped = log.strip().splitlines()
        return stripped[-1] if stripped else "no output"
    i, match = roots[0]
    name, text = match.group(1), match.group(3).strip()
    header = re.fullmatch(r"\d+ validation errors? for (\w+)", text)
    if name == "ValidationError" and header:
        details = [x.strip() for x in lines[i + 1 : i + 6] if x.startswith("  ") and x.strip()]
        detail = next((x for x in details if "[type=" in x or x.startswith("Value error")), None)
        if detail:
            return f"ValidationError: {header.group(1)}: {detail.split(' [type=')[0].removeprefix('Value error, ')}"
    return f"{name}: {text}"


def _keep_log(text: str) -> Path:
    """The failed worker's whole output, kept where its job's log is (MOESD_WORKER_LOGS, which
    the workflow's vLLM rules set to their log folder) or in the temporary folder."""
    folder = Path(os.environ.get("MOESD_WORKER_LOGS") or tempfile.gettempdir())
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"vllm-worker-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.log"
    path.write_text(text)
    return path


def _run_group(command: list[str], env: dict, cwd: str, timeout: float | None) -> subprocess.CompletedProcess:
    """COMMAND in a process group of its own, which is killed whole when the command ends, times
    out or this process is interrupted: vLLM's engine core and tensor-parallel workers outlive a
    killed parent otherwise and keep spinning on the cores (found by the rehearsal)."""
    import signal
    import threading

    process = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )

    def stop(signum, frame):  # a SIGTERM (Slurm, Snakemake) ends this process through the cleanup below
        raise SystemExit(128 + signum)

    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, stop) if main else None
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
    try:  # what the worker left behind after a clean exit, too
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def run(request: VllmRequest, timeout: float | None = None) -> VllmResult:
    """Decode REQUEST's prompts with vLLM in its environment; checks first, then one subprocess."""
    return run_passes(request, [], timeout)[0]


def run_passes(request: VllmRequest, passes: list[dict], timeout: float | None = None) -> list[VllmResult]:
    """REQUEST's engine decoding each of PASSES ({prompts, temperature, seed, max_new_tokens}) in
    turn, one engine start for all (REQUEST's own prompts and sampling when PASSES is empty);
    every pass's prompts are checked before the engine starts."""
    for spec in passes:
        check(dataclasses.replace(request, prompts=spec["prompts"], max_new_tokens=spec["max_new_tokens"]))
    check(request)
    python = vllm_python()
    target = hf_config(request.target, "--target")
    prompts = [ids for spec in passes for ids in spec["prompts"]] or request.prompts
    new_tokens = max([spec["max_new_tokens"] for spec in passes] or [request.max_new_tokens])
    longest = max(len(ids) for ids in prompts) + new_tokens + request.gamma + 1
    limit = target.get("max_position_embeddings") or longest
    if longest > limit:
        raise VllmError(f"prompt plus new tokens reach {longest} positions, beyond the target's {limit}")
    utilization = request.gpu_memory_utilization or (0.9 if request.device.startswith("cuda") else 0.1)
    payload = {
        "target": str(Path(request.target).resolve()),  # the worker runs in a scratch folder
        "draft": str(Path(request.draft).resolve()) if request.draft else None,
        "method": request.method,
        "draft_sampling": request.draft_sampling,
        "gamma": request.gamma,
        "mode": request.mode,
        "tensor_parallel_size": request.tensor_parallel_size,
        "dtype": request.dtype,
        "temperature": request.temperature,
        "max_new_tokens": request.max_new_tokens,
        "ignore_eos": request.ignore_eos,
        "seed": request.seed,
        "batch_size": request.batch_size,
        "prompts": request.prompts,
        "passes": passes,
        "max_model_len": min(limit, max(longest, 64)),
        "gpu_memory_utilization": utilization,
        "warmup": request.warmup,
        "repeats": request.repeats,
        "hf_overrides": request.hf_overrides,
        "enforce_eager": request.enforce_eager,
        "in_process": request.in_process,
    }
    with tempfile.TemporaryDirectory(prefix="moesd-vllm-") as folder:
        request_file, result_file = Path(folder) / "request.json", Path(folder) / "result.json"
        request_file.write_text(json.dumps(payload))
        env = _environment(request)
        env.setdefault("VLLM_RPC_BASE_PATH", folder)  # the engine's IPC sockets go with the scratch folder
        done = _run_group(
            # -P: not the worker's folder on sys.path, where this module would shadow vllm itself
            [str(python), "-P", str(WORKER), str(request_file), str(result_file)],
            env,
            folder,
            timeout,
        )
        if done.returncode != 0 or not result_file.is_file():
            log = done.stderr + done.stdout
            raise VllmFailure(f"vLLM worker failed (exit {done.returncode}; log {_keep_log(log)}): {_cause(log)}")
        result = json.loads(result_file.read_text())
    return [
        VllmResult(p["outputs"], p["seconds"], p["metrics"], p.get("prefill_seconds", []), p.get("peak_running"))
        for p in result["passes"]
    ]
