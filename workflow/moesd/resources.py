"""What each measuring job asks a cluster for, derived from the experiment's config.

The Snakefile's GPU rules take their `resources` from job_resources(config, stage, slice,
platform): GPUs, host memory, CPUs, a time limit and the platform's Slurm settings, so that
`--executor slurm` requests what each job (one slice of a stage, moesd.config.slices, on one
platform) needs and a run of config/paper.yaml does not go out with a laptop's defaults. A
platform's `slurm` section names its partition, account, GPU model and constraint; unset ones,
and the account, are the user's profile's; a profile's `set-resources` still overrides any.

- gpu: our engine runs on one device; a vLLM job takes the tensor-parallel size of its pair on
  its platform (the platform's GPUs unless the pair sets its own); 0 where the experiment runs
  on the CPU.
- cpus_per_task: CPUS_PER_GPU per GPU (tokenisation, the engine's host thread, vLLM's workers),
  or on the CPU a timed job's platform threads and any other job's stage threads (stage_threads:
  the config's acceptance.threads, latency.threads or models.threads, which the rules' `threads:`
  read too).
- slurm_partition, slurm_account, gpu_model, constraint: the job's platform's (platform_resources).
- cpu_timing: 1 for a job that times work on CPU cores (TIMED_STAGES on a CPU experiment): the
  workflow profile allows one at a time (`resources: [cpu_timing=1]`), so two timed jobs never
  share the cores and time each other.
- mem_mb: host memory, HOST_BASE_MB plus the largest checkpoint the job loads at its dtype's
  bytes (its shards pass through host memory; its size from its architecture's parameter count,
  data/architectures; an unknown hub repository counts as UNKNOWN_MODEL_GB). On a GPU, arch:
  models are initialised on the device and take no host memory; on the CPU every model lives
  there, and our engine keeps a packed copy of its weights beside them (PACKED_COPIES,
  moesd.models.linear).
  On the CPU the job's working memory comes on top (moesd.config.memory.working_gb): the KV cache, logits and
  activations of its largest batch. A local run whose job would need more than this machine's
  memory stops at plan time with the estimate (check_host_memory).
- runtime (minutes): model loads plus the sweep's forwards at SECONDS_PER_FORWARD, doubled, and
  within [MIN_RUNTIME, MAX_RUNTIME] (24 h, a common partition limit): an estimate from the grid's
  size, not a measurement. A job that runs out of time keeps its stored points, and the next
  invocation resumes from them.

Nothing here imports torch: the Snakefile's parse calls it.
"""

from __future__ import annotations

import math

from moesd.config.memory import working_gb
from moesd.models.spec import parse_spec

CPUS_PER_GPU = 8
HOST_BASE_MB = {"cuda": 16_000, "cpu": 2_000}  # the Python process, torch, CUDA context, tokenizers
UNKNOWN_MODEL_GB = 30.0
SECONDS_PER_FORWARD = {"cuda": 0.15, "cpu": 0.05}  # one forward of a 57B MoE at B <= 100 on one H200; a tiny CPU model
LOAD_MINUTES_PER_100GB = 10.0  # from the cluster's file system into the device
VLLM_CPU_MB = 3_000  # vLLM's CPU workers and their KV cache (VLLM_CPU_KVCACHE_SPACE, 1 GiB here)
MIN_RUNTIME, MAX_RUNTIME = 30, 24 * 60
SAFETY = 2.0
PACKED_COPIES = 2  # on the CPU our engine holds each weight and its copy packed for oneDNN (moesd.models.linear)
GPU_STAGES = ("acceptance", "acceptance_vllm", "routing", "latency", "e2e_vllm", "environment")
TIMED_STAGES = ("latency", "e2e_vllm", "environment", "engine_check")  # they hold moesd.timing's CPU lock
# the config section whose `threads` each job's stage runs with (timed work: the latency stage's)
THREADS_FROM = {"acceptance": "acceptance", "acceptance_vllm": "acceptance", "routing": "acceptance",
                "latency": "latency", "e2e_vllm": "latency", "environment": "latency", "engine_check": "latency",
                "models": "models"}  # fmt: skip


def stage_threads(config: dict, stage: str) -> int:
    """The CPU threads STAGE's job runs with (its rule's `threads:`), from the config."""
    return config[THREADS_FROM[stage]]["threads"]


def timing_resources(config: dict, stage: str) -> dict:
    """{"cpu_timing": 1} for a job that times on CPU cores, {} otherwise (a GPU job's device is its own)."""
    return {"cpu_timing": 1} if stage in TIMED_STAGES and config["latency"]["device"] != "cuda" else {}


