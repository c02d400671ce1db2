"""Uncertainty by resampling the raw repeats: each measured point's timed repeats are drawn with
replacement, every derived number (composed speedup, target efficiency, end-to-end speedup) is
recomputed on each resample, and its interval is the percentile range of the resamples. The
replicates are kept as tables, so that the claims stage can ask how often each verdict survives
a resample (its support).

What is resampled: the latency stage's repeats (T_T, T_D, T_reject, and the end-to-end runs'
repeats). What is not: sigma, which the acceptance stage measured once over its prompts (the
intervals are those of the timing noise at the measured sigma).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

REPEAT_VALUES = ("seconds", "prefill_seconds")  # values of one timed repeat, drawn together


def resample_repeats(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """FRAME with each point's repeat values drawn with replacement from that point's own repeats
    (the same number of repeats, the repeat labels kept; the values of one repeat stay together)."""
    values = [c for c in REPEAT_VALUES if c in frame.columns]
    if frame.empty or not values:
        return frame
    keys = [c for c in frame.columns if c not in ("repeat", *values)]
    group = frame.groupby(keys, dropna=False, sort=False).ngroup().to_numpy()
    order = np.argsort(group, kind="stable")  # rows of one point next to each other
    grouped = group[order]
    starts = np.searchsorted(grouped, grouped, side="left")
    sizes = np.bincount(group)[grouped]
    drawn = order[starts + (rng.random(len(order)) * sizes).astype(int)]
    out = frame.copy()
    for column in values:
        column_values = frame[column].to_numpy()
        resampled = column_values.copy()
        resampled[order] = column_values[drawn]
        out[column] = resampled
    return out


def replicates(compute, tables: dict[str, pd.DataFrame], keys: list[str], columns: list[str], n: int, seed: int):
    """COMPUTE(**resampled TABLES) N times; the KEYS and COLUMNS of each result, with `replicate`."""
    rng = np.random.default_rng(seed)
    parts = []
    for i in range(n):
        result = compute(**{name: resample_repeats(table, rng) for name, table in tables.items()})
        parts.append(result[keys + columns].assign(replicate=i))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*keys, *columns, "replicate"])


def with_intervals(table: pd.DataFrame, reps: pd.DataFrame, keys: list[str], columns: list[str], level: float):
    """TABLE with COLUMN_ci_low / COLUMN_ci_high: the central LEVEL percentile range of REPS."""
    tail = (1 - level) / 2
    bounds = reps.groupby(keys, dropna=False)[columns].quantile([tail, 1 - tail]).unstack()
    renamed = {}
    for column in columns:
        renamed[(column, tail)] = f"{column}_ci_low"
        renamed[(column, 1 - tail)] = f"{column}_ci_high"
    bounds.columns = [renamed[c] for c in bounds.columns]
    out = table.drop(columns=[c for c in bounds.columns if c in table.columns])
    return out.merge(bounds.reset_index(), on=keys, how="left")


def replicate_tables(table: pd.DataFrame, reps: pd.DataFrame, keys: list[str]):
    """TABLE once per replicate of REPS, its value columns replaced by the replicate's: the
    evidence a verdict is recomputed on. Yields (replicate, table)."""
    if table.duplicated(keys).any():
        raise ValueError(f"the columns {', '.join(keys)} do not identify one row each: cannot replace values")
    columns = [c for c in reps.columns if c not in (*keys, "replicate")]
    base = table.drop(columns=columns)
    for replicate, part in reps.groupby("replicate"):
        yield replicate, base.merge(part.drop(columns="replicate"), on=keys, how="inner")
