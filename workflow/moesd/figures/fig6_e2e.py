"""Fig. 6: end-to-end speedup T_AR / T_SD against batch size, MoE against dense, one row per
temperature (Sec. 4.2 and Fig. 6 of arXiv 2505.19645)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from moesd.figures.style import (
    CLIPPED,
    E2E_TIME,
    error_bars,
    models_label,
    plt,
    save_figure,
    scale_to_points,
    sns,
    style,
)


def e2e_figure(e2e: pd.DataFrame, stem: Path | None, device: str):
    """Fig. 6: measured end-to-end speedup against B per pair (and engine: vLLM dashed), one row
    per temperature; a vLLM K sweep's overridden K is Fig. 4's."""
    style()
    e2e = e2e[e2e["K"] == e2e["K_native"]]
    engines = e2e["backend"].nunique() > 1
    e2e = e2e.assign(line=e2e["name"] + (", " + e2e["backend"] if engines else ""))
    temps = sorted(e2e["temperature"].unique())
    fig, axes = plt.subplots(len(temps), 1, figsize=(5.0, 3.0 * len(temps)), squeeze=False, sharex=True)
    for ax, temp in zip(axes[:, 0], temps, strict=True):
        part = e2e[e2e["temperature"] == temp]
        sns.lineplot(part, x="B", y="speedup", hue="name", style="backend" if engines else None, marker="o", ax=ax)
        for n, name in enumerate(dict.fromkeys(part["name"])):  # seaborn's hue order: first appearance
            for _, rows in part[part["name"] == name].groupby("backend"):
                error_bars(ax, rows.sort_values("B"), "B", "speedup", color=f"C{n}")
        ax.axhline(1, color="0.5", lw=0.8)
        scale_to_points(ax)
        ax.set_xscale("log", base=2)
        ax.set_ylabel("end-to-end speedup T_AR / T_SD")
        ax.set_title(f"temperature {temp:g}, gamma {', '.join(map(str, sorted(part['gamma'].unique())))}", fontsize=9)
        ax.legend(fontsize=7)
    axes[-1, 0].set_xlabel("batch size B")
    sources = "; ".join(
        f"{n}: {s}" for n, s in e2e.drop_duplicates("line")[["line", "acceptance_source"]].itertuples(index=False)
    )
    engine = "Engines: ours (solid) and vLLM, the paper's engine (dashed), on the same prompts. " if engines else ""
    return save_figure(
        fig,
        stem,
        f"Fig. 6 analog. End-to-end speedup T_AR/T_SD measured by the latency stage (same prompts, batch size "
        f"and output length; {e2e['statistic'].iloc[0]} of the repeats; timed: {E2E_TIME[e2e['e2e_time'].iloc[0]]}; "
        f"{', '.join(sorted(e2e['batching'].unique()))} batching, T_SD per the AR run's token count). "
        f"{engine}Acceptance per pair: {sources}. Bars: intervals from resampling each point's repeats. {CLIPPED} "
        f"Targets: {models_label(e2e, 'name', 'target')}. Device: {device}.",
    )
