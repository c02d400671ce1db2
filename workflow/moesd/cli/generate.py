"""`moesd generate` (a tool outside the workflow's rules): batched autoregressive or speculative
decoding of a prompt set with our engine (moesd.decode) or with vLLM (moesd.backends.vllm), one
JSONL line per prompt; with vLLM's speculation, its acceptance counters beside it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from moesd.backends import BACKENDS
from moesd.cli.args import check_cuda, device_option, positive_int
from moesd.models import checkpoint


def tokenizer_for(spec_text: str):
    """The model folder's TextTokenizer, or None (arch: models have none)."""
    from moesd.models.spec import parse_spec
    from moesd.prompts import TextTokenizer

    return TextTokenizer.of(checkpoint.folder(parse_spec(spec_text)))


def _write_rows(out: Path, rows: list[dict], tokenizer) -> None:
    from moesd.io import atomic_path

    with atomic_path(out) as tmp, tmp.open("w") as handle:
        for row in rows:
            if tokenizer is not None:
                row["text"] = tokenizer.decode(row["output_ids"])
            handle.write(json.dumps(row) + "\n")


def _row(args, index: int, ids: list[int], **extra) -> dict:
    return {
        "prompt_index": index,
        "output_ids": ids,
        "mode": args.mode,
        "target": args.target,
        "draft": args.draft,
        "gamma": args.gamma if args.mode == "sd" else None,
        "temperature": args.temperature,
        "backend": args.backend,
    } | extra


def check_positions(prompts: list[list[int]], args, cfg) -> None:
    """A prompt plus its new tokens (and a round's drafts) beyond the target's positions: an error
    for learned positions (OPT has no embedding past them), a warning for RoPE, which computes
    them but was never trained there."""
    need = max(len(ids) for ids in prompts) + args.max_new_tokens + (args.gamma + 1 if args.mode == "sd" else 0)
    if need <= cfg.max_position_embeddings:
        return
    longest = max(range(len(prompts)), key=lambda i: len(prompts[i]))
    text = (
        f"prompt {longest} ({len(prompts[longest])} tokens) plus --max-new-tokens {args.max_new_tokens}"
        f"{' and a round of drafts' if args.mode == 'sd' else ''} reach {need} positions, beyond the target's "
        f"{cfg.max_position_embeddings}"
    )
    if cfg.is_opt:
        raise ValueError(f"{text} (learned positions)")
    print(f"moesd: warning: {text}: RoPE positions the model was not trained on", file=sys.stderr)


def _generate_ours(args, config, prompts_of) -> tuple[list[dict], dict | None]:
    import torch

    from moesd.decode import decode
    from moesd.models.loading import load_model

    dtype = getattr(torch, args.dtype) if args.dtype else None
    target = load_model(args.target, device=args.device, dtype=dtype, expert_impl=args.expert_impl)
    draft = load_model(args.draft, device=args.device, dtype=dtype) if args.mode == "sd" else None
    prompts = prompts_of(target.cfg.vocab_size)
    check_positions(prompts, args, target.cfg)
    rows = []
    for start in range(0, len(prompts), args.batch_size):
        result = decode(target, prompts[start : start + args.batch_size], config, draft=draft, mode=args.mode)
        for i, ids in enumerate(result.output_ids):
            extra = {"target_outputs": result.target_outputs, "expert_impl": result.expert_impl}
            if args.mode == "sd":
                extra["accepted"] = result.accepted_per_sequence[i]
            rows.append(_row(args, start + i, ids, **extra))
    return rows, None


def _generate_vllm(args, prompts_of) -> tuple[list[dict], dict | None]:
    """The same decoding through vLLM (moesd.backends.vllm): every check before any model loads."""
    from moesd.backends.vllm import VllmError, VllmRequest, hf_config, run
    from moesd.models.spec import parse_spec

    if args.acceptance != "target":
        raise VllmError("--acceptance forced: vLLM decides acceptance with the target (use --backend ours)")
    folders = {}
    for role in ("target", "draft") if args.mode == "sd" else ("target",):
        folder = checkpoint.folder(parse_spec(getattr(args, role)))
        if folder is None:
            raise VllmError(f"--{role} {getattr(args, role)}: vLLM loads a checkpoint folder (hf: or dir:), not arch:")
        folders[role] = folder
    request = VllmRequest(
        target=folders["target"],
        draft=folders.get("draft"),
        prompts=prompts_of(hf_config(folders["target"], "--target").get("vocab_size", 0)),
        mode=args.mode,
        method=args.speculative_method,
        draft_sampling=args.draft_sampling or "probabilistic",
        gamma=args.gamma,
        tensor_parallel_size=args.tensor_parallel_size,
        dtype=args.dtype or ("bfloat16" if (args.device or "cpu").startswith("cuda") else "float32"),
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        ignore_eos=args.ignore_eos,
        seed=args.seed,
        batch_size=args.batch_size,
        device=args.device or "cpu",
        enforce_eager=args.enforce_eager,
        in_process=args.in_process,
    )
    result = run(request)
    rows = [_row(args, i, ids) for i, ids in enumerate(result.outputs)]
    return rows, result.acceptance() if args.mode == "sd" else None


