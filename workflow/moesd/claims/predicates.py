"""The shape predicates the claims compose: a curve that rises then falls, only falls, grows; a
value at least or at most a threshold; a table row that is the paper's model on the paper's
platform. Each returns a Check with its margin (moesd.claims.verdicts.MARGIN).
"""

from __future__ import annotations

import re

import pandas as pd

from moesd.claims.verdicts import Check
from moesd.models.spec import ModelSpecError, parse_spec


def rises_then_falls(series: pd.Series, tol: float) -> Check:
    """The maximum lies inside the grid: above both ends by more than the tolerance."""
    if len(series) < 3:
        return Check(False, float("nan"))
    peak = series.max()
    margin = float(min(peak / series.iloc[0], peak / series.iloc[-1]) / (1 + tol) - 1)
    return Check(margin > 0, margin)


def only_falls(series: pd.Series, tol: float) -> Check:
    """Never above the first value by more than the tolerance, and below it at the end by more
    than the tolerance (a rise of 22 % and then a fall is no "only falls"). The margin is the
    fall's, unless a rise fails: the slack under "never above", at most tol / (1 + tol) where the
    curve starts at its maximum, would otherwise be every falling curve's margin, whatever its fall."""
    if len(series) < 2:
        return Check(False, float("nan"))
    first = series.iloc[0]
    never_above = float(1 - series.max() / ((1 + tol) * first))  # >= 0 holds
    falls = float(first / ((1 + tol) * series.iloc[-1]) - 1)  # > 0 holds
    return Check(never_above >= 0 and falls > 0, never_above if never_above < 0 else falls)


def falls_throughout(series: pd.Series, tol: float) -> Check:
    """Decreases monotonically: no step rises at all, and the end lies below the start by more than
    the tolerance (a flat curve, or one that rises 4 % and then falls, does not)."""
    values = series.astype(float).to_numpy()
    if len(values) < 2:
        return Check(False, float("nan"))
    steps = float((values[:-1] / values[1:]).min() - 1)  # >= 0 holds
    end = float(values[0] / ((1 + tol) * values[-1]) - 1)  # > 0 holds
    return Check(steps >= 0 and end > 0, end if steps >= 0 else steps)


def peak_range(curve: pd.Series, tol: float) -> tuple[float, float]:
    """Where a curve over B peaks, with the tolerance: the smallest and largest B whose value is
    within it of the maximum (two batch sizes whose speedups differ by 0.1 % are one peak)."""
    top = curve[curve >= curve.max() / (1 + tol)]
    return float(top.index.min()), float(top.index.max())


def moves_right(ranges: list[tuple[float, float]]) -> Check:
    """Peak ranges (peak_range, in the order of the claim) that move to larger B: neither end of a
    range lies left of the one before, and the last range lies wholly right of the first. The
    margins are ratios of batch sizes minus one."""
    if len(ranges) < 2:
        return Check(False, float("nan"))
    steps = min(
        min(lo / lo_before, hi / hi_before)
        for (lo_before, hi_before), (lo, hi) in zip(ranges[:-1], ranges[1:], strict=True)
    )
    end = float(ranges[-1][0] / ranges[0][1] - 1)  # > 0 holds
    return Check(steps >= 1 and end > 0, end if steps >= 1 else float(steps - 1))


def spearman(x, y) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    return float(pd.Series(x, dtype=float).corr(pd.Series(y, dtype=float), method="spearman"))


def permutation_pvalue(x, y, draws: int = 20000) -> float:
    """One-sided p-value of Spearman(X, Y): the share of orderings of Y whose correlation with X is
    at least the observed one. Exact (every ordering) up to 8 values, else DRAWS seeded random
    orderings; with 4 values an unrelated ordering reaches rho >= 0.6 in 5 of 24 orderings, and
    only the perfect one has p <= 0.05."""
    import itertools

    import numpy as np

    rx = pd.Series(x, dtype=float).rank().to_numpy()
    ry = pd.Series(y, dtype=float).rank().to_numpy()
    n = len(rx)
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:  # a constant series orders nothing
        return 1.0
    if n <= 8:
        orders = np.array(list(itertools.permutations(range(n))))
    else:
        rng = np.random.default_rng(0)
        orders = np.array([rng.permutation(n) for _ in range(draws)])
    shuffled = ry[orders]
    centred_x, centred = rx - rx.mean(), shuffled - shuffled.mean(axis=1, keepdims=True)
    scale = np.sqrt((centred_x**2).sum() * (centred**2).sum(axis=1))
    rhos = (centred @ centred_x) / np.where(scale > 0, scale, np.nan)
    observed = spearman(rx, ry)
    return float(np.mean(np.nan_to_num(rhos, nan=-np.inf) >= observed - 1e-12))


def smallest_pvalue(n: int) -> float:
    """The smallest p-value a permutation test over N values can give (1 / N!)."""
    import math

    return 1 / math.factorial(n)


def grows(values: pd.Series, tol: float) -> Check:
    """VALUES (in their order) never fall by more than the tolerance from one to the next, and the
    last exceeds the first by more than it: a change larger than the noise, so that ties and flat
    curves are no growth."""
    values = values.astype(float).to_numpy()
    if len(values) < 2:
        return Check(False, float("nan"))
    steps = float((values[1:] / values[:-1]).min() * (1 + tol) - 1)  # >= 0 holds
    end = float(values[-1] / ((1 + tol) * values[0]) - 1)  # > 0 holds
    return Check(steps >= 0 and end > 0, end if steps >= 0 else steps)


def at_least(value: float, threshold: float) -> Check:
    """VALUE >= THRESHOLD (both fractions: a correlation, a relative error); the margin is their
    difference."""
    return Check(bool(value >= threshold), float(value - threshold))


def at_most(value: float, threshold: float) -> Check:
    return Check(bool(value <= threshold), float(threshold - value))


def is_full_size(spec: str, architecture: str) -> bool:
    """SPEC is the paper's model: a hub checkpoint of that name or the unmodified architecture
    (a table's label that is no model spec is not)."""
    try:
        return parse_spec(spec).is_architecture(architecture)
    except ModelSpecError:
        return False


def on_platform(hardware: str, gpus: int, platform: str) -> bool:
    """A run's device HARDWARE (a name) with GPUS devices is the paper's PLATFORM (2xH800): the
    same count and the GPU's name as a whole word ("L40" is not "L40S")."""
    count, _, gpu = platform.partition("x")
    return (
        int(gpus) == int(count)
        and re.search(rf"(?<![A-Za-z0-9]){re.escape(gpu)}(?![A-Za-z0-9])", hardware, re.I) is not None
    )
