"""Predicted speedup per batch size: the uncalibrated roofline, or Algorithm 1 with fitted
parameters.

Uncalibrated roofline (no measurement needed): each part of a forward costs the larger of its
weight traffic over the bandwidth and its FLOPs over the peak (Eq. 1), summed over the parts
the way Algorithm 1 splits them:
    dense part (everything but routed experts): max(V_dense b / BW, 2 t V_dense_mm / F)
    routed experts: N(t) experts (Eq. 8), each max(V_exp b / BW, 2 T_exp V_exp / F) (Eq. 10)
    draft: max(V_draft b / BW_1, 2 t V_draft_mm / F_1) on one device
and Eq. 3-4 turn the stage times into a speedup (rejection sampling and the KV cache are left
out, as the paper's footnote does for the cache).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from moesd.architectures import ParamCount
from moesd.fit import compute_speedup, stage_times
from moesd.hardware import Hardware
from moesd.theory import expected_active_experts, speedup, target_efficiency, tokens_per_expert, verified_tokens


def forward_time(model: ParamCount, tokens, bandwidth: float, flops: float, bytes_per_param: float = 2.0):
    """Roofline time (s) of one forward of MODEL over TOKENS tokens (all sequences together)."""
    t = np.asarray(tokens, float)
    dense_read = model.dense_params("non_routed") * bytes_per_param / bandwidth
    dense_mm = model.flops_per_token / 2 - model.top_k * model.routed_expert_one
    time = np.maximum(dense_read, 2 * t * dense_mm / flops)
    if model.is_moe:
        n = expected_active_experts(model.n_experts, model.top_k, t)
        per_expert = tokens_per_expert(t, model.top_k / model.n_experts)
        expert_read = model.routed_expert_one * bytes_per_param / bandwidth
        time = time + n * np.maximum(expert_read, 2 * per_expert * model.routed_expert_one / flops)
    return time


def _gamma_rows(batch_sizes, gamma, sigma, t1, tg, td, value) -> pd.DataFrame:
    """One gamma's rows: stage times per B, target efficiency and the predicted speedup."""
    return pd.DataFrame(
        {
            "B": np.asarray(batch_sizes).astype(int),
            "gamma": gamma,
            "sigma": sigma,
            "t_target_1": t1,
            "t_target_gamma": tg,
            "t_draft_1": td,
            "target_efficiency": target_efficiency(t1, tg),
            "speedup": value,
        }
    )


def roofline_table(
    target: ParamCount,
    draft: ParamCount,
    hardware: Hardware,
    sigma: float,
    gammas,
    batch_sizes,
    *,
    bytes_per_param: float = 2.0,
    bandwidth_scope: str = "aggregate",
    verify_tokens: str = "gamma",
) -> pd.DataFrame:
    """Uncalibrated roofline speedup, one row per (gamma, B)."""
    verified_tokens(0, verify_tokens)  # an unknown choice fails before any work
    bw, fl = hardware.target_bandwidth(bandwidth_scope), hardware.target_flops(bandwidth_scope)
    rows = []
    for gamma in gammas:
        B = np.asarray(batch_sizes, float)
        t1 = forward_time(target, B, bw, fl, bytes_per_param)
        tg = forward_time(target, B * verified_tokens(gamma, verify_tokens), bw, fl, bytes_per_param)
        td = forward_time(draft, B, hardware.bandwidth, hardware.flops, bytes_per_param)
        rows.append(_gamma_rows(B, gamma, sigma, t1, tg, td, speedup(t1, tg, td, 0.0, sigma, gamma)))
    return pd.concat(rows, ignore_index=True).assign(model="roofline")


def fitted_table(
    params_file: str | Path, sigma: float, gammas, batch_sizes, n_experts=None, top_k=None
) -> pd.DataFrame:
    """Algorithm 1 with the parameters a `moesd fit` run stored in PARAMS_FILE."""
    stored = json.loads(Path(params_file).read_text())
    params = stored["params"]
    knee = stored.get("ridge_tokens", stored["ridge_point"])  # RP in tokens (fit.knee_tokens)
    e = n_experts or stored["target_experts"]
    k = top_k or stored["target_top_k"]
    rows = []
    for gamma in gammas:
        B = np.asarray(batch_sizes, float)
        ar, verify, draft, _ = stage_times(params, B, gamma, k, e, knee, stored["verify_tokens"])
        value = compute_speedup(params, B, gamma, k, e, sigma, knee, stored["variant"], stored["verify_tokens"])
        rows.append(_gamma_rows(B, gamma, sigma, ar, verify, draft, value))
    return pd.concat(rows, ignore_index=True).assign(model=f"fitted ({stored['variant']})")


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Per gamma: the peak speedup and its batch size, and the break-even batch size (the
    largest B of the grid where SD still pays, speedup >= 1); plus the best gamma per B."""
    rows = []
    for gamma, group in table.groupby("gamma"):
        peak = group.loc[group["speedup"].idxmax()]
        paying = group[group["speedup"] >= 1.0]
        rows.append(
            {
                "gamma": gamma,
                "peak_speedup": peak["speedup"],
                "peak_B": int(peak["B"]),
                "break_even_B": int(paying["B"].max()) if len(paying) else None,
            }
        )
    return pd.DataFrame(rows)


def best_gamma(table: pd.DataFrame) -> pd.DataFrame:
    idx = table.groupby("B")["speedup"].idxmax()
    return table.loc[idx, ["B", "gamma", "speedup"]].rename(columns={"gamma": "best_gamma"}).reset_index(drop=True)
