"""Resampling the raw repeats: each point's values come from its own repeats, one repeat's values
stay together, and intervals cover the spread of the repeats."""

import numpy as np
import pandas as pd
import pytest
from moesd.bootstrap import replicate_tables, replicates, resample_repeats, with_intervals
from moesd.speedup import point_times


def points(values_by_point: dict[int, list[float]]) -> pd.DataFrame:
    rows = [
        {"B": b, "status": "ok", "repeat": r, "seconds": v, "prefill_seconds": v / 10}
        for b, values in values_by_point.items()
        for r, v in enumerate(values)
    ]
    return pd.DataFrame(rows)


def test_each_point_draws_from_its_own_repeats():
    frame = points({1: [1.0, 2.0, 3.0], 2: [10.0, 20.0, 30.0, 40.0], 4: [7.0]})
    rng = np.random.default_rng(0)
    seen = {1: set(), 2: set()}
    for _ in range(50):
        drawn = resample_repeats(frame, rng)
        assert list(drawn["repeat"]) == list(frame["repeat"]) and list(drawn["B"]) == list(frame["B"])
        for b, part in drawn.groupby("B"):
            assert set(part["seconds"]) <= set(frame.loc[frame["B"] == b, "seconds"])
            assert np.allclose(part["prefill_seconds"], part["seconds"] / 10)  # one repeat's values together
        for b in seen:
            seen[b] |= set(drawn.loc[drawn["B"] == b, "seconds"])
    assert seen == {1: {1.0, 2.0, 3.0}, 2: {10.0, 20.0, 30.0, 40.0}}  # every repeat can be drawn
    again = [resample_repeats(frame, np.random.default_rng(5))["seconds"].tolist() for _ in range(2)]
    assert again[0] == again[1]  # seeded


def test_intervals_cover_the_spread_of_the_statistic():
    rng = np.random.default_rng(1)
    frame = points({b: list(1.0 + 0.1 * rng.standard_normal(9)) for b in (1, 2)})
    base = point_times(frame, "median")

    def medians(table):
        return point_times(table, "median")

    reps = replicates(medians, {"table": frame}, ["B"], ["seconds"], n=300, seed=0)
    assert len(reps) == 600 and reps["replicate"].nunique() == 300
    table = with_intervals(base, reps, ["B"], ["seconds"], 0.95)
    assert (table["seconds_ci_low"] <= table["seconds"]).all() and (table["seconds"] <= table["seconds_ci_high"]).all()
    width = table["seconds_ci_high"] - table["seconds_ci_low"]
    assert (width > 0.02).all() and (width < 0.4).all()  # about 2 x 1.96 x 0.1 x 1.25 / 3
    one = dict(replicate_tables(base, reps, ["B"]))
    assert len(one) == 300 and set(one[0].columns) == set(base.columns)


def test_no_resamples_no_replicates():
    frame = points({1: [1.0, 2.0]})
    reps = replicates(lambda table: point_times(table, "median"), {"table": frame}, ["B"], ["seconds"], n=0, seed=0)
    assert reps.empty and list(reps.columns) == ["B", "seconds", "replicate"]
    with pytest.raises(KeyError):
        reps.groupby("B")["missing"]


def test_sigma_resamples_draw_whole_prompts():
    from moesd.acceptance import summarise
    from moesd.bootstrap import sigma_replicates
    from moesd.families import SETTING
    from moesd.speedup import sigma_resampled

    rng = np.random.default_rng(2)
    rows = []
    for prompt in range(40):  # prompts differ: some accept everything, some little
        rate = rng.uniform(0.2, 1.0)
        rows += [(prompt, r, int(rng.binomial(4, rate))) for r in range(10)]
    rounds = pd.DataFrame(rows, columns=["prompt_index", "round", "accepted"]).assign(
        target="t", draft="d", dataset="humaneval", temperature=0.0, gamma=4, distinct_fraction=1.0
    )
    measured = float(summarise(rounds)["sigma"].iloc[0])
    reps = sigma_replicates(rounds, SETTING, n=300, seed=0)
    sigmas = np.array([float(r["sigma"].iloc[0]) for r in reps])
    assert abs(sigmas.mean() - measured) < 0.01 and 0.01 < sigmas.std() < 0.1
    one = rounds[rounds["prompt_index"] == 0]  # one prompt: every resample draws the same rounds
    assert {round(float(r["sigma"].iloc[0]), 12) for r in sigma_replicates(one, SETTING, n=20, seed=0)} == {
        round(float(summarise(one)["sigma"].iloc[0]), 12)
    }
    table = pd.DataFrame({"dataset": ["humaneval", "mtbench"], "temperature": 0.0, "gamma": 4, "sigma": [0.5, 0.6]})
    swapped = sigma_resampled(table, reps[0])
    assert swapped["sigma"].tolist() == [float(reps[0]["sigma"].iloc[0]), 0.6]  # no resample for mtbench: kept
    assert sigma_resampled(table, None) is table
