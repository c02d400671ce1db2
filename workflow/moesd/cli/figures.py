"""Command of the figures stage (workflow/rules/figures.smk): `moesd figures` draws Figs. 2, 3, 4
and 6 and writes the Tables 1-2 analog from the run's speedup and fit tables (moesd.figures)."""

from __future__ import annotations

import json
from pathlib import Path

from moesd.cli.args import ANALYSIS, add_command


def cmd_figures(args) -> int:
    from moesd.config import load_config
    from moesd.families import one_platform
    from moesd.figures import MEASURED_FIGURES
    from moesd.figures.fig2_speedup import speedup_figure
    from moesd.figures.fig3_efficiency import target_efficiency_figure
    from moesd.figures.fig4_sparsity import sparsity_figure
    from moesd.figures.fig6_e2e import e2e_figure
    from moesd.figures.style import device_label
    from moesd.figures.tables import peak_tables
    from moesd.io import read_table, write_csv, write_text
    from moesd.latency.tables import missing_note

    analysis = load_config(args.config)["analysis"]
    ref = analysis["reference_k"]
    # the figures draw one device's curves (the reference platform's); Tables 1-2 hold every platform
    all_composed = read_table(args.speedup / "composed.csv", "composed")
    all_e2e = read_table(args.speedup / "e2e.csv", "e2e")
    composed = one_platform(all_composed, analysis["reference_platform"])
    e2e = one_platform(all_e2e, analysis["reference_platform"])
    predictions = read_table(args.fit / "predictions.csv", "predictions")
    device = device_label(json.loads(Path(args.env).read_text()))
    out = args.out
    speedup_figure(composed, e2e, out / "fig2_speedup", device, ref)
    target_efficiency_figure(composed, out / "fig3_target_efficiency", device, ref)
    curves = read_table(args.fit / "curves.csv", "curves")
    sparsity_figure(predictions, out / "fig4_sparsity_fit", device, ref, curves, e2e, analysis["fit_temperature"])
    e2e_figure(e2e, out / "fig6_e2e", device)
    peaks, markdown = peak_tables(all_composed, all_e2e, ref)
    write_csv(out / "tables_1_2.csv", peaks)
    missing = args.speedup / "missing.csv"
    note = missing_note(read_table(missing) if missing.is_file() and missing.stat().st_size > 1 else None)
    for name in MEASURED_FIGURES if note else ():  # the captions say which points the curves lack
        caption = (out / name).with_suffix(".caption.md")
        write_text(caption, caption.read_text().rstrip("\n") + f" Missing points: {note}\n")
    write_text(out / "tables_1_2.md", markdown + (f"\nMissing points: {note}\n" if note else "\n"))
    print(f"figures {', '.join(MEASURED_FIGURES)} and tables_1_2 -> {out}")
    return 0


def cmd_plot_engines(args) -> int:
    from moesd.families import one_platform
    from moesd.figures.engines import engines_figure, engines_markdown, engines_table
    from moesd.figures.style import device_label
    from moesd.io import read_table, write_csv, write_text

    e2e = one_platform(read_table(args.e2e, "e2e"))  # one platform's engines side by side (the first)
    device = device_label(json.loads(Path(args.env).read_text()))
    table = engines_table(e2e)
    engines_figure(e2e, table, args.out, device)
    write_csv(args.out.with_suffix(".csv"), table)
    write_text(args.out.with_suffix(".md"), engines_markdown(table, e2e))
    print(table.to_string(index=False, float_format="%.3f"))
    return 0


def add_parsers(sub) -> None:
    add_command(
        sub,
        "figures",
        cmd_figures,
        "Figs. 2, 3, 4, 6 and the Tables 1-2 analog from the run's tables",
        config=ANALYSIS,
        speedup="folder of `moesd speedup` (composed.csv, e2e.csv)",
        fit="folder of `moesd fit-run` (predictions.csv, curves.csv)",
        env="the run's env.json (device in the captions)",
        out="figures folder",
    )

    p = sub.add_parser("plot-engines", help="e2e speedup per batch size: our engine against vLLM (figure and table)")
    p.add_argument("e2e", type=Path, help="the speedup stage's e2e.csv (both backends)")
    p.add_argument("--env", required=True, type=Path, help="the run's env.json (device in the caption)")
    p.add_argument("--out", required=True, type=Path, help="path stem: STEM.png, .pdf, .csv, .md")
    p.set_defaults(func=cmd_plot_engines)
