"""Our engine beside vLLM, the paper's engine: the end-to-end speedup T_AR / T_SD against batch
size of every pair both decoded (same prompts in the same order, batch sizes, output length and
machine), one panel per temperature, and the table of both engines' T_AR, T_SD, sigma and
speedup per batch size with vLLM's speedup over ours."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from moesd.figures.style import CLIPPED, E2E_TIME, error_bars, plt, save_figure, scale_to_points, style

ROW = ["name", "target", "draft", "dataset", "temperature", "gamma", "batching", "B"]  # like with like
STYLES = {"ours": {"ls": "-", "marker": "o"}, "vllm": {"ls": "--", "marker": "s"}}


def engines_table(e2e: pd.DataFrame) -> pd.DataFrame:
    """Per pair, setting and B decoded by both engines at the target's own K: T_AR, T_SD (ms per
    batch), sigma and speedup of each, and vllm_over_ours = vLLM's speedup / ours."""
    native = e2e[e2e["K"] == e2e["K_native"]]
    ours, vllm = (native[native["backend"] == b] for b in ("ours", "vllm"))
    values = ["t_ar", "t_sd", "sigma", "speedup"]
    both = ours[ROW + values].merge(vllm[ROW + values], on=ROW, suffixes=("_ours", "_vllm"))
    for side in ("ours", "vllm"):
        both[f"t_ar_{side}"] *= 1e3
        both[f"t_sd_{side}"] *= 1e3
    both["vllm_over_ours"] = both["speedup_vllm"] / both["speedup_ours"]
    return both.sort_values(["name", "temperature", "B"], ignore_index=True)


def engines_markdown(table: pd.DataFrame, e2e: pd.DataFrame) -> str:
    shown = table.drop(columns=["target", "draft", "dataset", "gamma"]).rename(
        columns=lambda c: c.replace("t_ar", "T_AR ms").replace("t_sd", "T_SD ms").replace("_", " ")
    )
    timed = E2E_TIME[e2e["e2e_time"].iloc[0]] if len(e2e) else "none"
    return "\n".join(
        [
            "# End-to-end speedup: our engine against vLLM",
            "",
            f"Same prompts, batch sizes and output length on the same machine; ms per batch of B sequences; "
            f"timed: {timed}; {e2e['statistic'].iloc[0] if len(e2e) else ''} of the repeats. "
            "vllm over ours: vLLM's speedup divided by ours.",
            "",
            shown.to_markdown(index=False, floatfmt=".3g"),
            "",
        ]
    )


def engines_figure(e2e: pd.DataFrame, table: pd.DataFrame, stem: Path | None, device: str):
    """Speedup against B per pair of TABLE (engines_table), our engine (solid) against vLLM
    (dashed), a panel per temperature."""
    style()
    native = e2e[(e2e["K"] == e2e["K_native"]) & e2e["name"].isin(set(table["name"]))]
    if native.empty:
        raise ValueError("e2e table: no pair decoded by both engines (latency.e2e.backends: [ours, vllm])")
    temps = sorted(native["temperature"].unique())
    fig, axes = plt.subplots(1, len(temps), figsize=(4.2 * len(temps), 3.2), squeeze=False, sharey=True)
    for ax, temp in zip(axes[0], temps, strict=True):
        part = native[native["temperature"] == temp]
        for n, name in enumerate(dict.fromkeys(part["name"])):
            for backend, look in STYLES.items():
                rows = part[(part["name"] == name) & (part["backend"] == backend)].sort_values("B")
                if rows.empty:
                    continue
                ax.plot(rows["B"], rows["speedup"], color=f"C{n}", label=f"{name}, {backend}", **look)
                error_bars(ax, rows, "B", "speedup", color=f"C{n}")
        ax.axhline(1, color="0.5", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size B")
        ax.set_title(f"temperature {temp:g}, gamma {', '.join(map(str, sorted(part['gamma'].unique())))}", fontsize=9)
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("end-to-end speedup T_AR / T_SD")
    scale_to_points(axes[0])  # the panels share y
    fig.tight_layout()
    return save_figure(
        fig,
        stem,
        "End-to-end speedup T_AR/T_SD against batch size: our engine (solid) and vLLM, the paper's engine "
        "(dashed), on the same prompts in the same order, batch sizes and output length, on the same machine. "
        f"Timed: {E2E_TIME[native['e2e_time'].iloc[0]]}; {native['statistic'].iloc[0]} of the repeats; bars: "
        f"intervals from resampling each point's repeats. {CLIPPED} vLLM's continuous batching admits at most B sequences "
        f"at a time. Pairs: {'; '.join(f'{r.name} = {r.target} + {r.draft}' for r in native.drop_duplicates('name').itertuples())}. "
        f"Device: {device}.",
    )
