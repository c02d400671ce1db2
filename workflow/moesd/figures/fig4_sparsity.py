"""Fig. 4: the sparsity grid of measured (or roofline-simulated) speedups against Algorithm 1's
prediction, one panel per K and gamma, with each panel's peak / sqrt(2) marked (Sec. 4.3 and
Fig. 4 of arXiv 2505.19645)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from moesd.families import sweep_family
from moesd.figures.style import plt, save_figure, style


def sparsity_fit_figure(
    predictions: pd.DataFrame,
    stem: Path | None,
    caption: str,
    curves: pd.DataFrame | None = None,
    measured: pd.DataFrame | None = None,
):
    """Panels: rows gamma, columns K. Dots: data (filled = in the fit subset); line: prediction
    (on CURVES' dense batch grid when given, else at the data's batch sizes); dashed: the panel's
    peak x over sqrt(2), the paper's marker of the useful batch range; crosses: MEASURED end-to-end
    speedups of a K sweep at that K and gamma (columns K, gamma, B, speedup, backend)."""
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
            if measured is not None:
                for backend, marker in (("vllm", "+"), ("ours", "x")):
                    rows = measured[
                        (measured["K"] == k) & (measured["gamma"] == gamma) & (measured["backend"] == backend)
                    ]
                    if not rows.empty:
                        label = f"end to end, {backend}"
                        ax.scatter(rows["B"], rows["speedup"], marker=marker, color="k", s=20, label=label)
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


def k_sweep_e2e(e2e: pd.DataFrame, temperature: float) -> pd.DataFrame:
    """End-to-end rows of every pair measured at more than one K (a vLLM K sweep: Fig. 4 as the
    paper measured it) at TEMPERATURE, sigma-adjusted as the paper's Fig. 4: speedup x
    sigma_(native K) / sigma_K of the same pair, engine, setting and B."""
    rows = e2e[e2e["temperature"] == temperature]
    swept = rows.groupby(["name", "backend"])["K"].transform("nunique") > 1
    rows = rows[swept]
    keys = ["name", "backend", "dataset", "temperature", "gamma", "B"]
    native = rows[rows["K"] == rows["K_native"]][keys + ["sigma"]].rename(columns={"sigma": "sigma_native"})
    rows = rows.merge(native, on=keys, how="left")
    return rows.assign(speedup=rows["speedup"] * rows["sigma_native"] / rows["sigma"])


def sparsity_figure(
    predictions: pd.DataFrame,
    stem: Path | None,
    device: str,
    reference_k: int,
    curves: pd.DataFrame | None = None,
    e2e: pd.DataFrame | None = None,
    temperature: float = 0.0,
):
    """Fig. 4: the MoE family with the most K values, the first fitted variant, with the end-to-end
    K sweeps of E2E at TEMPERATURE where the run has one."""
    family = sweep_family(predictions)
    variant = predictions["variant"].iloc[0]
    measured = k_sweep_e2e(e2e, temperature) if e2e is not None and len(e2e) else pd.DataFrame(columns=["name"])
    part = predictions[(predictions["family"] == family) & (predictions["variant"] == variant)]
    if curves is not None:
        curves = curves[(curves["family"] == family) & (curves["variant"] == variant)]
    return sparsity_fit_figure(
        part,
        stem,
        f"Fig. 4 analog. Sparsity sweep of {family} (num_experts_per_tok = K, E = {int(part['E'].iloc[0])}), "
        f"speedups composed from this run's measurements (dots; filled: the m = {int(part['in_fit'].sum())} fitted "
        f"on) against Algorithm 1 ({variant}) fitted by least squares (line); dashed: each panel's peak / sqrt(2). "
        f"Speedups are sigma-adjusted by sigma_(K={reference_k})/sigma_K as in the paper; every K here shares one "
        f"sigma ({part['sigma_source'].iloc[0]}), so the factor is 1. "
        + (
            f"Crosses: end-to-end speedups of the K sweep{'s' if measured['name'].nunique() > 1 else ''} "
            f"{', '.join(sorted(set(measured['name'])))} (target {measured['target'].iloc[0]}, K through vLLM's "
            f"hf_overrides; x ours, + vLLM), sigma-adjusted by their own sigma at the native K. "
            if len(measured)
            else ""
        )
        + f"Device: {device}.",
        curves,
        measured if len(measured) else None,
    )
