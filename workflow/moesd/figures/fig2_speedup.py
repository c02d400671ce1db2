"""Fig. 2: speedup against batch size with the target efficiency beside it, from this run's
measurements (composed by Eq. 4, end-to-end crosses), and its theory-only analog: the
uncalibrated roofline prediction of speedup and target efficiency for the paper's model pairs
and platforms (Sec. 4.2, Fig. 2 and Fig. 3 of arXiv 2505.19645)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from moesd.families import native
from moesd.figures.style import CLIPPED, band, error_bars, models_label, plt, save_figure, scale_to_points, sns, style
from moesd.paper import HEADLINE_LABEL


def paper_peak(gamma: int) -> float | None:
    """The paper's Table 2 peak speedup of its headline setting at GAMMA (None where it printed none)."""
    from moesd.paper import HEADLINE_DEVICE, paper_cell

    try:
        return float(paper_cell(HEADLINE_DEVICE, gamma=gamma)["speedup"])
    except IndexError:  # the paper printed gamma 2, 3 and 4 only
        return None


def speedup_figure(composed: pd.DataFrame, e2e: pd.DataFrame, stem: Path | None, device: str, reference_k: int):
    """Fig. 2: composed speedup against B (left axis, one line per dataset and temperature, sigma
    in the legend), target efficiency (right axis, grey), measured e2e speedups (crosses)."""
    style()
    table = native(composed, reference_k)
    models, gammas = list(dict.fromkeys(table["model"])), sorted(table["gamma"].unique())
    fig, axes = plt.subplots(
        len(models), len(gammas), figsize=(3.6 * len(gammas), 3.0 * len(models)), squeeze=False, sharex=True
    )
    for i, model in enumerate(models):
        for j, gamma in enumerate(gammas):
            ax = axes[i, j]
            part = table[(table["model"] == model) & (table["gamma"] == gamma)]
            for n, (key, rows) in enumerate(part.groupby(["dataset", "temperature"], sort=True)):
                rows = rows.sort_values("B")
                label = f"{key[0]}, T={key[1]:g} (sigma {rows['sigma'].iloc[0]:.2f})"
                ax.plot(rows["B"], rows["speedup"], marker="o", ms=3, color=f"C{n}", label=label)
                band(ax, rows, "B", "speedup", color=f"C{n}")
            measured = e2e[e2e["target"].isin(part["spec"]) & (e2e["gamma"] == gamma) & (e2e["K"] == e2e["K_native"])]
            for backend, marker in (("ours", "x"), ("vllm", "+")):
                rows = measured[measured["backend"] == backend]
                if not rows.empty:
                    label = f"end to end ({'measured' if backend == 'ours' else 'vLLM'})"
                    ax.scatter(rows["B"], rows["speedup"], marker=marker, color="k", zorder=5, label=label)
                    error_bars(ax, rows, "B", "speedup", color="k")
            ax.axhline(1, color="0.5", lw=0.8)
            printed = paper_peak(gamma)
            if printed is not None:  # the paper's Table 2 peak at this gamma, for scale (not the same models)
                ax.axhline(printed, color="0.3", ls=":", lw=1, label=f"paper peak (Table 2): {printed:.2f}")
            eff = part.drop_duplicates("B").sort_values("B")
            twin = ax.twinx()
            twin.plot(eff["B"], eff["target_efficiency"], ls="--", color="0.4", label="target efficiency")
            band(twin, eff, "B", "target_efficiency", color="0.4")
            scale_to_points(ax)
            scale_to_points(twin, bottom=0, top=1.05)
            twin.grid(False)
            ax.set_xscale("log", base=2)
            ax.set_title(f"{model} + {part['draft'].iloc[0]}, gamma={gamma}", fontsize=9)
            if j == 0:
                ax.set_ylabel("speedup T_AR / T_SD")
            if j == len(gammas) - 1:
                twin.set_ylabel("target efficiency T_T(B,1)/T_T(B,v)")
            else:
                twin.set_yticklabels([])
            if i == len(models) - 1:
                ax.set_xlabel("batch size B")
            if i == 0 and j == 0:
                ax.legend(fontsize=6, loc="upper right")
                twin.legend(fontsize=6, loc="lower left")
    fig.tight_layout()
    return save_figure(
        fig,
        stem,
        f"Fig. 2 analog. Speedup against batch size (lines, left axis), composed by Eq. 4 from this run's "
        f"measured T_T(B,1), T_T(B,v), T_D(B,1) and T_reject(B) ({table['statistic'].iloc[0]} of the repeats; "
        f"v = {int(table['verify_s'].iloc[0] - table['gamma'].iloc[0])} + gamma tokens verified) and sigma "
        f"({table['sigma_source'].iloc[0]}); target efficiency (dashed, right axis); crosses: end-to-end "
        f"T_AR/T_SD measured by the latency stage at the same gamma. Bands and bars: intervals from resampling "
        f"each point's raw repeats and the acceptance stage's prompts (moesd.bootstrap). {CLIPPED} Dotted: the paper's printed "
        f"peak at the panel's gamma ({HEADLINE_LABEL}, HumanEval, T=0), for scale: other models and hardware. "
        f"Device: {device}; "
        f"{table['dtype'].iloc[0]}, experts: {', '.join(sorted(set(table['expert_impl'])))}. "
        f"Models: {models_label(table)}.",
    )


def roofline_speedup_figure(table: pd.DataFrame, stem: Path | None):
    style()
    platforms = list(dict.fromkeys(table["platform"]))
    fig, axes = plt.subplots(2, len(platforms), figsize=(3.6 * len(platforms), 6.5), sharex=True, squeeze=False)
    for col, platform in enumerate(platforms):
        part = table[table["platform"] == platform]
        for row, metric in enumerate(("speedup", "target_efficiency")):
            ax = axes[row, col]
            sns.lineplot(
                part, x="B", y=metric, hue="pair", style="gamma", markers=True, ax=ax, legend=(row == 0 and col == 0)
            )
            ax.set_xscale("log")
            ax.set_xlabel("batch size B")
            if row == 0:
                ax.set_title(platform)
                ax.axhline(1.0, color="grey", lw=0.8)
        axes[0, col].set_ylabel("predicted speedup" if col == 0 else "")
        axes[1, col].set_ylabel("target efficiency T_T(B,1)/T_T(B,gamma)" if col == 0 else "")
    pairs = "; ".join(sorted({f"{r.target} + {r.draft}" for r in table.itertuples()}))
    return save_figure(
        fig,
        stem,
        f"Uncalibrated roofline prediction (no measurement): speedup (Eq. 3-4) and target efficiency "
        f"against batch size for {pairs}, on the paper's platforms with datasheet peaks "
        f"(data/hardware.yaml), bf16 weights, sigma = {table['sigma'].iloc[0]} (assumed, the paper's "
        f"Table 2 value for HumanEval, T = 0, gamma = 4). KV-cache traffic and rejection time ignored.",
    )
