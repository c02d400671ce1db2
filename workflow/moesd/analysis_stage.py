"""The fit stage's commands: speedups from the run's latency tables (`moesd speedup`) and
Algorithm 1 fitted on them per model family and variant, with the Table 3 analog (`moesd fit-run`)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from moesd.bandwidth import BYTES_PER_PARAM, ar_bandwidth
from moesd.config import load_config, sigma_pair
from moesd.fit import PARAM_NAMES, TABLE3_STRIDES, compute_speedup, fit_quality, run_fit
from moesd.hardware import load_hardware
from moesd.io import write_csv, write_json, write_text
from moesd.speedup import compose, e2e_speedups, fit_measurements, sigma_adjusted, sigma_table

PAPER_M = 21  # App. C.3: the paper fits on 21 of 228 measurements


def _read(path: Path, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{what}: {path} does not exist")
    return pd.read_csv(path)


def cmd_speedup(args) -> int:
    config = load_config(args.config)
    analysis = config["analysis"]
    latency = {
        name: _read(args.latency / f"{name}.csv", f"latency {name} table")
        for name in ("forward", "draft", "reject", "e2e")
    }
    pair = sigma_pair(config)
    summary = _read(args.acceptance, "acceptance summary") if args.acceptance else None
    if pair is not None and summary is None:
        raise ValueError(f"analysis.sigma_pair {pair['name']!r}: the acceptance summary (--acceptance) is needed")
    sigmas = sigma_table(summary, *(pair["target"], pair["draft"]) if pair else (None, None))
    composed = compose(
        latency["forward"],
        latency["draft"],
        latency["reject"],
        sigmas,
        statistic=analysis["statistic"],
        verify_tokens=analysis["verify_tokens"],
    )
    composed["speedup_sigma_adjusted"] = sigma_adjusted(composed, analysis["reference_k"])
    e2e = e2e_speedups(latency["e2e"], analysis["statistic"], analysis["e2e_time"])
    hardware = load_hardware(f"probe:{args.env}")  # the device every row was measured on (C9)
    for table in (composed, e2e):
        table["hardware"], table["ridge_point"] = hardware.name, hardware.ridge_point
    bandwidth = ar_bandwidth(latency["forward"], hardware.bandwidth, analysis["statistic"])
    write_csv(args.out / "composed.csv", composed)
    write_csv(args.out / "e2e.csv", e2e)
    write_csv(args.out / "bandwidth.csv", bandwidth)
    print(f"{len(composed)} composed speedups, {len(e2e)} end-to-end speedups -> {args.out}")
    for row in bandwidth.itertuples():
        print(
            f"AR step {row.model} K={row.K} B={row.B}: {row.weight_bytes / 1e6:.0f} MB of weights in "
            f"{row.seconds * 1e3:.1f} ms = {row.bandwidth_fraction:.0%} of the copy bandwidth"
        )
    return 0


def auto_stride(n: int, strides=TABLE3_STRIDES, n_params: int = len(PARAM_NAMES)) -> int:
    """The Table 3 stride whose m = ceil(n / stride) is closest to the paper's 21 with m >= 10,
    preferring a subset that leaves points out (for the held-out error)."""
    usable = [s for s in strides if math.ceil(n / s) >= n_params]
    if not usable:
        raise ValueError(f"{n} measurements: Algorithm 1 needs at least {n_params} (one per parameter)")
    return min(usable, key=lambda s: (math.ceil(n / s) == n, abs(math.ceil(n / s) - PAPER_M), s))


def model_curves(table: pd.DataFrame, record: dict, points: int = 64) -> pd.DataFrame:
    """The fitted model on a dense batch-size grid per K and gamma (the lines of Fig. 4)."""
    grid = np.unique(np.geomspace(1, table["B"].max(), points).round())
    settings = table.groupby(["K", "gamma"], as_index=False).agg(E=("E", "first"), sigma=("sigma", "first"))
    curves = settings.merge(pd.DataFrame({"B": grid}), how="cross")
    curves["speedup_pred"] = compute_speedup(
        record["params"],
        curves["B"],
        curves["gamma"],
        curves["K"],
        curves["E"],
        curves["sigma"],
        record["ridge_point"],
        record["variant"],
        record["verify_tokens"],
    )
    return curves


def _models(family: str, draft_spec: str):
    from moesd.architectures import count_parameters
    from moesd.models.loading import hf_config, parse_spec

    return tuple(count_parameters(hf_config(parse_spec(spec))) for spec in (family, draft_spec))


def cmd_fit_run(args) -> int:
    config = load_config(args.config)
    analysis, fit = config["analysis"], config["fit"]
    composed = _read(args.speedup, "composed speedups")
    hardware = load_hardware(f"probe:{args.env}")
    measurements = fit_measurements(composed, analysis["fit_dataset"], analysis["fit_temperature"])
    if not measurements:
        raise ValueError(
            f"{args.speedup}: no composed speedup at analysis.fit_dataset={analysis['fit_dataset']!r}, "
            f"fit_temperature={analysis['fit_temperature']}"
        )
    records, predictions, curves, metrics, quality = {}, [], [], [], []
    for family, table in measurements.items():
        table = table.assign(speedup=table["speedup_sigma_adjusted"])  # Fig. 4: sigma-adjusted speedups
        name = "+".join(sorted(set(table["model"])))
        if len(table) < len(PARAM_NAMES):
            print(f"{name}: {len(table)} measurements, fewer than {len(PARAM_NAMES)} parameters: not fitted")
            continue
        stride = auto_stride(len(table)) if analysis["fit_stride"] == "auto" else analysis["fit_stride"]
        target, draft = _models(family, table["draft_spec"].iloc[0])
        options = {
            "verify_tokens": analysis["verify_tokens"],
            "dense_convention": fit["dense_convention"],
            "bandwidth_scope": fit["bandwidth_scope"],
            "bytes_per_param": BYTES_PER_PARAM.get(str(table["dtype"].iloc[0]), fit["bytes_per_param"]),
            "n_starts": fit["n_starts"],
            "seed": fit["seed"],
        }
        label = {"family": name, "target": family, "draft": table["draft_spec"].iloc[0], "hardware": hardware.name}
        by_m = {math.ceil(len(table) / s): s for s in sorted(TABLE3_STRIDES, reverse=True)}  # one stride per m
        for variant in analysis["variants"]:
            record, predicted, metric = run_fit(
                table, target, draft, hardware, stride=stride, variant=variant, **options
            )
            records[f"{name}/{variant}"] = record | label
            predictions.append(predicted.assign(family=name, variant=variant))
            curves.append(model_curves(table, record).assign(family=name, variant=variant))
            metrics.append(label | {"variant": variant} | metric)
            print(
                f"{name} {variant}: m={metric['m']} of {metric['n']}, mse_fit={metric['mse_fit']:.4g}, "
                f"mape_heldout={metric['mape_heldout']:.3g}%, {record['seconds']:.3f} s"
            )
            per_m = fit_quality(
                table, target, draft, hardware, strides=sorted(by_m.values()), variant=variant, **options
            )
            quality.append(per_m.assign(variant=variant, **label))
    if not records:
        raise ValueError(f"{args.speedup}: no model family has enough measurements to fit Algorithm 1")
    out = args.out
    write_json(out / "params.json", records)
    write_csv(out / "predictions.csv", pd.concat(predictions, ignore_index=True))
    write_csv(out / "curves.csv", pd.concat(curves, ignore_index=True))
    write_csv(out / "metrics.csv", pd.DataFrame(metrics))
    quality = pd.concat(quality, ignore_index=True)
    write_csv(args.tables / "fit_quality.csv", quality)
    columns = [
        "family",
        "variant",
        "m",
        "stride",
        "mse_fit",
        "mse_all",
        "mape_heldout",
        "fit_seconds",
        "batch_sizes_involved",
    ]
    header = (
        f"# Table 3 analog: fit quality against m ({hardware.name}, measured on this run)\n\n"
        "MSE in squared speedup units on the m fitted points and on all points; MAPE on the held-out points.\n\n"
    )
    write_text(
        args.tables / "fit_quality.md", header + quality[columns].to_markdown(index=False, floatfmt=".4g") + "\n"
    )
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("speedup", help="speedups composed from the latency tables (Eq. 4) and measured end to end")
    p.add_argument("--config", required=True, type=Path, help="the run's analysis stage config")
    p.add_argument(
        "--latency", required=True, type=Path, help="the latency stage's folder (forward/draft/reject/e2e.csv)"
    )
    p.add_argument("--acceptance", type=Path, help="the acceptance stage's summary.csv (measured sigma)")
    p.add_argument("--env", required=True, type=Path, help="the run's env.json (the device of every row)")
    p.add_argument("--out", required=True, type=Path, help="output folder (composed.csv, e2e.csv)")
    p.set_defaults(func=cmd_speedup)
    p = sub.add_parser("fit-run", help="Algorithm 1 on the run's composed speedups, per model family and variant")
    p.add_argument("--config", required=True, type=Path, help="the run's analysis stage config")
    p.add_argument("--speedup", required=True, type=Path, help="composed.csv of `moesd speedup`")
    p.add_argument("--env", required=True, type=Path, help="the run's env.json (measured bandwidth and FLOP/s)")
    p.add_argument("--out", required=True, type=Path, help="output folder (params.json, predictions.csv, metrics.csv)")
    p.add_argument("--tables", required=True, type=Path, help="folder of the Table 3 analog (fit_quality.csv, .md)")
    p.set_defaults(func=cmd_fit_run)