def model_gb(spec_text: str, bytes_per_param: int = 2) -> float:
    """The weights of SPEC_TEXT in GB at BYTES_PER_PARAM, from its architecture's parameter count
    (ModelSpec.weights_gb); UNKNOWN_MODEL_GB where unknown."""
    from moesd.models.spec import ModelSpecError

    try:
        size = parse_spec(spec_text).weights_gb(bytes_per_param)
    except ModelSpecError:
        size = None
    return UNKNOWN_MODEL_GB if size is None else size


def estimate_known(config: dict, stage: str, slice_id: str | None = None) -> bool:
    """Whether the memory estimate of STAGE's job (of SLICE_ID) rests on sizes known from the
    architectures: a hub repository moesd does not know counts as UNKNOWN_MODEL_GB, a guess that
    no plan should be stopped by."""
    from moesd.config import narrowed
    from moesd.models.spec import ModelSpecError

    if slice_id is not None:
        config, _ = narrowed(config, stage, slice_id)
    for spec in _models(config, stage)[0]:
        if spec.startswith("trained:"):
            continue
        try:
            if parse_spec(spec).weights_gb() is None:
                return False
        except ModelSpecError:
            return False
    return True


def host_memory_mb() -> int:
    """This machine's physical memory in MB."""
    import os

    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e6)


def check_host_memory(jobs: dict[str, dict], available_mb: int | None = None) -> None:
    """A local run's jobs (name -> job_resources) against this machine's memory: the first that
    cannot fit stops the plan in one line with its estimate (a cluster job asks its node instead)."""
    available_mb = host_memory_mb() if available_mb is None else available_mb
    for name, resources in jobs.items():
        if resources.get("mem_mb", 0) > available_mb:
            raise ValueError(
                f"{name}: estimated to need {resources['mem_mb'] / 1000:.1f} GB of host memory (weights and its "
                f"largest batch's KV cache, logits and activations), this machine has {available_mb / 1000:.1f} GB: "
                "lower its batch sizes or context, or run it on a cluster platform"
            )


def _pair(config: dict, name: str) -> dict:
    return next(p for p in config["pairs"] if p["name"] == name)


def _largest_tp(config: dict, pairs: list[dict]) -> int:
    """The largest tensor-parallel size of PAIRS on the config's platforms (moesd.config.platforms)."""
    from moesd.config.platforms import vllm_tensor_parallel

    return max([vllm_tensor_parallel(p, where) for p in pairs for where in config["platforms"]], default=1)


def _models(config: dict, stage: str) -> tuple[list[str], int]:
    """The specs a stage's job loads and its tensor-parallel size."""
    if stage in ("acceptance", "acceptance_vllm"):
        pairs = config["pairs"]
        if stage == "acceptance":
            pairs = [p for p in pairs if p["speculative_method"] == "draft_model"]
        specs = [p[role] for p in pairs for role in ("target", "draft")]
        return specs, _largest_tp(config, pairs) if stage == "acceptance_vllm" else 1
    if stage == "routing":
        return [p["target"] for p in config["pairs"]] + list(config["routing"]["hf_models"]), 1
    if stage == "latency":
        e2e = config["latency"]["e2e"]
        decoded = [e for e in e2e["pairs"] if e.get("target")] if "ours" in e2e["backends"] else []
        decoded += [_pair(config, e["pair"]) for e in e2e["pairs"] if e.get("pair") and "ours" in e2e["backends"]]
        return [m["spec"] for m in config["latency"]["models"]] + [
            e[r] for e in decoded for r in ("target", "draft")
        ], 1
    if stage == "e2e_vllm":
        pairs = [_pair(config, e["pair"]) for e in config["latency"]["e2e"]["pairs"] if e["acceptance"] == "real"]
        specs = [p[role] for p in pairs for role in ("target", "draft")]
        return specs, _largest_tp(config, pairs)
    return [], 1


def _forwards(config: dict, stage: str) -> int:
    """Forwards the stage's job runs: its grid's points times the calls per point (an estimate)."""
    lat, acc = config["latency"], config["acceptance"]
    if stage == "latency":
        calls = lat["warmup"] + lat["repeats"]
        points = 0
        for model in lat["models"]:
            ks = len(model.get("k_values") or [None])
            batches = len(model.get("batch_sizes") or lat["batch_sizes"])
            tokens = len(model.get("tokens") or range(lat["gamma_max"] + 1))
            points += ks * batches * (tokens if model["role"] == "target" else 1)
        points += len(lat["batch_sizes"]) * len(lat["reject_temperatures"])
        return points * calls + _e2e_forwards(config, "ours")
    if stage == "e2e_vllm":
        return _e2e_forwards(config, "vllm")
    if stage in ("acceptance", "acceptance_vllm"):
        prompts = acc["max_prompts"] or 250  # HumanEval 164, MT-bench 80
        batches = len(acc["datasets"]) * math.ceil(prompts / acc["batch_size"])
        # per gamma: rounds of gamma draft forwards and one target forward, each round keeping
        # (gamma + 1) / 2 tokens (acceptance halfway between none and all)
        rounds = sum(math.ceil(2 * acc["max_new_tokens"] / (g + 1)) * (g + 1) for g in acc["gammas"])
        pairs = len(_models(config, stage)[0]) // 2
        return pairs * batches * len(acc["temperatures"]) * rounds
    if stage == "routing":
        routing = config["routing"]
        grid = len(routing["batch_sizes"]) * len(routing["sequence_tokens"]) * (len(routing["datasets"]) + 1)
        return grid * len(_models(config, stage)[0])
    return 100  # the hardware probe


