"""Commands of Algorithm 1 (moesd.fit):

    moesd fit           Algorithm 1 fitted on any tidy speedup table
    moesd fit-quality   the Table 3 analog on such a table: fit quality against m
    moesd plot-fit      the Fig. 4 grid of a table against a fit's predictions
    moesd fit-run       Algorithm 1 on a run's composed speedups, per model family
                        (moesd.fit_families; rule fit_run)

`fit`, `fit-quality` and `plot-fit` fit the theory stage's simulated sweep and are also the tools
for a user's own measurements.
"""

from __future__ import annotations

from pathlib import Path

from moesd.cli.args import (
    ANALYSIS,
    add_command,
    add_fit_options,
    add_model_options,
    architecture_counts,
    fit_options,
    positive_int,
)
from moesd.cli.speedup import read_input
from moesd.paper import TABLE3_STRIDES


def _inputs(args):
    """The table and the target, draft and hardware of a fit command."""

    from moesd.fit import check_table
    from moesd.hardware import load_hardware
    from moesd.io import read_table

    table = read_table(args.table)
    check_table(table, str(args.table))
    target, draft = architecture_counts(args.target), architecture_counts(args.draft)
    return table, target, draft, load_hardware(args.hardware, args.gpus)


def cmd_fit(args) -> int:
    from moesd.fit import run_fit
    from moesd.io import write_csv, write_json

    table, target, draft, hardware = _inputs(args)
    record, predictions, metrics = run_fit(table, target, draft, hardware, stride=args.stride, **fit_options(args))
    record |= {"target": args.target, "draft": args.draft, "table": str(args.table)}
    out = Path(args.out)
    write_json(out / "params.json", record, strict=True)
    write_csv(out / "predictions.csv", predictions)
    write_json(out / "metrics.json", metrics, strict=True)
    print(
        f"fit {args.variant} on m={metrics['m']} of {metrics['n']} rows in {record['seconds']:.2f} s: "
        f"mse_fit={metrics['mse_fit']:.4g} mse_all={metrics['mse_all']:.4g} "
        f"mape_heldout={metrics['mape_heldout']:.3g}% -> {out}"
    )
    return 0


def cmd_fit_quality(args) -> int:
    from moesd.figures.tables import TABLE3_COLUMNS, table3_markdown
    from moesd.fit import fit_quality
    from moesd.io import write_csv, write_text

    table, target, draft, hardware = _inputs(args)
    quality = fit_quality(table, target, draft, hardware, strides=args.strides, **fit_options(args))
    quality = quality.assign(target=args.target, draft=args.draft, hardware=hardware.label, variant=args.variant)
    out = Path(args.out)
    write_csv(out / "fit_quality.csv", quality)
    write_text(out / "fit_quality.md", table3_markdown(quality, f"{hardware.label}, {args.table}"))
    print(quality[TABLE3_COLUMNS[:-1]].to_string(index=False, float_format="%.4g"))
    return 0


def cmd_plot_fit(args) -> int:
    from moesd.figures.fig4_sparsity import sparsity_fit_figure
    from moesd.io import read_table

    predictions = read_table(args.predictions)
    missing = {"B", "gamma", "K", "speedup", "speedup_pred", "in_fit"} - set(predictions.columns)
    if missing:
        raise ValueError(f"{args.predictions}: missing column(s) {', '.join(sorted(missing))}")
    sparsity_fit_figure(predictions, Path(args.out), args.caption)
    return 0


