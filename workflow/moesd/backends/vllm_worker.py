"""Runs inside the vLLM environment (its own Python, torch and transformers; see
moesd.backends.vllm): decodes one request with vLLM's offline engine and writes the outputs and
vLLM's speculative-decoding counters as JSON. Standalone on purpose: it imports only the standard
library and vllm, never moesd, whose pins differ from vLLM's.

    python vllm_worker.py REQUEST.json RESULT.json

REQUEST: target, draft (or null), method (draft_model | eagle), draft_sampling (probabilistic:
drafts sampled from the draft's distribution and accepted with min(1, p/q), the standard rule of
Leviathan et al. that our engine and the paper's (V0) vLLM use; greedy: vLLM V1's default, the
draft's argmax accepted with probability p), gamma, mode (ar | sd),
tensor_parallel_size, dtype, temperature, max_new_tokens, ignore_eos, seed, batch_size (vLLM's
max_num_seqs: the continuous batch's slots), prompts (token-id lists), max_model_len,
gpu_memory_utilization, repeats, warmup; optionally passes, a list of {prompts, temperature,
seed, max_new_tokens} decoded one after another by the same engine (one engine start for
several datasets and temperatures), each optionally with slots (at most that many sequences
decode at once: the pass's batch size B, under an engine built for batch_size >= B; vLLM refills a
finished slot from the waiting prompts) and prefill (also time each repeat's prompts with one new
token: the prefill's share). RESULT: passes, each with outputs (token-id lists, in prompt order),
seconds (one wall time per timed repeat of its prompts), prefill_seconds (with prefill), peak_running
(the most sequences the scheduler ran at once) and metrics (the counters that pass added: name ->
value or list of values).
"""

from __future__ import annotations

import json
import os
import sys
import time

PLUGIN = "moesd_cpu_rejection"  # workflow/vllm_plugin: the rejection sampler on a build without Triton


def check_rejection_sampler() -> None:
    """Speculative decoding at T > 0 needs the rejection sampler's per-token temperatures, which
    vLLM's build without Triton (its CPU build) leaves uninitialised unless moesd's plugin is
    installed in this environment: stop in one line rather than measure a collapsed acceptance."""
    from importlib.metadata import entry_points

    from vllm.triton_utils import HAS_TRITON

    if not HAS_TRITON and not any(e.name == PLUGIN for e in entry_points(group="vllm.general_plugins")):
        raise RuntimeError(
            "this vLLM has no Triton (its CPU build) and lacks moesd's plugin, so sampled acceptance would "
            "collapse: rerun `bash workflow/scripts/setup_vllm.sh` (it installs workflow/vllm_plugin)"
        )


def engine(request: dict):
    from vllm import LLM

    kwargs = {
        "model": request["target"],
        "tensor_parallel_size": request["tensor_parallel_size"],
        "dtype": request["dtype"],
        "seed": request["seed"],
        "skip_tokenizer_init": True,
        "max_num_seqs": request["batch_size"],
        "max_model_len": request["max_model_len"],
        "gpu_memory_utilization": request["gpu_memory_utilization"],
        "disable_log_stats": False,
        "enable_prefix_caching": False,  # every repeat decodes its prompts afresh
        "enforce_eager": request.get("enforce_eager", False),
    }
    if request.get("hf_overrides"):
        kwargs["hf_overrides"] = request["hf_overrides"]
    if request.get("in_process") and request["tensor_parallel_size"] == 1:
        kwargs["distributed_executor_backend"] = "uni"  # the model in this process: no worker process
    if request["mode"] == "sd":
        check_rejection_sampler()
        kwargs["speculative_config"] = {
            "method": request["method"],
            "model": request["draft"],
            "num_speculative_tokens": request["gamma"],
            "draft_sample_method": request.get("draft_sampling", "probabilistic"),
            "rejection_sample_method": "standard",  # min(1, p/q) with the draft's probabilities kept
        }
    return LLM(**kwargs)


