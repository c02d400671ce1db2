"""Uncertainty by resampling the raw repeats: each measured point's timed repeats are drawn with
replacement, every derived number (composed speedup, target efficiency, end-to-end speedup) is
recomputed on each resample, and its interval is the percentile range of the resamples. The
replicates are kept as tables, so that the claims stage can ask how often each verdict survives
a resample (its support).

What is resampled: the latency stage's repeats (T_T, T_D, T_reject, and the end-to-end runs'
repeats) and, where the acceptance stage measured sigma, its prompts (every round of a drawn
prompt together: the rounds of one prompt are not independent). The paper's Table 2 sigma, where
a run has no measured pair, is held fixed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from moesd.columns import PER_REPEAT as REPEAT_VALUES  # values of one timed repeat, drawn together
from moesd.columns import ROUND_MEMBERS, TURN_MEMBERS


def point_keys(frame: pd.DataFrame, also=()) -> list[str]:
    """The columns that identify one measured point of a latency table: all but the repeat label,
    the per-repeat values (and ALSO)."""
    return [c for c in frame.columns if c not in ("repeat", *REPEAT_VALUES, *also)]


def resample_repeats(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """FRAME with each point's repeat values drawn with replacement from that point's own repeats
    (the same number of repeats, the repeat labels kept; the values of one repeat stay together).

    Whole rounds: the points that differ only in ROUND_MEMBERS (the s of one forward point, timed
    taking turns within each round) draw the same repeat labels, so that a resample keeps what
    one round's drift did to every s alike (T_T(B, 1) and T_T(B, v) of a target efficiency are
    paired, as they were measured). So do the points that took turns in common rounds, as their
    `rounds_with` says (round_groups): a model's batch sizes, an end-to-end point's AR and SD."""
    return RepeatResampler(frame)(rng)


def round_groups(frame: pd.DataFrame, shared: list[str]) -> np.ndarray:
    """Per row of FRAME, its round group: the points whose repeats were timed in the same rounds,
    which a resample draws together. Points agreeing on every SHARED column; and where a point's
    `rounds_with` names what it took turns with (moesd.latency.measure: "B=1,2,4", "mode=ar,sd"),
    the points of that same `rounds_with` that differ only in its TURN_MEMBERS. A point without
    it (measured alone, or stored before the column) is its own group, as before."""
    if not shared:
        return np.zeros(len(frame), dtype=int)
    marks = frame["rounds_with"].astype("string").fillna("").to_numpy(str) if "rounds_with" in frame else None
    if marks is None or not marks.any():
        return frame.groupby(shared, dropna=False, sort=False).ngroup().to_numpy()
    labels = np.empty(len(frame), dtype=object)
    for mark in dict.fromkeys(marks):
        rows = np.flatnonzero(marks == mark)
        across = TURN_MEMBERS.get(mark.partition("=")[0], ()) if mark else ()
        columns = [c for c in shared if c not in across]
        part = frame.iloc[rows]
        ids = part.groupby(columns, dropna=False, sort=False).ngroup().to_numpy() if columns else np.zeros(len(rows))
        labels[rows] = [(mark, int(i)) for i in ids]
    return pd.factorize(labels)[0]


class RepeatResampler:
    """resample_repeats of one table, its points and rounds found once: each call draws a resample
    (the same draws from RNG as resample_repeats)."""

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame
        self.values = [c for c in REPEAT_VALUES if c in frame.columns]
        if frame.empty or not self.values:
            return
        keys = point_keys(frame)
        point = frame.groupby(keys, dropna=False, sort=False).ngroup().to_numpy()
        round_of = round_groups(frame, [k for k in keys if k not in ROUND_MEMBERS])
        self.order = np.lexsort((frame["repeat"].to_numpy(), point))  # rows of one point together, by repeat
        in_order = point[self.order]
        self.starts = np.searchsorted(in_order, in_order, side="left")
        self.sizes = np.bincount(point)[in_order]
        self.position = np.arange(len(self.order)) - self.starts  # the j-th repeat of its point
        self.round_of = round_of[self.order]
        self.shape = (round_of.max() + 1, self.sizes.max())
        self.columns = {column: frame[column].to_numpy() for column in self.values}

    def __call__(self, rng: np.random.Generator) -> pd.DataFrame:
        if self.frame.empty or not self.values:
            return self.frame
        uniform = rng.random(self.shape)  # one draw per (round group, repeat position)
        drawn = self.order[self.starts + (uniform[self.round_of, self.position] * self.sizes).astype(int)]
        out = self.frame.copy()
        for column, column_values in self.columns.items():
            resampled = column_values.copy()
            resampled[self.order] = column_values[drawn]
            out[column] = resampled
        return out


def kept_repeats(frame: pd.DataFrame, statistic: str) -> pd.DataFrame:
    """The repeats STATISTIC reads: the last 5 of each point for the paper's mean of the last 5
    (Sec. 4.1: 10 runs, the last 5 averaged), so that a resample draws from those alone; all of
    them for the median."""
    if statistic != "mean_last5" or frame.empty or "repeat" not in frame:
        return frame
    keys = point_keys(frame)
    rank = frame.groupby(keys, dropna=False, sort=False)["repeat"].rank(method="first", ascending=False)
    return frame[rank <= 5]


def streams(seed: int, n: int) -> list[np.random.SeedSequence]:
    """N independent seed streams from one seed (the composed, end-to-end and sigma resamples must
    not share their draws: a support computed across them would pair their noise)."""
    return np.random.SeedSequence(seed).spawn(n)


def sigma_replicates(rounds: pd.DataFrame, keys: list[str], n: int, seed) -> list[pd.DataFrame]:
    """N resamples of sigma (Eq. 5: mean accepted length over gamma + 1) per KEYS setting of the
    acceptance stage's ROUNDS, drawing each setting's prompts with replacement (a prompt's rounds
    together). Each resample is a table of KEYS and sigma."""
    rng = np.random.default_rng(seed)
    per_prompt = (
        rounds.assign(length=rounds["accepted"] + 1)
        .groupby([*keys, "prompt_index"], sort=True)["length"]
        .agg(["sum", "count"])
        .reset_index()
    )
    settings = [(key, part[["sum", "count"]].to_numpy(float)) for key, part in per_prompt.groupby(keys, sort=True)]
    out = []
    for _ in range(n):
        rows = []
        for key, sums in settings:
            drawn = sums[rng.integers(len(sums), size=len(sums))]
            gamma = key[keys.index("gamma")]
            rows.append((*key, drawn[:, 0].sum() / drawn[:, 1].sum() / (gamma + 1)))
        out.append(pd.DataFrame(rows, columns=[*keys, "sigma"]))
    return out


def sequence_sigma_resample(e2e: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """E2E (speedup rows) with each SD point's sigma recomputed from its decoded sequences drawn
    with replacement (`accepted_sums`, `accepted_rounds`: one prompt's rounds together); rows
    without them (vLLM's counters, forced acceptance) keep theirs."""
    if e2e.empty or "accepted_sums" not in e2e:
        return e2e
    sigma = e2e["sigma"].to_numpy(float).copy()
    for i, (sums, rounds, gamma) in enumerate(
        zip(e2e["accepted_sums"], e2e["accepted_rounds"], e2e["gamma"], strict=True)
    ):
        if pd.isna(sums) or str(sums) == "":
            continue
        tokens = np.array(str(sums).split(";"), float)
        counts = np.array(str(rounds).split(";"), float)
        drawn = rng.integers(len(tokens), size=len(tokens))
        sigma[i] = tokens[drawn].sum() / max(counts[drawn].sum(), 1.0) / (gamma + 1)
    return e2e.assign(sigma=sigma)


def group_resample(frame: pd.DataFrame, groups: list[str], unit: str, rng: np.random.Generator) -> pd.DataFrame:
    """FRAME with the UNIT values of each GROUPS group drawn with replacement, every row of a drawn
    unit together (a routing sample with all its layers)."""
    if frame.empty:
        return frame
    unit_of = frame.groupby([*groups, unit], dropna=False, sort=False).ngroup().to_numpy()
    rows = np.argsort(unit_of, kind="stable")  # the rows of each unit together
    unit_sizes = np.bincount(unit_of)
    unit_starts = np.cumsum(unit_sizes) - unit_sizes
    units = pd.DataFrame(
        {"group": frame.groupby(groups, dropna=False, sort=False).ngroup().to_numpy(), "unit": unit_of}
    ).drop_duplicates("unit")
    units = units.sort_values("group", kind="stable")
    group_of, unit_list = units["group"].to_numpy(), units["unit"].to_numpy()
    group_sizes = np.bincount(group_of)
    group_starts = np.cumsum(group_sizes) - group_sizes
    drawn = unit_list[group_starts[group_of] + (rng.random(len(unit_list)) * group_sizes[group_of]).astype(int)]
    lengths = unit_sizes[drawn]
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return frame.iloc[rows[np.repeat(unit_starts[drawn], lengths) + offsets]].reset_index(drop=True)


def replicates(compute, tables: dict[str, pd.DataFrame], keys: list[str], columns: list[str], n: int, seed, extra=None):
    """COMPUTE(**resampled TABLES, **EXTRA(i)) N times; the KEYS and COLUMNS of each result, with
    `replicate`. EXTRA gives each resample's further inputs (a resampled sigma table, say)."""
    rng = np.random.default_rng(seed)
    samplers = {name: RepeatResampler(table) for name, table in tables.items()} if n else {}
    parts = []
    for i in range(n):
        inputs = {name: sampler(rng) for name, sampler in samplers.items()}
        result = compute(**inputs, **(extra(i) if extra else {}))
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
