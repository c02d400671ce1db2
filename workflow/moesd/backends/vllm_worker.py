"""Runs inside the vLLM environment (its own Python, torch and transformers; see
moesd.backends.vllm): decodes one request with vLLM's offline engine and writes the outputs and
vLLM's speculative-decoding counters as JSON. Standalone on purpose: it imports only the standard
library and vllm, never moesd, whose pins differ from vLLM's.

    python vllm_worker.py REQUEST.json RESULT.json

REQUEST: target, draft (or null), method (draft_model | eagle), gamma, mode (ar | sd),
tensor_parallel_size, dtype, temperature, max_new_tokens, ignore_eos, seed, batch_size (vLLM's
max_num_seqs: the continuous batch's slots), prompts (token-id lists), max_model_len,
gpu_memory_utilization, repeats, warmup. RESULT: outputs (token-id lists, in prompt order),
seconds (one wall time per timed repeat of the whole prompt set), metrics (name -> value or
list of values).
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


def main(request_path: str, result_path: str) -> None:
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    with open(request_path) as handle:
        request = json.load(handle)
    llm = engine(request)
    params = SamplingParams(
        temperature=request["temperature"],
        max_tokens=request["max_new_tokens"],
        ignore_eos=request["ignore_eos"],
        seed=request["seed"],
        detokenize=False,
    )
    prompts = [TokensPrompt(prompt_token_ids=ids) for ids in request["prompts"]]
    seconds, outputs = [], None
    for repeat in range(request.get("warmup", 0) + request.get("repeats", 1)):
        start = time.perf_counter()
        results = llm.generate(prompts, params, use_tqdm=False)
        elapsed = time.perf_counter() - start
        if repeat == 0:  # the counters of the first pass over the prompts (acceptance)
            outputs = [list(r.outputs[0].token_ids) for r in results]
            metrics = metric_values(llm)
        if repeat >= request.get("warmup", 0):
            seconds.append(elapsed)
    tmp = result_path + ".tmp"
    with open(tmp, "w") as handle:
        json.dump({"outputs": outputs, "seconds": seconds, "metrics": metrics}, handle)
    os.replace(tmp, result_path)


if __name__ == "__main__":  # vLLM's engine spawns processes: the guard is required
    main(*sys.argv[1:3])
