"""The paper's tables from this run: the Tables 1-2 analog (peak speedup over batch size with
T_AR, T_SD, sigma and the batch size of the peak) and the Table 3 analog's Markdown (fit quality
against the number m of fitting points), Tables 1-3 of arXiv 2505.19645."""

from __future__ import annotations

import pandas as pd

from moesd.families import SETTING, native, with_platform
from moesd.figures.style import E2E_TIME
from moesd.paper import HEADLINE_DEVICE, HEADLINE_LABEL, HEADLINE_MODEL, paper_peaks
from moesd.speedup import peak_table


def _cell(row) -> str:
    return f"{row.t_ar * 1e3:.3g} / {row.t_sd * 1e3:.3g} / {row.sigma:.2f} / {row.speedup:.2f} (B={int(row.B_peak)})"


def peak_tables(composed: pd.DataFrame, e2e: pd.DataFrame, reference_k: int) -> tuple[pd.DataFrame, str]:
    """Tables 1-2 analog: the peak over B per platform, pair and setting, composed and end to end,
    laid out as the paper's: a row per platform, dataset and temperature, a column per gamma with
    the paper's cell beside (the paper's own platform where the run's is named as one, else the
    headline's)."""
    composed, e2e = (with_platform(t) for t in (composed, e2e))
    comp = peak_table(native(composed, reference_k), ["platform", "model", "draft", *SETTING]).assign(
        source="composed", unit="ms per token"
    )
    native_k = e2e[e2e["K"] == e2e["K_native"]]  # a vLLM K sweep's overridden K is Fig. 4's
    meas = peak_table(native_k.rename(columns={"name": "model"}), ["platform", "model", "backend", "draft", *SETTING])
    meas = meas.assign(source="e2e " + meas["backend"], unit="ms per run").drop(columns="backend")
    peaks = pd.concat([comp, meas], ignore_index=True)
    lines = [
        "# Tables 1-2 analog: peak speedup over batch size",
        "",
        "Cells: T_AR / T_SD / sigma / x (B of the peak). Composed rows: ms per decode step of B sequences "
        "(T_SD: per step-equivalent, Eq. 4 from the measured components); e2e rows: ms per run of the output length, "
        f"measured end to end ({E2E_TIME[e2e['e2e_time'].iloc[0]] if len(e2e) else 'none'}).",
        "",
    ]
    paper = paper_beside()
    lines += [
        "Beside each gamma, the paper's cell at the same dataset, temperature and gamma (Tables 1-2: "
        "T_AR / T_SD in the paper's unstated units / sigma / x; the paper prints no B of the peak): the paper's own "
        f"platform where the run's platform is named as one (2xA800, 2xH800, 4xA800, 4xL40), else {HEADLINE_LABEL}.",
        "",
    ]
    for source, part in peaks.groupby("source", sort=False):
        wide = part.assign(cell=[_cell(r) for r in part.itertuples(index=False)]).pivot_table(
            index=["platform", "model", "dataset", "temperature"], columns="gamma", values="cell", aggfunc="first",
            sort=False,
        )  # fmt: skip
        columns = []
        for gamma in wide.columns:
            columns += [f"gamma = {gamma}", f"paper, gamma = {gamma}"]
            wide[f"paper, gamma = {gamma}"] = [
                paper.get((p if (p, d, t, gamma) in paper else HEADLINE_DEVICE, d, t, gamma), "")
                for p, _, d, t in wide.index
            ]
        wide = wide.rename(columns={g: f"gamma = {g}" for g in wide.columns if not isinstance(g, str)})[columns]
        lines += [f"## {source}", "", wide.reset_index().to_markdown(index=False), ""]
    return peaks, "\n".join(lines)


def paper_beside() -> dict[tuple, str]:
    """The paper's Tables 1-2 cells of the Qwen2 pair, by (platform, dataset, temperature, gamma)."""
    rows = paper_peaks()
    rows = rows[rows["model"] == HEADLINE_MODEL]
    return {
        (r.device, r.dataset, float(r.temperature), int(r.gamma)): (
            f"{r.T_AR:g} / {r.T_SD:g} / {r.sigma:.2f} / {r.speedup:.2f}"
        )
        for r in rows.itertuples(index=False)
    }


TABLE3_COLUMNS = ["m", "stride", "mse_fit", "mse_all", "mape_heldout", "fit_seconds", "batch_sizes_involved"]


def table3_markdown(quality: pd.DataFrame, title: str) -> str:
    """The Table 3 analog as Markdown: one row per m (and per family and variant where present)."""
    columns = [c for c in ("family", "variant") if c in quality.columns] + TABLE3_COLUMNS
    header = (
        f"# Table 3 analog: fit quality against m ({title})\n\n"
        "MSE in squared speedup units on the m fitted points and on all points; MAPE on the held-out points.\n\n"
    )
    return header + quality[columns].to_markdown(index=False, floatfmt=".4g") + "\n"
