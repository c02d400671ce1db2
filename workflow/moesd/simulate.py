"""Tables computed from the theory and the real architectures alone (no measurement), for the
theory stage:

- saturation_table: E, K, rho and the saturation threshold T_thres (Eq. 9) of every real MoE
  config and of the paper's sparsity sweep (K of the sweep architecture changed).
- roofline_speedup: the uncalibrated roofline prediction of speedup and target efficiency against
  batch size for model pairs and platforms (Fig. 2/3 analog, theory only).
- roofline_sweep: the paper's Fig. 4 / App. C design (K x gamma x B on the sweep architecture)
  with speedups from the uncalibrated roofline (moesd.predict) instead of a GPU. It lets the
  theory stage exercise Algorithm 1's fit and the Table 3 analysis end to end without
  measurements; every row says `source = roofline simulation`.
"""

from __future__ import annotations

import pandas as pd

from moesd.architectures import describe
from moesd.hardware import load_hardware
from moesd.predict import roofline_table
from moesd.theory import saturation_tokens


def roofline_sweep(
    target: str,
    draft: str,
    platform: str,
    sigma: float,
    k_values,
    gammas,
    batch_sizes,
    *,
    bytes_per_param: float = 2.0,
    bandwidth_scope: str = "aggregate",
    verify_tokens: str = "gamma",
) -> pd.DataFrame:
    """One row per (K, gamma, B) with the columns `moesd fit` reads (B, gamma, K, E, sigma,
    speedup) and the simulated stage times."""
    hardware = load_hardware(platform)
    draft_pc = describe(draft)
    frames = []
    for k in k_values:
        target_pc = describe(target, {"num_experts_per_tok": k})
        table = roofline_table(
            target_pc,
            draft_pc,
            hardware,
            sigma,
            gammas,
            batch_sizes,
            bytes_per_param=bytes_per_param,
            bandwidth_scope=bandwidth_scope,
            verify_tokens=verify_tokens,
        )
        frames.append(table.assign(K=k, E=target_pc.n_experts))
    sweep = pd.concat(frames, ignore_index=True)
    return sweep.assign(
        target=target, draft=draft, hardware=hardware.label, source="roofline simulation", t_reject=0.0
    ).drop(columns="model")


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
