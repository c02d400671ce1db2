"""`moesd generate` (a tool outside the workflow's rules): batched autoregressive or speculative
decoding of a prompt set with our engine (moesd.decode), one JSONL line per prompt."""

from __future__ import annotations

import json
from pathlib import Path


def tokenizer_for(spec_text: str):
    """The tokenizers.Tokenizer in the model's folder, or None (arch: models have none)."""
    from moesd.models.spec import parse_spec

    folder = parse_spec(spec_text).folder()
    if folder is None:
        return None
    path = folder / "tokenizer.json"
    if not path.is_file():
        return None
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path))


def cmd_generate(args) -> int:
    import torch

    from moesd.decode import GenerationConfig, decode
    from moesd.io import atomic_path
    from moesd.models.loading import load_model
    from moesd.models.spec import parse_spec
    from moesd.prompts import check_source, load_prompts

    # validate everything cheap before loading models
    config = GenerationConfig(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        gamma=args.gamma,
        acceptance=args.acceptance,
        alpha=args.alpha,
        stop_at_eos=not args.ignore_eos,
        seed=args.seed,
    )
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.mode == "sd" and not args.draft:
        raise ValueError("--mode sd needs --draft")
    parse_spec(args.target)
    if args.draft:
        parse_spec(args.draft)
    check_source(args.prompts)
    dtype = getattr(torch, args.dtype) if args.dtype else None

    target = load_model(args.target, device=args.device, dtype=dtype, expert_impl=args.expert_impl)
    draft = load_model(args.draft, device=args.device, dtype=dtype) if args.mode == "sd" else None
    tokenizer = None if args.prompts.startswith("random:") else tokenizer_for(args.target)
    prompts = load_prompts(args.prompts, vocab_size=target.cfg.vocab_size, seed=args.seed, tokenizer=tokenizer)
    out = Path(args.out)
    with atomic_path(out) as tmp, tmp.open("w") as handle:
        for start in range(0, len(prompts), args.batch_size):
            batch = prompts[start : start + args.batch_size]
            result = decode(target, batch, config, draft=draft, mode=args.mode)
            accepted = result.accepted_per_sequence if args.mode == "sd" else None
            for i, ids in enumerate(result.output_ids):
                row = {
                    "prompt_index": start + i,
                    "output_ids": ids,
                    "mode": args.mode,
                    "target": args.target,
                    "draft": args.draft,
                    "gamma": args.gamma if args.mode == "sd" else None,
                    "temperature": args.temperature,
                    "target_outputs": result.target_outputs,
                    "expert_impl": result.expert_impl,
                }
                if accepted is not None:
                    row["accepted"] = accepted[i]
                if tokenizer is not None:
                    row["text"] = tokenizer.decode(ids)
                handle.write(json.dumps(row) + "\n")
    print(f"{len(prompts)} prompts, mode {args.mode} -> {out}")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("generate", help="batched autoregressive or speculative decoding of a prompt set")
    p.add_argument("--target", required=True, help="model spec: hf:ORG/NAME@REV, dir:PATH or arch:NAME[:k=v,...]")
    p.add_argument("--draft", help="draft model spec (needed for --mode sd)")
    p.add_argument("--mode", choices=("ar", "sd"), default="ar")
    p.add_argument("--gamma", type=int, default=4, help="draft tokens per round")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--prompts", required=True, help="JSONL file (input_ids or text per line) or random:N:L")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--acceptance", choices=("target", "forced"), default="target")
    p.add_argument("--alpha", type=float, help="forced acceptance probability per draft token")
    p.add_argument("--ignore-eos", action="store_true", help="always generate max-new-tokens tokens")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument(
        "--dtype",
        choices=("float32", "bfloat16", "float16", "float64"),
        help="weights' dtype (default: float32 on a CPU, bfloat16 on CUDA; unlike latency.dtype auto, "
        "no detection of a CPU's native bf16)",
    )
    p.add_argument(
        "--expert-impl",
        choices=("auto", "grouped_mm", "loop"),
        default="auto",
        help="MoE expert kernels (auto: grouped_mm where available, the loop for fp32 on a CPU)",
    )
    p.add_argument("--out", required=True, type=Path, help="output JSONL")
    p.set_defaults(func=cmd_generate)
