"""Command of the engine check (workflow/rules/engine_check.smk): `moesd engine-check` times our
decoder's forward against transformers' on the same weights (moesd.engine_check)."""

from __future__ import annotations

from pathlib import Path

from moesd.cli.args import non_negative_int, positive_int


def cmd_engine_check(args) -> int:
    import torch

    from moesd.engine_check import engine_check
    from moesd.io import write_csv
    from moesd.timing import exclusive_timing

    torch.set_num_threads(args.threads)
    with exclusive_timing("cpu"):
        table = engine_check(args.model, args.batch_sizes, args.tokens, args.context, args.repeats, args.warmup)
    print(table.drop(columns="model").to_string(index=False, float_format="%.3f"))
    slower = table[table["speedup_vs_transformers"] < 1.0]
    print(f"\nours slower than transformers at {len(slower)} of {len(table)} points")
    if args.out:
        write_csv(args.out, table)
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("engine-check", help="per-forward time, ours vs transformers, same weights (CPU, fp32)")
    p.add_argument("--model", required=True, help="model spec (arch: specs are initialised by transformers)")
    p.add_argument("--batch-sizes", type=positive_int, nargs="+", default=[1, 16, 64])
    p.add_argument("--tokens", type=positive_int, nargs="+", default=[1, 5], help="new tokens per sequence, s")
    p.add_argument("--context", type=positive_int, default=32, help="tokens already in the KV cache")
    p.add_argument("--repeats", type=positive_int, default=20)
    p.add_argument("--warmup", type=non_negative_int, default=3)
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--out", type=Path, help="also write the table as CSV")
    p.set_defaults(func=cmd_engine_check)
