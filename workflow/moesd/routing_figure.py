"""Fig. 1 (a/b) from measurements: distinct experts activated per MoE layer against the tokens in
a forward, next to Eq. 8, for real prompts and random token ids (routing.csv of the acceptance
stage)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from moesd.plotting import plt, save_figure, sns, style


def _short(model: str, part: pd.DataFrame) -> str:
    """A panel title: the spec without its overrides (the caption has them), and how it ran."""
    kind, _, rest = model.partition(":")
    name, _, overrides = rest.partition(":")
    label = f"{kind}:{name}" + ("*" if overrides else "")  # *: overridden config, spelled out in the caption
    return f"{label} ({part['implementation'].iloc[0]})"


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
            ax.plot(t, n_experts * (1 - ((n_experts - k) / n_experts) ** t), "k--", lw=1, label="Eq. 8 (i.i.d.)")
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


def run(args) -> int:
    table = pd.read_csv(args.routing)
    if table.empty:
        raise ValueError(f"{args.routing}: no routing measurements (no MoE target in the run)")
    routing_figure(table, Path(args.out))
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("plot-routing", help="Fig. 1 (a/b): measured distinct experts against Eq. 8")
    p.add_argument("routing", type=Path, help="routing.csv of the acceptance stage")
    p.add_argument("--out", required=True, type=Path, help="figure path stem")
    p.set_defaults(func=run)
