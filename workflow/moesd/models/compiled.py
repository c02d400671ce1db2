"""torch.compile of a dense model's fixed-shape forward on a CPU.

A small model's decode step on a CPU is bound by operator dispatch, not by reading its weights:
the tiny draft of `workflow/scripts/bench_engines.py` runs about 520 operators a step, 1.5 ms at
B = 1 on 2 cores, for weights that take 0.1 ms to read. vLLM's CPU backend compiles its step; so
may ours (`latency.compile_draft`, `load_model(compile=True)`). Inductor fuses the step's
element-wise work into a few C++ kernels: the same draft took 0.61 ms at B = 1, 1.0 at B = 8 and
2.35 at B = 32, against 1.53, 1.75 and 3.18 eager (docs/benchmarks.md).

What is compiled is the static forward (`Transformer.forward_static`: attention over the whole
cache, masked by slot), so that its shapes are fixed: one compile per input shape [B, s] and
cache, made on its first call (a timed point's warm-up), 5-15 s each for the tiny draft. Caches
of a compiled model are sized in whole buckets of CACHE_BUCKET slots, so that generations whose
prompts differ a little in length share a compile. The eager forward is its twin: the tests
compare their logits and caches (tests/test_compiled.py).

Limits, each refused at load in one line (`compile_problem`):
- dense models only. An MoE's expert loop synchronises with the host (a graph break per layer),
  and its grouped product compiled for the benchmark's tiny MoE crashed the process at B = 8
  (`free(): invalid next size`, torch 2.13); at B = 1 it gained nothing (7.1 against 6.8 ms).
- a CPU: on a GPU CUDA graphs capture the same static forward (moesd.models.graphs).
- unpacked weights: inductor cannot lower oneDNN's packed product on parameters, so a compiled
  model's `linear_impl` is plain (auto becomes plain; packed is refused).
- a C++ compiler on the PATH, which inductor builds its kernels with.

The config check refuses the same for arch: drafts and a missing compiler before any job
(moesd.config.checks); this module imports torch only when it compiles.
"""

from __future__ import annotations

import shutil

CACHE_BUCKET = 64  # slots: a compiled model's caches are a whole number of these
RECOMPILE_LIMIT = 128  # compiled shapes per forward before dynamo would fall back to eager


MOE_PROBLEM = "only dense models are compiled (an MoE's expert path breaks the graph)"
COMPILER_PROBLEM = "torch.compile on a CPU needs a C++ compiler (c++ or g++) on the PATH"


def has_compiler() -> bool:
    return bool(shutil.which("c++") or shutil.which("g++"))


def compile_problem(cfg, device, linear_impl: str) -> str | None:
    """Why a model of CFG on DEVICE with LINEAR_IMPL cannot be compiled, or None."""
    if cfg.is_moe:
        return MOE_PROBLEM
    if str(device).split(":")[0] != "cpu":
        return "it compiles on a CPU only (a GPU replays CUDA graphs: latency.cuda_graphs)"
    if linear_impl == "packed":
        return "a compiled model's weights stay unpacked (linear_impl plain or auto, not packed)"
    if not has_compiler():
        return COMPILER_PROBLEM
    return None


def bucketed(max_len: int) -> int:
    """MAX_LEN rounded up to whole CACHE_BUCKETs."""
    return -(-max_len // CACHE_BUCKET) * CACHE_BUCKET


def run_compiled(model, input_ids, cache):
    """Logits of model(input_ids, cache) through the compiled static forward."""
    import torch

    compiled = model.__dict__.get("_compiled")
    if compiled is None:
        config = torch._dynamo.config
        config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)
        config.fail_on_recompile_limit_hit = True  # never fall back to eager silently while timing
        compiled = model._compiled = torch.compile(model._forward, dynamic=False)
    return compiled(input_ids, cache, None, cache.max_len)  # forward_static's form
