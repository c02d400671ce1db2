"""Fig. 1: how many experts a forward activates (Sec. 3 and Fig. 1 of arXiv 2505.19645).

- routing_figure (Fig. 1a/b measured): distinct experts activated per MoE layer against the
  tokens in a forward, next to Eq. 8, for real prompts and random token ids (routing.csv of the
  acceptance stage).
- active_experts_figure (Fig. 1a/b theory): N(t)/E (Eq. 8) for every real MoE config with the
  saturation threshold T_thres (Eq. 9) marked, and the same for the sparsity sweep.
- tokens_per_expert_figure (Fig. 1c): Eq. 10 normalised, T_exp / T, against rho for several T.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from moesd.figures.style import plt, save_figure, sns, style
from moesd.models.spec import parse_spec
from moesd.theory import expected_active_experts, tokens_per_expert


def _short(model: str, part: pd.DataFrame) -> str:
    """A panel title: the spec's short name (* where overrides are left out; the caption has
    them), and how it ran."""
    return f"{parse_spec(model).short} ({part['implementation'].iloc[0]})"


def routing_figure(table: pd.DataFrame, stem: Path | None):
    style()
    models = list(dict.fromkeys(table["model"]))
    modes = ["batch", "sequence"]
    fig, axes = plt.subplots(len(models), 2, figsize=(10, 3.8 * len(models)), squeeze=False, sharey="row")
    titles = {"batch": "1 token from each of t sequences", "sequence": "t tokens of one sequence"}
    for row, model in enumerate(models):
        part = table[table["model"] == model]
        n_experts = int(part["E"].iloc[0])
        for col, mode in enumerate(modes):
            ax = axes[row, col]
            data = part[part["mode"] == mode]
            sns.lineplot(data, x="tokens", y="distinct_experts", hue="inputs", errorbar=("pi", 50), marker="o", ax=ax)
            t = np.unique(np.geomspace(1, data["tokens"].max(), 100).round())
            k = int(part["K"].iloc[0])
            ax.plot(t, expected_active_experts(n_experts, k, t), "k--", lw=1, label="Eq. 8 (i.i.d.)")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("tokens through the router, t")
            ax.set_ylabel(f"distinct experts per layer (E = {n_experts}, K = {k})")
            ax.set_title(f"{_short(model, part)}\n{titles[mode]}", fontsize=9)
            ax.legend(fontsize=7)
    fig.tight_layout()
    implementation = ", ".join(sorted(set(table["implementation"])))
    return save_figure(
        fig,
        stem,
        "Measured distinct experts per MoE layer against the number of tokens in one forward (mean "
        "over layers and sequences, band: 25th-75th percentile), for real prompts and random token ids, "
        f"against Eq. 8's i.i.d. prediction (dashed). Models (* in a title: this spec's overrides): {', '.join(models)}; measured with {implementation} "
        "on this run's device (the run's env.json).",
    )


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