def cmd_generate(args) -> int:
    from moesd.decode import GenerationConfig
    from moesd.io import write_json
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
    if args.mode == "sd" and not args.draft:
        raise ValueError("--mode sd needs --draft")
    vllm_only = args.tensor_parallel_size != 1 or args.speculative_method != "draft_model" or args.draft_sampling
    if args.backend == "ours" and vllm_only:
        raise ValueError(
            "--tensor-parallel-size, --speculative-method and --draft-sampling are vLLM's: use --backend vllm"
        )
    check_cuda(args.device)
    parse_spec(args.target)
    if args.draft:
        parse_spec(args.draft)
    check_source(args.prompts)
    tokenizer = None if args.prompts.startswith("random:") else tokenizer_for(args.target)

    def prompts_of(vocab_size: int) -> list[list[int]]:
        return load_prompts(args.prompts, vocab_size=vocab_size, seed=args.seed, tokenizer=tokenizer)

    generate = _generate_vllm if args.backend == "vllm" else lambda a, p: _generate_ours(a, config, p)
    rows, acceptance = generate(args, prompts_of)
    out = Path(args.out)
    _write_rows(out, rows, tokenizer)
    if acceptance is not None:
        write_json(out.with_suffix(".acceptance.json"), acceptance)
        print(f"vLLM acceptance: {json.dumps(acceptance)}")
    print(f"{len(rows)} prompts, mode {args.mode}, backend {args.backend} -> {out}")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("generate", help="batched autoregressive or speculative decoding of a prompt set")
    p.add_argument("--target", required=True, help="model spec: hf:ORG/NAME@REV, dir:PATH or arch:NAME[:k=v,...]")
    p.add_argument("--draft", help="draft model spec (needed for --mode sd)")
    p.add_argument("--mode", choices=("ar", "sd"), default="ar")
    p.add_argument("--gamma", type=positive_int, default=4, help="draft tokens per round")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--max-new-tokens", type=positive_int, default=64)
    p.add_argument("--prompts", required=True, help="JSONL file (input_ids or text per line) or random:N:L")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--acceptance", choices=("target", "forced"), default="target")
    p.add_argument("--alpha", type=float, help="forced acceptance probability per draft token")
    p.add_argument("--ignore-eos", action="store_true", help="always generate max-new-tokens tokens")
    p.add_argument(
        "--device", type=device_option, default=None, help="cpu, cuda or cuda:N (default: cuda when available)"
    )
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
    p.add_argument(
        "--backend",
        choices=BACKENDS,
        default="ours",
        help="our engine, or vLLM (the paper's engine) in its own environment (bash workflow/scripts/setup_vllm.sh)",
    )
    p.add_argument(
        "--tensor-parallel-size", type=positive_int, default=1, help="vLLM: ranks (GPUs, or CPU cores) per model"
    )
    p.add_argument(
        "--speculative-method",
        choices=("draft_model", "eagle"),
        default="draft_model",
        help="vLLM: what --draft is, a draft model or an EAGLE head",
    )
    p.add_argument(
        "--draft-sampling",
        choices=("probabilistic", "greedy"),
        help="vLLM at T > 0: sample the draft and accept with min(1, p/q) (probabilistic, the default: the "
        "standard rule, ours), or propose its argmax and accept with p (greedy, vLLM V1's default)",
    )
    p.add_argument(
        "--enforce-eager",
        action="store_true",
        help="vLLM: no CUDA graphs or torch.compile (config key vllm.enforce_eager): a quicker start",
    )
    p.add_argument(
        "--in-process",
        action="store_true",
        help="vLLM: its engine core (and at one rank its model) in the worker's process (vllm.in_process)",
    )
    p.add_argument("--out", required=True, type=Path, help="output JSONL")
    p.set_defaults(func=cmd_generate)
