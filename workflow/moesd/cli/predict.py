"""The model as a tool, outside the workflow's rules: `moesd params` counts an architecture's
parameters per component (moesd.architectures); `moesd predict` predicts the speedup per batch
size, break-even batch size and best gamma for a target, draft and hardware (moesd.predict)."""

from __future__ import annotations

from pathlib import Path

from moesd.cli.args import add_model_options, architecture_counts, batch_sizes, positive_int
from moesd.paper import PAPER_BATCH_SIZES

PARAM_FIELDS = (
    "attention",
    "dense_mlp",
    "routed_experts",
    "routed_expert_one",
    "shared_experts",
    "router",
    "norms",
    "embedding",
    "lm_head",
    "positions",
    "projections",
)


def cmd_params(args) -> int:
    pc = architecture_counts(args.architecture)
    for name in PARAM_FIELDS:
        print(f"{name:>18} {getattr(pc, name):>16,}")
    print(f"{'total':>18} {pc.total:>16,}\n{'active':>18} {pc.active:>16,}")
    print(f"{'E, K':>18} {pc.n_experts}, {pc.top_k}")
    return 0


def cmd_predict(args) -> int:
    import pandas as pd

    from moesd.hardware import load_hardware
    from moesd.io import write_csv
    from moesd.predict import best_gamma, fitted_table, roofline_table, summarise

    if not 0 < args.sigma <= 1:
        raise ValueError(f"--sigma must be in (0, 1], got {args.sigma}")
    if args.params:
        table = fitted_table(args.params, args.sigma, args.gamma, args.batch_sizes)
    else:
        target, draft = architecture_counts(args.target), architecture_counts(args.draft)
        hardware = load_hardware(args.hardware, args.gpus)
        table = roofline_table(
            target,
            draft,
            hardware,
            args.sigma,
            args.gamma,
            args.batch_sizes,
            bytes_per_param=args.bytes_per_param,
            bandwidth_scope=args.bandwidth_scope,
            verify_tokens=args.verify_tokens,
        )
        table = table.assign(target=args.target, draft=args.draft, hardware=hardware.label)
    columns = ["model", "gamma", "B", "sigma", "target_efficiency", "speedup"]
    with pd.option_context("display.width", 160, "display.max_rows", 500):
        print(table[columns].to_string(index=False, float_format="%.4g"))
        print()
        print(summarise(table).to_string(index=False, float_format="%.4g"))
        if len(args.gamma) > 1:
            print()
            print(best_gamma(table).to_string(index=False, float_format="%.4g"))
    if args.out:
        write_csv(args.out, table)
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("params", help="parameter counts of an architecture, per component")
    p.add_argument("architecture", help="NAME[:key=value,...] of data/architectures, or a model spec")
    p.set_defaults(func=cmd_params)

    p = sub.add_parser("predict", help="predicted speedup per batch size (roofline, or fitted with --params)")
    add_model_options(p)
    p.add_argument("--sigma", type=float, required=True, help="sigma of Eq. 5 (tokens per round / (gamma+1))")
    p.add_argument("--gamma", type=positive_int, nargs="+", required=True, help="one or more draft lengths")
    p.add_argument(
        "--batch-sizes",
        type=batch_sizes,
        default=list(PAPER_BATCH_SIZES),
        help="batch sizes, e.g. '1 8 32' (default: the paper's 19 of App. C.2)",
    )
    p.add_argument("--params", type=Path, help="params.json of a `moesd fit` run: use the fitted model")
    p.add_argument("--out", type=Path, help="also write the table as CSV")
    p.set_defaults(func=cmd_predict)