def metric_values(llm) -> dict:
    from vllm.v1.metrics.reader import Counter, Vector

    values = {}
    for metric in llm.get_metrics():
        if isinstance(metric, Counter):
            values[metric.name] = values.get(metric.name, 0) + metric.value
        elif isinstance(metric, Vector):
            old = values.get(metric.name, [0] * len(metric.values))
            values[metric.name] = [a + b for a, b in zip(old, metric.values, strict=False)]
    return values


def difference(after: dict, before: dict) -> dict:
    """The counters one pass added (vLLM's are cumulative over the engine's life)."""
    out = {}
    for name, value in after.items():
        old = before.get(name)
        if isinstance(value, list):
            old = old or [0] * len(value)
            out[name] = [a - b for a, b in zip(value, old, strict=False)]
        else:
            out[name] = value - (old or 0)
    return out


class Slots:
    """The scheduler's admission limit set per pass, and the most sequences it ran at once. Needs
    the engine core in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0, set by main)."""

    def __init__(self, llm):
        core = getattr(getattr(llm.llm_engine, "engine_core", None), "engine_core", None)
        self.scheduler = getattr(core, "scheduler", None)
        if self.scheduler is None or not hasattr(self.scheduler, "max_num_active_reqs"):
            raise RuntimeError("this vLLM has no in-process scheduler admission limit (max_num_active_reqs)")
        self.peak = 0
        schedule = self.scheduler.schedule

        def counted(*args, **kwargs):
            out = schedule(*args, **kwargs)
            self.peak = max(self.peak, len(self.scheduler.running))
            return out

        self.scheduler.schedule = counted

    def limit(self, n: int) -> None:
        self.scheduler.max_num_active_reqs = n
        self.peak = 0


def timed_generate(llm, prompts, params) -> tuple[list, float]:
    start = time.perf_counter()
    results = llm.generate(prompts, params, use_tqdm=False)
    return results, time.perf_counter() - start


def run_pass(llm, request: dict, spec: dict, slots: Slots | None) -> dict:
    """One pass: the prompts decoded warmup + repeats times (each timed repeat followed by its
    one-token prefill pass, when asked); the outputs and counters of the first."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    def params(max_tokens: int):
        return SamplingParams(
            temperature=spec["temperature"],
            max_tokens=max_tokens,
            ignore_eos=request["ignore_eos"],
            seed=spec["seed"],
            detokenize=False,
        )

    if slots is not None:
        slots.limit(spec.get("slots") or request["batch_size"])
    prompts = [TokensPrompt(prompt_token_ids=ids) for ids in spec["prompts"]]
    seconds, prefill, outputs, metrics = [], [], None, None
    for repeat in range(request.get("warmup", 0) + request.get("repeats", 1)):
        before = metric_values(llm)
        results, elapsed = timed_generate(llm, prompts, params(spec["max_new_tokens"]))
        if repeat == 0:  # the first pass over the prompts: outputs and acceptance counters
            outputs = [list(r.outputs[0].token_ids) for r in results]
            metrics = difference(metric_values(llm), before)
        if repeat >= request.get("warmup", 0):
            seconds.append(elapsed)
            if spec.get("prefill"):
                prefill.append(timed_generate(llm, prompts, params(1))[1])
    out = {"outputs": outputs, "seconds": seconds, "metrics": metrics}
    if spec.get("prefill"):
        out["prefill_seconds"] = prefill
    if slots is not None:
        out["peak_running"] = slots.peak
    return out


def main(request_path: str, result_path: str) -> None:
    with open(request_path) as handle:
        request = json.load(handle)
    passes = request.get("passes") or [
        {key: request[key] for key in ("prompts", "temperature", "seed", "max_new_tokens")}
    ]
    limited = any(spec.get("slots") for spec in passes)
    if limited:  # the scheduler in this process, so that each pass can set its admission limit
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    llm = engine(request)
    slots = Slots(llm) if limited else None
    result = {"passes": [run_pass(llm, request, spec, slots) for spec in passes]}
    tmp = result_path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(result, handle)
    os.replace(tmp, result_path)


if __name__ == "__main__":  # vLLM's engine spawns processes: the guard is required
    main(*sys.argv[1:3])
