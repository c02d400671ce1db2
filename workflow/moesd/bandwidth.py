"""Achieved memory bandwidth of the autoregressive step, from the latency stage's tables.

For a target's AR forward (s = 1) at batch size B:

    weight bytes = (V_dense + distinct experts per layer x V_exp) x bytes per parameter

with V_dense the parameters read whatever the routing and V_exp one routed expert summed over
the MoE layers (App. C.2, `ParamCount.dense_params` and `routed_expert_one`), and the distinct
experts the ones the latency stage counted at that very point. The achieved bandwidth is the
weight bytes over the step's time; its fraction is that over the run's measured read bandwidth
(env.json, the roofline's bandwidth), with the fraction of the copy bandwidth beside it. The KV
cache the step also reads is left out, so the fraction is a lower bound.
"""

from __future__ import annotations

import functools

import pandas as pd

from moesd.architectures import count_parameters
from moesd.hardware import BYTES_PER_PARAM
from moesd.models import checkpoint
from moesd.models.spec import parse_spec
from moesd.speedup import point_times


@functools.cache
def _counts(spec: str):
    """Parameter counts of SPEC's config (read once per spec: every batch size asks)."""
    return count_parameters(checkpoint.hf_config(parse_spec(spec)))


def weight_bytes(spec: str, distinct_experts: float, dtype: str) -> float:
    """Bytes of weights one forward reads: the dense part plus DISTINCT_EXPERTS routed experts
    per MoE layer (none for a dense model, whose tables hold NaN)."""
    counts = _counts(spec)
    experts = distinct_experts if counts.is_moe and pd.notna(distinct_experts) else 0.0
    return (counts.dense_params() + experts * counts.routed_expert_one) * BYTES_PER_PARAM[dtype]


def ar_bandwidth(
    forward: pd.DataFrame, bandwidth: float, copy_bandwidth: float = float("nan"), statistic: str = "median"
) -> pd.DataFrame:
    """Per target and batch size: the AR step's time, the weight bytes it read, the achieved
    bandwidth and its fraction of BANDWIDTH (byte/s, the run's read probe) and of COPY_BANDWIDTH."""
    steps = point_times(forward[(forward["role"] == "target") & (forward["s"] == 1)], statistic)
    rows = []
    for row in steps.itertuples():
        read = weight_bytes(row.spec, row.distinct_experts_mean, row.dtype)
        rows.append(
            {
                "model": row.model,
                "spec": row.spec,
                "K": row.K,
                "B": row.B,
                "dtype": row.dtype,
                "seconds": row.seconds,
                "distinct_experts": row.distinct_experts_mean,
                "weight_bytes": read,
                "achieved_bandwidth": read / row.seconds,
                "bandwidth": bandwidth,
                "bandwidth_fraction": read / row.seconds / bandwidth,
                "copy_bandwidth": copy_bandwidth,
                "copy_fraction": read / row.seconds / copy_bandwidth,
            }
        )
    return pd.DataFrame(rows)
