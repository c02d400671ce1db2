"""The `theory` stage: figures and tables computed from the theory and the real architectures
alone (no measurement).

- active_experts: N(t)/E (Eq. 8) for every real MoE config, with the saturation threshold
  T_thres (Eq. 9) marked, and the same for the paper's sparsity sweep (K of Qwen2-57B changed).
- tokens_per_expert: Eq. 10 normalised, T_exp / T, against rho for several T (Fig. 1c).
- roofline_speedup: the uncalibrated roofline prediction of speedup and target efficiency
  against batch size for the paper's model pairs and platforms (Fig. 2/3 analog, theory only).
- saturation.csv, roofline_speedup.csv: the numbers behind the figures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from moesd.architectures import describe
from moesd.hardware import load_hardware
from moesd.io import write_csv
from moesd.plotting import plt, save_figure, sns, style
from moesd.predict import roofline_table
from moesd.theory import expected_active_experts, saturation_tokens, tokens_per_expert


def saturation_table(architectures, sweep_architecture, k_values, tau) -> pd.DataFrame:
    rows = []
    for name in architectures:
        pc = describe(name)
        if pc.is_moe:
            rows.append({"architecture": name, "E": pc.n_experts, "K": pc.top_k, "sweep": False})
    base = describe(sweep_architecture)
    rows += [{"architecture": sweep_architecture, "E": base.n_experts, "K": k, "sweep": True} for k in k_values]
    table = pd.DataFrame(rows)
    table["rho"] = table["K"] / table["E"]
    table["tau"] = tau
    table["T_thres"] = saturation_tokens(table["rho"].to_numpy(), tau).astype(int)
    return table


def active_experts_figure(table: pd.DataFrame, max_tokens: int, stem: Path | None):
    style()
    t = np.unique(np.geomspace(1, max_tokens, 200).round())
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, sweep, title in zip(axes, (False, True), ("real MoE configs", "sparsity sweep (K changed)"), strict=True):
        part = table[table["sweep"] == sweep]
        palette = sns.color_palette("viridis", len(part))
        for i, (color, row) in enumerate(zip(palette, part.itertuples(), strict=True)):
            label = f"{row.architecture} (K={row.K}/E={row.E})" if not sweep else f"K={row.K}, rho={row.rho:.3g}"
            line = ("-", "--", "-.")[i % 3]  # models with the same E and K overlap exactly
            ax.plot(t, expected_active_experts(row.E, row.K, t) / row.E, color=color, ls=line, label=label)
            ax.axvline(row.T_thres, color=color, ls=":", lw=1)
        ax.axhline(table["tau"].iloc[0], color="grey", ls="--", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("tokens through the router, t")
        ax.set_title(title)
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("activated experts N(t) / E")
    tau = table["tau"].iloc[0]
    return save_figure(
        fig,
        stem,
        f"Expected activated experts per layer N(t)/E (Eq. 8) against the number of tokens t; dotted "
        f"lines: saturation threshold T_thres (Eq. 9, tau = {tau}, dashed). Theory only: E and K from the "
        f"Hugging Face configs in data/architectures; right panel: {table[table.sweep].architecture.iloc[0]} "
        f"with num_experts_per_tok changed, as in the paper's sparsity sweep.",
    )


def tokens_per_expert_figure(tokens, stem: Path | None):
    style()
    rho = np.geomspace(1e-3, 1, 300)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for color, t in zip(sns.color_palette("mako", len(tokens)), tokens, strict=True):
        ax.plot(rho, tokens_per_expert(t, rho) / t, color=color, label=f"T = {t}")
    ax.set_xscale("log")
    ax.set_xlabel("sparsity rho = K / E")
    ax.set_ylabel("normalised tokens per expert, T_exp / T")
    ax.legend(fontsize=8)
    return save_figure(
        fig,
        stem,
        "Average tokens per activated expert (Eq. 10), normalised by the token count T, against the "
        "sparsity rho (the paper's Fig. 1c). It rises monotonically with rho for T > 1 (App. B): "
        "sparser MoE layers see fewer tokens per loaded expert. Theory only.",
    )


def roofline_speedup(pairs, platforms, sigma, gammas, batch_sizes, fit_options) -> pd.DataFrame:
    frames = []
    for pair in pairs:
        target, draft = describe(pair["target"]), describe(pair["draft"])
        for platform in platforms:
            hw = load_hardware(platform)
            table = roofline_table(
                target,
                draft,
                hw,
                sigma,
                gammas,
                batch_sizes,
                bytes_per_param=fit_options["bytes_per_param"],
                bandwidth_scope=fit_options["bandwidth_scope"],
                verify_tokens=fit_options["verify_tokens"],
            )
            frames.append(
                table.assign(pair=pair["name"], target=pair["target"], draft=pair["draft"], platform=hw.label)
            )
    return pd.concat(frames, ignore_index=True)


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


def run(config: dict, out_dir: Path) -> list[Path]:
    """Write every theory figure and table into OUT_DIR; return the paths written."""
    theory, prediction = config["theory"], config["prediction"]
    out_dir.mkdir(parents=True, exist_ok=True)
    sat = saturation_table(theory["architectures"], theory["sweep_architecture"], theory["k_values"], theory["tau"])
    write_csv(out_dir / "saturation.csv", sat)
    active_experts_figure(sat, theory["max_tokens"], out_dir / "active_experts")
    tokens_per_expert_figure(theory["tokens_per_expert_t"], out_dir / "tokens_per_expert")
    roof = roofline_speedup(
        prediction["pairs"],
        prediction["platforms"],
        prediction["sigma"],
        prediction["gammas"],
        prediction["batch_sizes"],
        config["fit"],
    )
    write_csv(out_dir / "roofline_speedup.csv", roof)
    roofline_speedup_figure(roof, out_dir / "roofline_speedup")
    return sorted(out_dir.iterdir())
