"""Commands of the theory stage (workflow/rules/theory.smk), which needs no measurement:

    moesd theory        N(t)/E, tokens per expert and the roofline speedup from the equations and
                        the real architectures (moesd.simulate tables, moesd.figures drawings)
    moesd simulate      the sparsity sweep's design with roofline-simulated speedups
    moesd fit           Algorithm 1 fitted on any tidy speedup table (moesd.fit)
    moesd fit-quality   the Table 3 analog on such a table: fit quality against m
    moesd plot-fit      the Fig. 4 grid of a table against a fit's predictions

`fit`, `fit-quality` and `plot-fit` are also the tools for a user's own measurements.
"""

from __future__ import annotations

from pathlib import Path

from moesd.cli.args import (
    add_command,
    add_fit_options,
    add_model_options,
    architecture_counts,
    fit_options,
    positive_int,
)
from moesd.paper import TABLE3_STRIDES


def cmd_theory(args) -> int:
    from moesd.config import load_config
    from moesd.figures.fig1_routing import active_experts_figure, tokens_per_expert_figure
    from moesd.figures.fig2_speedup import roofline_speedup_figure
    from moesd.io import write_csv
    from moesd.simulate import roofline_speedup, saturation_table

    config = load_config(args.config)
    theory, prediction = config["theory"], config["prediction"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sat = saturation_table(theory["architectures"], theory["sweep_architecture"], theory["k_values"], theory["tau"])
    write_csv(out / "saturation.csv", sat)
    active_experts_figure(sat, theory["max_tokens"], out / "active_experts")
    tokens_per_expert_figure(theory["tokens_per_expert_t"], out / "tokens_per_expert")
    roof = roofline_speedup(
        prediction["pairs"],
        prediction["platforms"],
        prediction["sigma"],
        prediction["gammas"],
        prediction["batch_sizes"],
        config["fit"],
    )
    write_csv(out / "roofline_speedup.csv", roof)
    roofline_speedup_figure(roof, out / "roofline_speedup")
    for path in sorted(out.iterdir()):
        print(path)
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


def add_parsers(sub) -> None:
    add_command(
        sub,
        "theory",
        cmd_theory,
        "theory-stage figures and tables from a config",
        config="the theory stage's config",
        out="output folder",
    )

    add_command(
        sub,
        "simulate",
        cmd_simulate,
        "roofline-simulated sparsity sweep (the config's `simulation` section)",
        config="the simulation stage's config",
        out="CSV to write",
    )

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
