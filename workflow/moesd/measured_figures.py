"""The paper's figures and tables from this run's measurements: Fig. 2 (speedup and target
efficiency against B), Fig. 3 (target efficiency, MoE against dense), Fig. 4 (the sparsity grid
against the fitted Algorithm 1), Fig. 6 (end-to-end speedup, MoE against dense), the Tables 1-2
analog (peak speedup and its batch size) and the Table 3 analog (copied from the fit stage).

`moesd figures` writes them all; the notebooks call the same functions one figure at a time."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from moesd.fit_figures import sparsity_fit_figure
from moesd.io import write_csv, write_text
from moesd.plotting import plt, save_figure, sns, style
from moesd.speedup import SETTING, native, peak_table, sweep_family

FIGURES = ("fig2_speedup", "fig3_target_efficiency", "fig4_sparsity_fit", "fig6_e2e")


def device_label(env: dict) -> str:
    probe = env.get("hardware_probe", {})
    return f"{probe.get('device_name', 'unknown device')} ({probe.get('device', '?')}, {probe.get('threads', '?')} threads)"


def _setting_label(row) -> str:
    return f"{row.dataset}, T={row.temperature:g}"


def speedup_figure(composed: pd.DataFrame, e2e: pd.DataFrame, stem: Path | None, device: str, reference_k: int = 8):
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
            measured = e2e[e2e["target"].isin(part["spec"]) & (e2e["gamma"] == gamma)]
            if not measured.empty:
                ax.scatter(
                    measured["B"], measured["speedup"], marker="x", color="k", zorder=5, label="end to end (measured)"
                )
            ax.axhline(1, color="0.5", lw=0.8)
            eff = part.drop_duplicates("B").sort_values("B")
            twin = ax.twinx()
            twin.plot(eff["B"], eff["target_efficiency"], ls="--", color="0.4", label="target efficiency")
            twin.set_ylim(0, max(1.05, 1.05 * eff["target_efficiency"].max()))
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
        f"T_AR/T_SD measured by the latency stage at the same gamma. Device: {device}; "
        f"{table['dtype'].iloc[0]}, experts: {', '.join(sorted(set(table['expert_impl'])))}. "
        f"Models: {'; '.join(f'{m} = {s}' for m, s in table.drop_duplicates('model')[['model', 'spec']].itertuples(index=False))}.",
    )


def target_efficiency_figure(composed: pd.DataFrame, stem: Path | None, device: str, reference_k: int = 8):
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
        ax.set_xscale("log", base=2)
        ax.set_ylim(0, max(1.05, 1.05 * table["target_efficiency"].max()))  # shared y: every panel's values
        ax.set_xlabel("batch size B")
        ax.set_ylabel("target efficiency T_T(B,1)/T_T(B,v)")
        ax.set_title(f"gamma={gamma} (v={int(part['verify_s'].iloc[0])} tokens)", fontsize=9)
        ax.legend(fontsize=7)
    return save_figure(
        fig,
        stem,
        "Fig. 3 analog. Target efficiency T_T(B,1)/T_T(B,v) against batch size for the MoE and dense "
        f"targets, from this run's forward-time table ({table['statistic'].iloc[0]} of the repeats). "
        f"The paper: MoE rises then falls, dense only falls. Device: {device}; {table['dtype'].iloc[0]}.",
    )


def sparsity_figure(predictions: pd.DataFrame, stem: Path | None, device: str, curves: pd.DataFrame | None = None):
    """Fig. 4: the MoE family with the most K values, the first fitted variant."""
    family = sweep_family(predictions)
    variant = predictions["variant"].iloc[0]
    part = predictions[(predictions["family"] == family) & (predictions["variant"] == variant)]
    if curves is not None:
        curves = curves[(curves["family"] == family) & (curves["variant"] == variant)]
    return sparsity_fit_figure(
        part,
        stem,
        f"Fig. 4 analog. Sparsity sweep of {family} (num_experts_per_tok = K, E = {int(part['E'].iloc[0])}), "
        f"speedups composed from this run's measurements (dots; filled: the m = {int(part['in_fit'].sum())} fitted "
        f"on) against Algorithm 1 ({variant}) fitted by least squares (line); dashed: each panel's peak / sqrt(2). "
        f"Speedups are sigma-adjusted by sigma_(K=8)/sigma_K as in the paper; every K here shares one "
        f"sigma ({part['sigma_source'].iloc[0]}), so the factor is 1. Device: {device}.",
        curves,
    )


E2E_TIME = {"decode": "the decode without the prefill", "total": "the whole generation, prefill included"}


def e2e_figure(e2e: pd.DataFrame, stem: Path | None, device: str):
    """Fig. 6: measured end-to-end speedup against B per pair, one row per temperature."""
    style()
    temps = sorted(e2e["temperature"].unique())
    fig, axes = plt.subplots(len(temps), 1, figsize=(5.0, 3.0 * len(temps)), squeeze=False, sharex=True)
    for ax, temp in zip(axes[:, 0], temps, strict=True):
        part = e2e[e2e["temperature"] == temp]
        sns.lineplot(part, x="B", y="speedup", hue="name", marker="o", ax=ax)
        ax.axhline(1, color="0.5", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_ylabel("end-to-end speedup T_AR / T_SD")
        ax.set_title(f"temperature {temp:g}, gamma {', '.join(map(str, sorted(part['gamma'].unique())))}", fontsize=9)
        ax.legend(fontsize=7)
    axes[-1, 0].set_xlabel("batch size B")
    sources = "; ".join(
        f"{n}: {s}" for n, s in e2e.drop_duplicates("name")[["name", "acceptance_source"]].itertuples(index=False)
    )
    return save_figure(
        fig,
        stem,
        f"Fig. 6 analog. End-to-end speedup T_AR/T_SD measured by the latency stage (same prompts, batch size "
        f"and output length; {e2e['statistic'].iloc[0]} of the repeats; timed: {E2E_TIME[e2e['e2e_time'].iloc[0]]}; "
        f"{', '.join(sorted(e2e['batching'].unique()))} batching, T_SD per the AR run's token count). "
        f"Acceptance per pair: {sources}. "
        f"Device: {device}.",
    )


def _cell(row) -> str:
    return f"{row.t_ar * 1e3:.3g} / {row.t_sd * 1e3:.3g} / {row.sigma:.2f} / {row.speedup:.2f} (B={int(row.B_peak)})"


def peak_tables(composed: pd.DataFrame, e2e: pd.DataFrame, reference_k: int = 8) -> tuple[pd.DataFrame, str]:
    """Tables 1-2 analog: the peak over B per pair and setting, composed and end to end."""
    comp = peak_table(native(composed, reference_k), ["model", "draft", *SETTING]).assign(
        source="composed", unit="ms per token"
    )
    meas = peak_table(e2e.rename(columns={"name": "model"}), ["model", "draft", *SETTING])
    meas = meas.assign(source="e2e", unit="ms per run")
    peaks = pd.concat([comp, meas], ignore_index=True)
    lines = [
        "# Tables 1-2 analog: peak speedup over batch size",
        "",
        "Cells: T_AR / T_SD / sigma / x (B of the peak). Composed rows: ms per decode step of B sequences "
        "(T_SD: per step-equivalent, Eq. 4 from the measured components); e2e rows: ms per run of the output length, "
        f"measured end to end ({E2E_TIME[e2e['e2e_time'].iloc[0]] if len(e2e) else 'none'}).",
        "",
    ]
    for source, part in peaks.groupby("source", sort=False):
        wide = part.assign(cell=[_cell(r) for r in part.itertuples(index=False)]).pivot_table(
            index=["model", "dataset", "temperature"], columns="gamma", values="cell", aggfunc="first"
        )
        wide.columns = [f"gamma = {g}" for g in wide.columns]
        lines += [f"## {source}", "", wide.reset_index().to_markdown(index=False), ""]
    return peaks, "\n".join(lines)


def run(args) -> int:
    from moesd.config import load_config

    ref = load_config(args.config)["analysis"]["reference_k"]
    composed = pd.read_csv(args.speedup / "composed.csv")
    e2e = pd.read_csv(args.speedup / "e2e.csv")
    predictions = pd.read_csv(args.fit / "predictions.csv")
    device = device_label(json.loads(Path(args.env).read_text()))
    out = args.out
    speedup_figure(composed, e2e, out / "fig2_speedup", device, ref)
    target_efficiency_figure(composed, out / "fig3_target_efficiency", device, ref)
    sparsity_figure(predictions, out / "fig4_sparsity_fit", device, pd.read_csv(args.fit / "curves.csv"))
    e2e_figure(e2e, out / "fig6_e2e", device)
    peaks, markdown = peak_tables(composed, e2e, ref)
    write_csv(out / "tables_1_2.csv", peaks)
    write_text(out / "tables_1_2.md", markdown + "\n")
    print(f"figures {', '.join(FIGURES)} and tables_1_2 -> {out}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("figures", help="Figs. 2, 3, 4, 6 and the Tables 1-2 analog from the run's tables")
    p.add_argument("--config", required=True, type=Path, help="the run's analysis stage config")
    p.add_argument("--speedup", required=True, type=Path, help="folder of `moesd speedup` (composed.csv, e2e.csv)")
    p.add_argument("--fit", required=True, type=Path, help="folder of `moesd fit-run` (predictions.csv)")
    p.add_argument("--env", required=True, type=Path, help="the run's env.json (device in the captions)")
    p.add_argument("--out", required=True, type=Path, help="figures folder")
    p.set_defaults(func=run)
