"""Fig. 3: target efficiency T_T(B, 1) / T_T(B, v) against batch size, MoE against dense (Sec. 2.3
and Sec. 4.2 of arXiv 2505.19645: the MoE's efficiency rises then falls, the dense model's only
falls)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from moesd.families import native
from moesd.figures.style import CLIPPED, band, models_label, plt, save_figure, scale_to_points, sns, style


def target_efficiency_figure(composed: pd.DataFrame, stem: Path | None, device: str, reference_k: int):
    """Fig. 3: target efficiency against B, MoE against dense, one panel per gamma."""
    style()
    table = native(composed, reference_k).drop_duplicates(["model", "gamma", "B"])
    gammas = sorted(table["gamma"].unique())
    fig, axes = plt.subplots(1, len(gammas), figsize=(3.6 * len(gammas), 3.0), squeeze=False, sharey=True)
    for ax, gamma in zip(axes[0], gammas, strict=True):
        part = table[table["gamma"] == gamma].assign(
            target=lambda f: f["model"] + np.where(f["E"] > 1, " (MoE, K=" + f["K"].astype(str) + ")", " (dense)")
        )
        sns.lineplot(part, x="B", y="target_efficiency", hue="target", marker="o", ax=ax)
        for n, target in enumerate(dict.fromkeys(part["target"])):  # seaborn's hue order: first appearance
            band(ax, part[part["target"] == target].sort_values("B"), "B", "target_efficiency", color=f"C{n}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size B")
        ax.set_ylabel("target efficiency T_T(B,1)/T_T(B,v)")
        ax.set_title(f"gamma={gamma} (v={int(part['verify_s'].iloc[0])} tokens)", fontsize=9)
        ax.legend(fontsize=7)
    scale_to_points(axes[0], bottom=0, top=1.05)  # the panels share y: every panel's values
    return save_figure(
        fig,
        stem,
        "Fig. 3 analog. Target efficiency T_T(B,1)/T_T(B,v) against batch size for the MoE and dense "
        f"targets, from this run's forward-time table ({table['statistic'].iloc[0]} of the repeats; bands: "
        f"intervals from resampling the raw repeats). {CLIPPED} "
        f"The paper: MoE rises then falls, dense only falls. Device: {device}; {table['dtype'].iloc[0]}. "
        f"Models: {models_label(table)}.",
    )
