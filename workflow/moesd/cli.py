"""The `moesd` command line: one subcommand per stage or tool.

Bad input (a missing file, an unknown architecture or hardware, a malformed table or config)
ends with one line, `moesd: error: ...`, and exit status 2, before any long work starts.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from moesd.architectures import ArchitectureError, count_parameters, load_architecture
from moesd.config import ConfigError
from moesd.fit import TABLE3_STRIDES

EXPECTED_ERRORS = (ArchitectureError, ConfigError, ValueError, FileNotFoundError, KeyError)


def parse_arch(spec: str):
    """NAME[:key=value,...] -> ParamCount of data/architectures/NAME.json with overrides."""
    name, _, rest = spec.partition(":")
    overrides = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ArchitectureError(f"architecture spec {spec!r}: override {item!r} is not key=value")
        overrides[key] = json.loads(value) if value[:1] in "-0123456789[{tfn" else value
    return count_parameters(load_architecture(name, overrides))


def _batch_sizes(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"batch sizes must be integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be positive integers, got {text!r}")
    return values


def _add_fit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dense-convention", choices=("non_routed", "non_ffn"), default="non_routed")
    p.add_argument("--n-starts", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", required=True, help="target architecture NAME[:key=value,...] (data/architectures)")
    p.add_argument("--draft", required=True, help="draft architecture NAME[:key=value,...]")
    p.add_argument("--hardware", required=True, help="NAME or NxNAME from data/hardware.yaml, or probe:ENV.json")
    p.add_argument("--gpus", type=int, default=None, help="GPUs serving the target (default 1 or the N of NxNAME)")
    p.add_argument(
        "--variant", choices=("eq4", "printed"), default="eq4", help="Algorithm 1 line 11 reading (default eq4)"
    )
    p.add_argument("--verify-tokens", choices=("gamma", "gamma_plus_one"), default="gamma")
    p.add_argument("--bandwidth-scope", choices=("aggregate", "per_gpu"), default="aggregate")
    p.add_argument("--bytes-per-param", type=float, default=2.0)


def cmd_fit(args) -> int:
    from moesd.fit import run_fit
    from moesd.hardware import load_hardware
    from moesd.io import write_csv, write_json

    table = pd.read_csv(args.table)
    target, draft, hardware = parse_arch(args.target), parse_arch(args.draft), load_hardware(args.hardware, args.gpus)
    record, predictions, metrics = run_fit(table, target, draft, hardware, stride=args.stride, **_fit_options(args))
    record |= {"target": args.target, "draft": args.draft, "table": str(args.table)}
    out = Path(args.out)
    write_json(out / "params.json", record)
    write_csv(out / "predictions.csv", predictions)
    write_json(out / "metrics.json", metrics)
    print(
        f"fit {args.variant} on m={metrics['m']} of {metrics['n']} rows in {record['seconds']:.2f} s: "
        f"mse_fit={metrics['mse_fit']:.4g} mse_all={metrics['mse_all']:.4g} mape_heldout={metrics['mape_heldout']:.3g}% -> {out}"
    )
    return 0


def _fit_options(args) -> dict:
    return {
        "variant": args.variant,
        "verify_tokens": args.verify_tokens,
        "dense_convention": args.dense_convention,
        "bandwidth_scope": args.bandwidth_scope,
        "bytes_per_param": args.bytes_per_param,
        "n_starts": args.n_starts,
        "seed": args.seed,
    }


def cmd_fit_quality(args) -> int:
    from moesd.fit import check_table, fit_quality
    from moesd.hardware import load_hardware
    from moesd.io import write_csv, write_text

    table = pd.read_csv(args.table)
    check_table(table, str(args.table))
    target, draft, hardware = parse_arch(args.target), parse_arch(args.draft), load_hardware(args.hardware, args.gpus)
    quality = fit_quality(table, target, draft, hardware, strides=args.strides, **_fit_options(args))
    quality = quality.assign(target=args.target, draft=args.draft, hardware=hardware.label, variant=args.variant)
    out = Path(args.out)
    write_csv(out / "fit_quality.csv", quality)
    columns = ["m", "stride", "mse_fit", "mse_all", "mape_heldout", "fit_seconds", "batch_sizes_involved"]
    write_text(out / "fit_quality.md", quality[columns].to_markdown(index=False, floatfmt=".4g") + "\n")
    print(quality[columns[:-1]].to_string(index=False, float_format="%.4g"))
    return 0


def cmd_simulate(args) -> int:
    from moesd.config import load_config
    from moesd.io import write_csv
    from moesd.simulate import roofline_sweep

    config = load_config(args.config)
    sim, fit = config["simulation"], config["fit"]
    sweep = roofline_sweep(
        sim["target"],
        sim["draft"],
        sim["platform"],
        sim["sigma"],
        sim["k_values"],
        sim["gammas"],
        sim["batch_sizes"],
        bytes_per_param=fit["bytes_per_param"],
        bandwidth_scope=fit["bandwidth_scope"],
        verify_tokens=fit["verify_tokens"],
    )
    write_csv(args.out, sweep)
    print(f"{len(sweep)} simulated points -> {args.out}")
    return 0


def cmd_plot_fit(args) -> int:
    from moesd.fit_figures import sparsity_fit_figure

    predictions = pd.read_csv(args.predictions)
    missing = {"B", "gamma", "K", "speedup", "speedup_pred", "in_fit"} - set(predictions.columns)
    if missing:
        raise ValueError(f"{args.predictions}: missing column(s) {', '.join(sorted(missing))}")
    sparsity_fit_figure(predictions, Path(args.out), args.caption)
    return 0


def cmd_predict(args) -> int:
    from moesd.hardware import load_hardware
    from moesd.io import write_csv
    from moesd.predict import best_gamma, fitted_table, roofline_table, summarise

    if not 0 < args.sigma <= 1:
        raise ValueError(f"--sigma must be in (0, 1], got {args.sigma}")
    if args.params:
        table = fitted_table(args.params, args.sigma, args.gamma, args.batch_sizes)
    else:
        target, draft = parse_arch(args.target), parse_arch(args.draft)
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
    with pd.option_context("display.width", 160, "display.max_rows", 500):
        print(
            table[["model", "gamma", "B", "sigma", "target_efficiency", "speedup"]].to_string(
                index=False, float_format="%.4g"
            )
        )
        print()
        print(summarise(table).to_string(index=False, float_format="%.4g"))
        if len(args.gamma) > 1:
            print()
            print(best_gamma(table).to_string(index=False, float_format="%.4g"))
    if args.out:
        write_csv(args.out, table)
    return 0


def cmd_probe(args) -> int:
    import torch

    from moesd.hardware import probe_hardware
    from moesd.io import environment, update_json
    from moesd.models.loading import default_device

    device = default_device() if args.device == "auto" else args.device
    gpu = device.startswith("cuda")
    if gpu and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: this torch sees no CUDA device")
    copy_mib = args.copy_mib or (4096 if gpu else 256)
    matmul_n = args.matmul_n or (8192 if gpu else 1024)
    probe = probe_hardware(device, dtype=args.dtype, copy_mib=copy_mib, matmul_n=matmul_n, repeats=args.repeats)
    update_json(args.out, hardware_probe=probe, environment=environment())
    print(
        f"{probe['device_name']}: bandwidth {probe['bandwidth'] / 1e9:.1f} GB/s, "
        f"{probe['dtype']} matmul {probe['flops'] / 1e12:.3f} TFLOP/s, ridge point {probe['ridge_point']:.1f} FLOP/byte -> {args.out}"
    )
    return 0


def cmd_theory(args) -> int:
    from moesd.config import load_config
    from moesd.theory_figures import run

    config = load_config(args.config)
    for path in run(config, Path(args.out)):
        print(path)
    return 0


def cmd_params(args) -> int:
    pc = parse_arch(args.architecture)
    fields = (
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
    for field in fields:
        print(f"{field:>18} {getattr(pc, field):>16,}")
    print(f"{'total':>18} {pc.total:>16,}\n{'active':>18} {pc.active:>16,}")
    print(f"{'E, K':>18} {pc.n_experts}, {pc.top_k}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moesd", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fit", help="fit Algorithm 1 to a tidy speedup table")
    p.add_argument("table", type=Path, help="CSV with columns B, gamma, K, E, sigma, speedup (others kept)")
    _add_model_options(p)
    p.add_argument("--stride", type=int, default=11, help="App. C.3 stride (11 -> m = 21 of 228)")
    _add_fit_options(p)
    p.add_argument("--out", required=True, type=Path, help="output folder (params.json, predictions.csv, metrics.json)")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("fit-quality", help="Table 3 analog: fit quality against the number m of fitting points")
    p.add_argument("table", type=Path, help="CSV with columns B, gamma, K, E, sigma, speedup")
    _add_model_options(p)
    _add_fit_options(p)
    p.add_argument("--strides", type=int, nargs="+", default=list(TABLE3_STRIDES), help="default: Table 3's")
    p.add_argument("--out", required=True, type=Path, help="output folder (fit_quality.csv, fit_quality.md)")
    p.set_defaults(func=cmd_fit_quality)

    p = sub.add_parser("simulate", help="roofline-simulated sparsity sweep (the config's `simulation` section)")
    p.add_argument("--config", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="CSV to write")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("plot-fit", help="Fig. 4-style grid of data against a fit's predictions")
    p.add_argument("predictions", type=Path, help="predictions.csv of `moesd fit`")
    p.add_argument("--caption", required=True, help="caption: device, models, source of the data")
    p.add_argument("--out", required=True, type=Path, help="figure path stem (.png and .pdf are written)")
    p.set_defaults(func=cmd_plot_fit)

    p = sub.add_parser("predict", help="predicted speedup per batch size (roofline, or fitted with --params)")
    _add_model_options(p)
    p.add_argument("--sigma", type=float, required=True, help="sigma of Eq. 5 (tokens per round / (gamma+1))")
    p.add_argument("--gamma", type=int, nargs="+", required=True, help="one or more draft lengths")
    p.add_argument(
        "--batch-sizes",
        type=_batch_sizes,
        default=_batch_sizes("1 2 4 8 12 16 20 24 28 32 36 40 44 48 52 56 60 80 100"),
    )
    p.add_argument("--params", type=Path, help="params.json of a `moesd fit` run: use the fitted model")
    p.add_argument("--out", type=Path, help="also write the table as CSV")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("probe-hardware", help="measure memory bandwidth and matmul throughput into env.json")
    p.add_argument("--device", default="cpu", help="cpu, cuda[:N] or auto (cuda when available)")
    p.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16", "float16"),
        default="auto",
        help="matmul dtype: the timed models' (auto: bf16 on CUDA and on CPUs with native bf16, else fp32)",
    )
    p.add_argument("--copy-mib", type=int, help="copied MiB (default 256 on a CPU, 4096 on a GPU)")
    p.add_argument("--matmul-n", type=int, help="square matmul size (default 1024 on a CPU, 8192 on a GPU)")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--out", required=True, type=Path, help="env.json to create or update")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("theory", help="theory-stage figures and tables from a config")
    p.add_argument("--config", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.set_defaults(func=cmd_theory)

    from moesd import (
        analysis_stage,
        bench,
        claims,
        generate_cli,
        latency_stage,
        measured_figures,
        routing_figure,
        stages,
    )

    generate_cli.add_parser(sub)
    analysis_stage.add_parsers(sub)
    measured_figures.add_parser(sub)
    claims.add_parser(sub)
    bench.add_parser(sub)
    stages.add_parsers(sub)
    latency_stage.add_parser(sub)
    routing_figure.add_parser(sub)

    p = sub.add_parser("params", help="parameter counts of an architecture, per component")
    p.add_argument("architecture", help="NAME[:key=value,...]")
    p.set_defaults(func=cmd_params)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except EXPECTED_ERRORS as error:
        message = str(error).strip("'\"").splitlines()[0] if str(error) else type(error).__name__
        if isinstance(error, FileNotFoundError) and error.filename:
            message = f"{error.filename}: no such file"
        parser.exit(2, f"moesd: error: {message}\n")


if __name__ == "__main__":
    sys.exit(main())
