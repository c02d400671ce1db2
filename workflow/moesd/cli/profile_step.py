"""Command of the step profile (moesd.step_profile): `moesd profile-step` profiles the latency
stage's decode step (the AR step, s = 1, and an SD round's verification, s = gamma + 1) of a
config's latency models at a few batch sizes and dtypes, and writes where its time goes beside
the time its weights take at the read bandwidth (a benchmark: docs/benchmarks.md keeps its table)."""

from __future__ import annotations

from pathlib import Path

from moesd.cli.args import positive_int

CONTEXT = 128  # tokens in the KV cache: the latency stage's fixed context


def cmd_profile_step(args) -> int:
    import pandas as pd
    import torch

    from moesd.config import load_config
    from moesd.devices import DTYPES
    from moesd.hardware import load_hardware, probe_hardware
    from moesd.io import write_csv
    from moesd.models.linear import LINEAR_IMPLS
    from moesd.step_profile import CATEGORIES
    from moesd.timing import exclusive_timing

    config = load_config(args.config)
    grid = config["latency"]["profile"]  # what the command line leaves out
    batch_sizes, tokens = args.batch_sizes or grid["batch_sizes"], args.tokens or grid["tokens"]
    dtypes, repeats = args.dtypes or grid["dtypes"], args.repeats or grid["repeats"]
    models = {m["name"]: m for m in config["latency"]["models"]}
    by_spec = {m["spec"]: name for name, m in reversed(models.items())}  # the first name of each spec
    names = args.models or [name for name in models if name in by_spec.values()]
    unknown = [name for name in names if name not in models]
    if unknown:
        raise ValueError(f"--models: {unknown[0]!r} is no latency model of {args.config} ({', '.join(models)})")
    bad = [d for d in dtypes if d not in DTYPES]
    if bad:
        raise ValueError(f"--dtypes: {bad[0]!r} is no dtype ({', '.join(DTYPES)})")
    bad = [impl for impl in args.linear_impls if impl not in LINEAR_IMPLS]
    if bad:
        raise ValueError(f"--linear-impls: {bad[0]!r} is none of {', '.join(LINEAR_IMPLS)}")
    torch.set_num_threads(args.threads)
    if args.env:
        bandwidth = load_hardware(f"probe:{args.env}").bandwidth  # a bad file: one line naming it
    else:  # a short probe of this machine's read bandwidth
        bandwidth = probe_hardware("cpu", dtype="float32", buffer_mib=256, repeats=5)["bandwidth"]
    with exclusive_timing("cpu"):  # timed: never beside another timed measurement
        rows = [
            {"model": name, "role": models[name]["role"], "dtype": dtype, "linear_impl": impl} | row
            for name in names
            for dtype in dtypes
            for impl in args.linear_impls
            for row in _profile(models[name], dtype, impl, batch_sizes, tokens, repeats, bandwidth)
        ]
    table = pd.DataFrame(rows)
    table["bandwidth_gbs"] = bandwidth / 1e9
    write_csv(args.out, table)
    shown = table[
        ["model", "dtype", "linear_impl", "B", "s", "step_ms", "roofline_ms", "bandwidth_fraction", *CATEGORIES]
    ].copy()
    profiled = table["profiled_ms"]
    for name in CATEGORIES:  # each category's share of the profiled step
        shown[name] = (100 * table[name] / profiled).round().astype(int).astype(str) + " %"
    print(f"read bandwidth {bandwidth / 1e9:.1f} GB/s; {args.threads} threads; medians of {repeats} steps")
    print(shown.to_markdown(index=False, floatfmt=".2f"))
    print(f"-> {args.out}")
    return 0


def _profile(entry: dict, dtype: str, impl: str, batch_sizes, tokens, repeats: int, bandwidth: float) -> list[dict]:
    """ENTRY's (a latency model's) rows at DTYPE with IMPL's linear products: a draft at s = 1, a
    target at each s of TOKENS."""
    from moesd.devices import DTYPES
    from moesd.models.loading import load_model
    from moesd.step_profile import profile_rows

    model = load_model(entry["spec"], device="cpu", dtype=DTYPES[dtype], linear_impl=impl)
    shapes = [(b, s) for b in batch_sizes for s in ([1] if entry["role"] == "draft" else tokens)]
    return profile_rows(model, entry["spec"], dtype, shapes, CONTEXT, repeats, bandwidth)


def add_parsers(sub) -> None:
    p = sub.add_parser("profile-step", help="where a decode step's time goes, against its weights at the bandwidth")
    p.add_argument(
        "--config", type=Path, default=Path("config/config.yaml"), help="the experiment (its latency models)"
    )
    p.add_argument("--models", nargs="+", help="latency model names (default: one of each spec, at its native K)")
    grid = "default: the config's latency.profile"
    p.add_argument("--batch-sizes", type=positive_int, nargs="+", help=grid)
    p.add_argument("--tokens", type=positive_int, nargs="+", help=f"s per target step (1: the AR step); {grid}")
    p.add_argument("--dtypes", nargs="+", help=grid)
    p.add_argument("--repeats", type=positive_int, help=grid)
    p.add_argument(
        "--linear-impls",
        nargs="+",
        default=["auto"],
        help="the linear products (moesd.models.linear; plain auto: unpacked beside packed)",
    )
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--env", type=Path, help="a run's env.json (its probe's bandwidth); default: probe now")
    p.add_argument("--out", type=Path, required=True, help="the table (CSV)")
    p.set_defaults(func=cmd_profile_step)