def _engines_per_pair(config: dict, stage: str) -> int:
    """How often a vLLM job builds an engine per pair (one per gamma, or per K and mode); our
    engine loads each model once."""
    if stage == "acceptance_vllm":
        return len(config["acceptance"]["gammas"])
    if stage == "e2e_vllm":
        entries = [e for e in config["latency"]["e2e"]["pairs"] if e["acceptance"] == "real"]
        return 2 * max((len(e.get("k_values") or [None]) for e in entries), default=1)
    return 1


def _e2e_forwards(config: dict, backend: str) -> int:
    e2e = config["latency"]["e2e"]
    if backend not in e2e["backends"]:
        return 0
    entries = sum(len(e.get("k_values") or [None]) for e in e2e["pairs"])
    # a point decodes its `sequences` prompts B at a time: max_new_tokens forwards per batch (AR's;
    # SD's are fewer target forwards and more draft ones)
    per_grid = sum(e2e["max_new_tokens"] * math.ceil(e2e["sequences"] / b) for b in e2e["batch_sizes"])
    runs = e2e["warmup"] + e2e["repeats"]
    return entries * len(e2e["temperatures"]) * 2 * runs * per_grid


def platform_resources(platform: dict | None) -> dict:
    """Where PLATFORM's jobs run on a Slurm cluster (its `slurm` section: the executor plugin's
    slurm_partition, slurm_account, gpu_model, constraint and mem_mb), the unset ones left to the
    profile (mem_mb: to moesd's estimate)."""
    names = {
        "partition": "slurm_partition",
        "account": "slurm_account",
        "gpu_model": "gpu_model",
        "constraint": "constraint",
        "mem_mb": "mem_mb",  # the platform's own memory request replaces the estimate
    }
    slurm = (platform or {}).get("slurm") or {}
    return {names[key]: value for key, value in slurm.items() if value is not None}


def job_resources(config: dict, stage: str, slice_id: str | None = None, platform: str | None = None) -> dict:
    """Slurm resources of STAGE's job (one of GPU_STAGES) for CONFIG (validated); for the latency
    stage, of its slice SLICE_ID (one job per slice, on the slice's platform), or of the whole
    stage as one job; a job on PLATFORM (a name in platforms) asks for that platform's partition,
    GPU model and threads."""
    from moesd.config import narrowed
    from moesd.config.platforms import platform_of

    if stage not in GPU_STAGES:
        raise ValueError(f"no resources for stage {stage!r} (known: {', '.join(GPU_STAGES)})")
    device = "cuda" if config["latency"]["device"] == "cuda" else "cpu"
    if slice_id is not None:  # the job of one slice: its platform, what it loads
        config, part = narrowed(config, stage, slice_id)
        platform = part["platform"]
    specs, tp = _models(config, stage)
    where = platform_of(config, platform) if platform is not None else None
    via_vllm = stage.endswith("_vllm")
    gpus = tp if device == "cuda" else 0
    per_param = 4 if config["latency"]["dtype"] == "float32" or device == "cpu" else 2
    on_host = [s for s in specs if device == "cpu" or not s.startswith("arch:")]
    largest = max((model_gb(s, per_param) for s in on_host if not s.startswith("trained:")), default=1.0)
    loads = len(specs) * _engines_per_pair(config, stage)
    minutes = (
        loads * LOAD_MINUTES_PER_100GB * largest / 100 + _forwards(config, stage) * SECONDS_PER_FORWARD[device] / 60
    )
    working = working_gb(config, stage, specs, per_param) if device == "cpu" else 0.0
    copies = PACKED_COPIES if device == "cpu" and not via_vllm else 1
    timed = where is not None and stage in TIMED_STAGES  # a timed job runs with its platform's threads
    threads = where["threads"] if timed else stage_threads(config, stage)
    return (
        {
            "gpu": gpus,
            "cpus_per_task": CPUS_PER_GPU * gpus if gpus else threads,
            "mem_mb": int(
                HOST_BASE_MB[device]
                + math.ceil((largest * copies + working) * 1000)
                + VLLM_CPU_MB * (via_vllm and device == "cpu")
            ),
            "runtime": int(min(MAX_RUNTIME, max(MIN_RUNTIME, math.ceil(SAFETY * minutes)))),
        }
        | timing_resources(config, stage)
        | platform_resources(where)
    )
