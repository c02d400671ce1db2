"""Benchmark: per-token decode time of our engine against vLLM on the same tiny checkpoint, AR and
SD (draft model, gamma 4), B in {1, 8, 32}, greedy, every sequence generating the same number of
tokens. Both engines live in one process, so their calls alternate (interleaved medians: a shared
machine's drift hits both alike); it therefore runs in the vLLM environment, whose torch is ours
(moesd's engine needs only torch, safetensors and yaml there):

    bash workflow/scripts/setup_vllm.sh    # once
    PYTHONPATH=workflow .venv-vllm/bin/python workflow/scripts/bench_engines.py [--repeats 5]

Prints ms per decoding step (a batch's wall time over its new tokens) of each engine and the ratio
ours / vLLM (below 1: ours is faster); `--csv FILE` writes the same table (columns B, mode,
ours_ms, vllm_ms, ratio). Without --target/--draft it saves a random Qwen2-MoE target
(4 layers, 16 experts, top 4) and a Qwen2 draft with transformers first. `--compile-draft` adds a
third contender in SD, ours with the draft's forward compiled (moesd.models.compiled,
`latency.compile_draft`; its compiles happen in the warm-up), and the CSV columns
ours_compiled_ms and compiled_ratio (ours compiled / vLLM; empty in AR).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

# After a request vLLM's worker polls its message queue in a spin loop for 0.1 s before it parks
# (vllm.distributed.device_communicators.shm_broadcast, SPINLOOP_TIMEOUT_SECONDS), holding one of
# the two cores: whichever contender ran next paid for it (swapping the turn of two of ours swapped
# which was the slower, docs/benchmarks.md). The next contender waits this long, untimed.
VLLM_SETTLE_S = 1.0


def save_checkpoints(folder: Path) -> tuple[Path, Path]:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    shapes = {
        "target": dict(model_type="qwen2_moe", hidden_size=256, num_hidden_layers=4, num_attention_heads=8,
                       num_key_value_heads=2, moe_intermediate_size=256, shared_expert_intermediate_size=512,
                       num_experts=16, num_experts_per_tok=4, intermediate_size=512),
        "draft": dict(model_type="qwen2", hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=1, intermediate_size=384),
    }  # fmt: skip
    for seed, (name, params) in enumerate(shapes.items()):
        config = AutoConfig.for_model(params.pop("model_type"), vocab_size=4096, **params)
        torch.manual_seed(seed)
        AutoModelForCausalLM.from_config(config).save_pretrained(folder / name)
    return folder / "target", folder / "draft"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=Path, help="checkpoint folder (default: a random tiny Qwen2-MoE)")
    parser.add_argument("--draft", type=Path, help="draft checkpoint folder (same vocabulary)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--gamma", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--csv", type=Path, help="also write the table here (B, mode, ours_ms, vllm_ms, ratio)")
    parser.add_argument("--compile-draft", action="store_true", help="SD also with our draft compiled")
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))[: args.threads]
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"{cores[0]}-{cores[-1]}")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ["CUDA_VISIBLE_DEVICES"] = ""

    import torch
    from moesd.decode import GenerationConfig, decode
    from moesd.models.loading import load_model
    from moesd.timing import interleaved_medians
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    torch.set_num_threads(args.threads)
    scratch = tempfile.TemporaryDirectory(prefix="moesd-bench-")
    target, draft = (args.target, args.draft) if args.target else save_checkpoints(Path(scratch.name))
    longest = args.prompt_tokens + args.new_tokens + args.gamma + 1
    common = dict(dtype="float32", seed=0, skip_tokenizer_init=True, max_num_seqs=max(args.batch_sizes),
                  max_model_len=longest, gpu_memory_utilization=0.1, enable_prefix_caching=False)  # fmt: skip
    spec = {"method": "draft_model", "model": str(draft), "num_speculative_tokens": args.gamma}
    engines = {"ar": LLM(model=str(target), **common), "sd": LLM(model=str(target), speculative_config=spec, **common)}
    ours_target = load_model(f"dir:{target}", device="cpu", dtype=torch.float32)
    ours_draft = load_model(f"dir:{draft}", device="cpu", dtype=torch.float32)
    compiled_draft = (
        load_model(f"dir:{draft}", device="cpu", dtype=torch.float32, compile=True) if args.compile_draft else None
    )
    vocab = ours_target.cfg.vocab_size
    params = SamplingParams(temperature=0.0, max_tokens=args.new_tokens, ignore_eos=True, detokenize=False)
    config = GenerationConfig(max_new_tokens=args.new_tokens, temperature=0.0, gamma=args.gamma, stop_at_eos=False)
    rng = random.Random(0)
    rows = []

    print(f"target {target}, draft {draft}; {args.prompt_tokens} prompt tokens, {args.new_tokens} new, fp32, "
          f"{args.threads} threads, medians of {args.repeats} interleaved repeats")  # fmt: skip
    print(f"{'B':>4} {'mode':>4} {'ours ms/step':>13} {'vLLM ms/step':>13} {'ours/vLLM':>10}"
          + (f" {'compiled ms':>12} {'compiled/vLLM':>14}" if compiled_draft else ""))  # fmt: skip
    for batch in args.batch_sizes:
        prompts = [[rng.randrange(vocab) for _ in range(args.prompt_tokens)] for _ in range(batch)]
        requests = [TokensPrompt(prompt_token_ids=ids) for ids in prompts]
        for mode in ("ar", "sd"):
            drafter = ours_draft if mode == "sd" else None
            contenders = {
                "ours": (lambda m=mode, d=drafter, p=prompts: decode(ours_target, p, config, draft=d, mode=m), None)
            }
            if mode == "sd" and compiled_draft is not None:  # both of ours before vLLM: the same place in the turn
                contenders["compiled"] = (
                    lambda p=prompts: decode(ours_target, p, config, draft=compiled_draft, mode="sd"),
                    None,
                )
            vllm_call = lambda m=mode, r=requests: engines[m].generate(r, params, use_tqdm=False)  # noqa: E731
            contenders["vllm"] = (vllm_call, lambda: time.sleep(VLLM_SETTLE_S))
            ms = interleaved_medians(contenders, repeats=args.repeats, warmup=1)
            step = {name: value / args.new_tokens for name, value in ms.items()}
            row = {"B": batch, "mode": mode, "ours_ms": step["ours"], "vllm_ms": step["vllm"],
                   "ratio": step["ours"] / step["vllm"]}  # fmt: skip
            line = f"{batch:>4} {mode:>4} {step['ours']:>13.2f} {step['vllm']:>13.2f} {row['ratio']:>10.2f}"
            if "compiled" in step:
                row |= {"ours_compiled_ms": step["compiled"], "compiled_ratio": step["compiled"] / step["vllm"]}
                line += f" {step['compiled']:>12.2f} {row['compiled_ratio']:>14.2f}"
            print(line, flush=True)
            rows.append(row)
    if args.csv:
        write_rows(args.csv, rows)


def write_rows(path: Path, rows: list[dict]) -> None:
    """The table as CSV, written whole or not at all (a temporary file renamed)."""
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w", newline="") as handle:
        extra = ["ours_compiled_ms", "compiled_ratio"] if any("compiled_ratio" in r for r in rows) else []
        writer = csv.DictWriter(handle, fieldnames=["B", "mode", "ours_ms", "vllm_ms", "ratio", *extra])
        writer.writeheader()
        writer.writerows(rows)
    partial.replace(path)


if __name__ == "__main__":  # vLLM's engine spawns processes: the guard is required
    main()
