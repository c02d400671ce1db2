"""Figures of the fit: the sparsity grid of measured (or simulated) speedups against Algorithm 1's
prediction (the paper's Fig. 4), one panel per K and gamma."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from moesd.plotting import plt, save_figure, style


def sparsity_fit_figure(predictions: pd.DataFrame, stem: Path | None, caption: str, curves: pd.DataFrame | None = None):
    """Panels: rows gamma, columns K. Dots: data (filled = in the fit subset); line: prediction
    (on CURVES' dense batch grid when given, else at the data's batch sizes); dashed: the panel's
    peak x over sqrt(2), the paper's marker of the useful batch range."""
    style()
    ks = sorted(predictions["K"].unique())
    gammas = sorted(predictions["gamma"].unique())
    fig, axes = plt.subplots(
        len(gammas), len(ks), figsize=(2.6 * len(ks), 2.4 * len(gammas)), sharex=True, squeeze=False
    )
    for i, gamma in enumerate(gammas):
        for j, k in enumerate(ks):
            ax = axes[i, j]
            part = predictions[(predictions["K"] == k) & (predictions["gamma"] == gamma)].sort_values("B")
            line = part if curves is None else curves[(curves["K"] == k) & (curves["gamma"] == gamma)].sort_values("B")
            ax.plot(line["B"], line["speedup_pred"], color="C0", label="Algorithm 1")
            held, used = part[~part["in_fit"]], part[part["in_fit"]]
            ax.scatter(held["B"], held["speedup"], s=12, facecolors="none", edgecolors="C1", label="held out")
            ax.scatter(used["B"], used["speedup"], s=16, color="C3", label="fitted on")
            peak = part["speedup"].max()
            ax.axhline(peak / np.sqrt(2), color="saddlebrown", ls="--", lw=1, label="peak / sqrt(2)")
            ax.set_xscale("log")
            ax.set_title(f"K={k}, gamma={gamma}", fontsize=9)
            if i == len(gammas) - 1:
                ax.set_xlabel("batch size B")
            if j == 0:
                ax.set_ylabel("speedup")
    axes[0, 0].legend(fontsize=6, loc="best")
    return save_figure(fig, stem, caption)