def cmd_fit_run(args) -> int:
    import pandas as pd

    from moesd.config import load_config
    from moesd.families import one_platform
    from moesd.figures.tables import table3_markdown
    from moesd.fit_families import fit_families
    from moesd.hardware import load_hardware
    from moesd.io import write_csv, write_json, write_text
    from moesd.speedup import e2e_k_sweep

    config = load_config(args.config)
    # the reference platform's speedups, whose device --env describes (analysis.reference_platform)
    composed = one_platform(
        read_input(args.speedup, "composed speedups", "composed"), config["analysis"]["reference_platform"]
    )
    hardware = load_hardware(f"probe:{args.env}")
    measured = args.e2e is not None and args.e2e.is_file() and args.e2e.stat().st_size > 1  # empty: no e2e pair
    sweep = e2e_k_sweep(read_input(args.e2e, "end-to-end speedups", "e2e")) if measured else pd.DataFrame()
    if len(sweep):  # Fig. 4 as the paper fitted it: the real weights' K sweep end to end, on its device
        envs = {path.stem: path for path in args.platform_envs}
        platform = sweep["platform"].iloc[0]
        if platform not in envs:
            raise ValueError(f"--platform-envs: no env file for platform {platform} of the end-to-end K sweep")
        hardware_e2e = load_hardware(f"probe:{envs[platform]}", int(sweep["tensor_parallel_size"].iloc[0]))
    try:
        fits = fit_families(composed, hardware, config["analysis"], config["fit"])
    except ValueError as error:
        raise ValueError(f"{args.speedup}: {error}") from None
    if len(sweep):
        try:
            fits.merge(fit_families(sweep, hardware_e2e, config["analysis"], config["fit"]))
        except ValueError as error:  # too few points, or none at the fit setting: the composed fits stand
            print(f"fit-run: the end-to-end K sweep is not fitted ({error})")
    tables = fits.tables()
    write_json(args.out / "params.json", fits.records, strict=True)
    for name in ("predictions", "curves", "metrics"):
        write_csv(args.out / f"{name}.csv", tables[name])
    write_csv(args.tables / "fit_quality.csv", tables["quality"])
    markdown = table3_markdown(tables["quality"], f"{hardware.name}, measured on this run")
    write_text(args.tables / "fit_quality.md", markdown)
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("fit", help="fit Algorithm 1 to a tidy speedup table")
    p.add_argument("table", type=Path, help="CSV with columns B, gamma, K, E, sigma, speedup (others kept)")
    add_model_options(p)
    p.add_argument("--stride", type=positive_int, default=11, help="App. C.3 stride (11 -> m = 21 of 228)")
    add_fit_options(p)
    p.add_argument("--out", required=True, type=Path, help="output folder (params.json, predictions.csv, metrics.json)")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("fit-quality", help="Table 3 analog: fit quality against the number m of fitting points")
    p.add_argument("table", type=Path, help="CSV with columns B, gamma, K, E, sigma, speedup")
    add_model_options(p)
    add_fit_options(p)
    p.add_argument("--strides", type=positive_int, nargs="+", default=list(TABLE3_STRIDES), help="default: Table 3's")
    p.add_argument("--out", required=True, type=Path, help="output folder (fit_quality.csv, fit_quality.md)")
    p.set_defaults(func=cmd_fit_quality)

    p = sub.add_parser("plot-fit", help="Fig. 4-style grid of data against a fit's predictions")
    p.add_argument("predictions", type=Path, help="predictions.csv of `moesd fit`")
    p.add_argument("--caption", required=True, help="caption: device, models, source of the data")
    p.add_argument("--out", required=True, type=Path, help="figure path stem (.png and .pdf are written)")
    p.set_defaults(func=cmd_plot_fit)

    p = add_command(
        sub,
        "fit-run",
        cmd_fit_run,
        "Algorithm 1 on the run's composed speedups, per model family and variant",
        config=ANALYSIS,
        speedup="composed.csv of `moesd speedup`",
        env="the run's env.json (measured bandwidth and FLOP/s)",
        out="output folder (params.json, predictions.csv, curves.csv, metrics.csv)",
        tables="folder of the Table 3 analog (fit_quality.csv, .md)",
    )
    p.add_argument(
        "--e2e", type=Path, help="e2e.csv of `moesd speedup`: its real-weight K sweep is fitted too (Fig. 4)"
    )
    p.add_argument(
        "--platform-envs",
        type=Path,
        nargs="*",
        default=[],
        help="each platform's <platform>.json (the K sweep's device)",
    )
