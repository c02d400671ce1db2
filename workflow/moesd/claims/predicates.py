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
    than the tolerance (a rise of 22 % and then a fall is no "only falls")."""
    if len(series) < 2:
        return Check(False, float("nan"))
    first = series.iloc[0]
    never_above = float(1 - series.max() / ((1 + tol) * first))  # >= 0 holds
    falls = float(first / ((1 + tol) * series.iloc[-1]) - 1)  # > 0 holds
    return Check(never_above >= 0 and falls > 0, min(never_above, falls))


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
