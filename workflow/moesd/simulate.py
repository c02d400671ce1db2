"""A roofline-simulated sparsity sweep: the paper's Fig. 4 / App. C design (K x gamma x B on the
sweep architecture) with speedups from the uncalibrated roofline (moesd.predict) instead of a
GPU. It lets the theory stage exercise Algorithm 1's fit and the Table 3 analysis end to end
without measurements; every row says `source = roofline simulation`.
"""

from __future__ import annotations

import pandas as pd

from moesd.architectures import describe
from moesd.hardware import load_hardware
from moesd.predict import roofline_table


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
