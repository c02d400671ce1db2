"""Runs inside the vLLM environment (its own Python, torch and transformers; see
moesd.backends.vllm): decodes one request with vLLM's offline engine and writes the outputs and
vLLM's speculative-decoding counters as JSON. Standalone on purpose: it imports only the standard
library and vllm, never moesd, whose pins differ from vLLM's.

    python vllm_worker.py REQUEST.json RESULT.json

REQUEST: target, draft (or null), method (draft_model | eagle), gamma, mode (ar | sd),
tensor_parallel_size, dtype, temperature, max_new_tokens, ignore_eos, seed, batch_size (vLLM's
max_num_seqs: the continuous batch's slots), prompts (token-id lists), max_model_len,
gpu_memory_utilization, repeats, warmup; optionally passes, a list of {prompts, temperature,
seed, max_new_tokens} decoded one after another by the same engine (one engine start for
several datasets and temperatures). RESULT: passes, each with outputs (token-id lists, in prompt
order), seconds (one wall time per timed repeat of its prompts) and metrics (the counters that
pass added: name -> value or list of values).
"""

from __future__ import annotations

import json
import os
import sys
import time


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
    }
    if request.get("hf_overrides"):
        kwargs["hf_overrides"] = request["hf_overrides"]
    if request["mode"] == "sd":
        kwargs["speculative_config"] = {
            "method": request["method"],
            "model": request["draft"],
            "num_speculative_tokens": request["gamma"],
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


def run_pass(llm, request: dict, spec: dict) -> dict:
    """One pass: the prompts decoded warmup + repeats times; the outputs and counters of the first."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(
        temperature=spec["temperature"],
        max_tokens=spec["max_new_tokens"],
        ignore_eos=request["ignore_eos"],
        seed=spec["seed"],
        detokenize=False,
    )
    prompts = [TokensPrompt(prompt_token_ids=ids) for ids in spec["prompts"]]
    seconds, outputs, metrics = [], None, None
    for repeat in range(request.get("warmup", 0) + request.get("repeats", 1)):
        before = metric_values(llm)
        start = time.perf_counter()
        results = llm.generate(prompts, params, use_tqdm=False)
        elapsed = time.perf_counter() - start
        if repeat == 0:  # the first pass over the prompts: outputs and acceptance counters
            outputs = [list(r.outputs[0].token_ids) for r in results]
            metrics = difference(metric_values(llm), before)
        if repeat >= request.get("warmup", 0):
            seconds.append(elapsed)
    return {"outputs": outputs, "seconds": seconds, "metrics": metrics}


def main(request_path: str, result_path: str) -> None:
    with open(request_path) as handle:
        request = json.load(handle)
    llm = engine(request)
    passes = request.get("passes") or [
        {key: request[key] for key in ("prompts", "temperature", "seed", "max_new_tokens")}
    ]
    result = {"passes": [run_pass(llm, request, spec) for spec in passes]}
    tmp = result_path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(result, handle)
    os.replace(tmp, result_path)


if __name__ == "__main__":  # vLLM's engine spawns processes: the guard is required
    main(*sys.argv[1:3])
