"""Resampling the raw repeats: each point's values come from its own repeats, one repeat's values
stay together, and intervals cover the spread of the repeats."""

import numpy as np
import pandas as pd
import pytest
from moesd.bootstrap import RepeatResampler, replicate_tables, replicates, resample_repeats, with_intervals
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


def test_a_resampler_kept_for_every_replicate_draws_as_fresh_ones_do():
    """replicates() finds a table's points once (RepeatResampler) and draws from it per replicate:
    the same resamples, one rng after another, as resample_repeats on the table each time, and
    each its own table (a later draw leaves an earlier one as it was)."""
    frame = points({1: [1.0, 2.0, 3.0], 2: [10.0, 20.0, 30.0, 40.0], 4: [7.0]}).assign(s=1)
    frame = pd.concat([frame, frame.assign(s=5, seconds=frame["seconds"] * 2)], ignore_index=True)
    kept, fresh = np.random.default_rng(3), np.random.default_rng(3)
    sampler = RepeatResampler(frame)
    draws = [sampler(kept) for _ in range(5)]
    first = draws[0].copy()
    for drawn in draws:
        pd.testing.assert_frame_equal(drawn, resample_repeats(frame, fresh))
    pd.testing.assert_frame_equal(draws[0], first)
    assert len({tuple(d["seconds"]) for d in draws}) > 1  # the draws differ from one another


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


def rounds_of_two_s(rng, trials: int, n: int, drift: float, own: float) -> pd.DataFrame:
    """TRIALS forward points (one model each) of s = 1 and 5, N repeats timed in rounds: each round's
    drift (a shared machine) multiplies both s alike, each call has its own noise. True times 1.0
    and 1.5: the true target efficiency T(1) / T(5) is 2/3."""
    drift_of = np.exp(drift * rng.standard_normal((trials, 1, n)))
    seconds = np.array([1.0, 1.5])[None, :, None] * drift_of * np.exp(own * rng.standard_normal((trials, 2, n)))
    index = pd.MultiIndex.from_product([range(trials), [1, 5], range(n)], names=["model", "s", "repeat"])
    return pd.DataFrame({"seconds": seconds.ravel()}, index=index).reset_index().assign(B=1, status="ok")


def efficiency_coverage(frame: pd.DataFrame, trials: int, n: int, resamples: int, seed: int) -> float:
    """The share of trials whose 95 % percentile interval of median(T(1)) / median(T(5)) over
    RESAMPLES resamples of FRAME holds the true 2/3."""
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        values = resample_repeats(frame, rng)["seconds"].to_numpy().reshape(trials, 2, n)
        medians = np.median(values, axis=2)
        draws.append(medians[:, 0] / medians[:, 1])
    low, high = np.quantile(np.array(draws), [0.025, 0.975], axis=0)
    return float(((low <= 2 / 3) & (2 / 3 <= high)).mean())


def test_the_s_of_one_round_are_drawn_together():
    """T(B, 1) and T(B, v) of a target efficiency were timed in the same rounds: a resample draws
    the same rounds for both (not each s its own), while points of another B draw their own."""
    frame = rounds_of_two_s(np.random.default_rng(0), trials=1, n=6, drift=0.0, own=0.0)
    frame = pd.concat([frame, frame.assign(B=2)], ignore_index=True)
    frame["seconds"] = frame["repeat"] * 10.0 + frame["s"]  # a value that names its round
    rng = np.random.default_rng(3)
    differ = 0
    for _ in range(30):
        drawn = resample_repeats(frame, rng)
        rounds = (drawn["seconds"] // 10).to_numpy().reshape(2, 2, 6)  # B, s, repeat
        assert (rounds[:, 0] == rounds[:, 1]).all()  # both s of a B drew the same rounds
        assert (drawn["seconds"] % 10 == drawn["s"]).all()  # each s its own values
        differ += not (rounds[0] == rounds[1]).all()
    assert differ >= 25  # two B are independent points


def test_intervals_of_a_target_efficiency_cover_its_truth():
    """Known truths, simulated: with drift shared by a round's s (as on a shared machine), the 95 %
    intervals of resampling whole rounds cover the true efficiency in 90-99 % of trials; resampling
    each s on its own would break the pairing and cover almost always (intervals too wide to
    decide anything)."""
    trials, n = 400, 5
    frame = rounds_of_two_s(np.random.default_rng(7), trials, n, drift=0.15, own=0.02)
    assert 0.90 <= efficiency_coverage(frame, trials, n, resamples=200, seed=1) <= 0.99
    unpaired = frame.rename(columns={"s": "tokens"})  # not a round member: each s drawn on its own
    assert efficiency_coverage(unpaired, trials, n, resamples=200, seed=1) > 0.99


def named_rounds(frame: pd.DataFrame, members: str) -> np.ndarray:
    """FRAME's seconds set to repeat * 10 + the member's value (of column MEMBERS): a value naming its round."""
    return (frame["repeat"] * 10.0 + frame[members]).to_numpy()


def test_points_that_took_turns_in_common_rounds_are_drawn_together():
    """Points whose `rounds_with` names the same common rounds (a model's batch sizes under
    latency.rounds.interleave; an end-to-end point's AR and SD repeats) draw the same rounds, each
    keeping its own values; another model's, or another set of the same model's, draw their own."""
    rows = [
        {"model": m, "B": b, "context_len": 10 * b, "s": s, "repeat": r, "status": "ok", "rounds_with": mark}
        for m in ("moe", "dense")
        for mark, sizes in (("B=1,2", (1, 2)), ("B=4,8", (4, 8)))
        for b in sizes
        for s in (1, 3)
        for r in range(6)
    ]
    frame = pd.DataFrame(rows)
    frame["seconds"] = frame["repeat"] * 10.0 + frame["B"] / 10
    rng, differ = np.random.default_rng(4), 0
    for _ in range(30):
        drawn = resample_repeats(frame, rng)
        assert np.allclose(drawn["seconds"] % 10, drawn["B"] / 10)  # each point its own values
        rounds = (drawn["seconds"] // 10).to_numpy().reshape(2, 2, 4, 6)  # model, set, (B, s), repeat
        assert (rounds == rounds[:, :, :1]).all()  # every (B, s) of one set drew the same rounds
        differ += not (rounds[0, 0] == rounds[0, 1]).all() and not (rounds[0, 0] == rounds[1, 0]).all()
    assert differ >= 25  # the other set and the other model draw their own
    alone = frame.assign(rounds_with=np.nan)  # measured one B at a time: each B its own rounds
    drawn = (resample_repeats(alone, np.random.default_rng(4))["seconds"] // 10).to_numpy().reshape(2, 2, 2, 2, 6)
    assert not (drawn[:, :, 0] == drawn[:, :, 1]).all()

    e2e = pd.DataFrame(
        [
            {"name": "pair", "B": b, "mode": mode, "tokens": 96 if mode == "ar" else 97, "sigma": 0.5 if mode == "sd"
             else np.nan, "repeat": r, "status": "ok", "rounds_with": "mode=ar,sd"}
            for b in (1, 4) for mode in ("ar", "sd") for r in range(5)
        ]
    )  # fmt: skip
    e2e["seconds"] = e2e["repeat"] * 10.0 + (e2e["mode"] == "sd")
    for _ in range(10):
        rounds = (resample_repeats(e2e, rng)["seconds"] // 10).to_numpy().reshape(2, 2, 5)  # B, mode, repeat
        assert (rounds[:, 0] == rounds[:, 1]).all()  # a point's AR and SD repeats drawn together


def test_intervals_of_a_ratio_over_common_rounds_cover_its_truth():
    """Known truths, simulated: two batch sizes timed in common rounds whose drift hits both alike;
    the 95 % intervals of T(1) / T(5) cover the truth 2/3 in 90-99 % of trials when the rounds are
    drawn together, and almost always (too wide) when each B is drawn on its own."""
    trials, n = 400, 5
    frame = rounds_of_two_s(np.random.default_rng(7), trials, n, drift=0.15, own=0.02)
    common = frame.drop(columns="B").rename(columns={"s": "B"}).assign(s=1, rounds_with="B=1,5")
    assert 0.90 <= efficiency_coverage(common, trials, n, resamples=200, seed=1) <= 0.99
    assert efficiency_coverage(common.drop(columns="rounds_with"), trials, n, resamples=200, seed=1) > 0.99


def test_the_mean_of_the_last_5_resamples_those_5():
    """analysis.statistic mean_last5 (the paper's: 10 runs, the last 5 averaged) reads repeats 5-9:
    a resample draws from those alone, so the interval holds the estimate (drawing from all 10
    once gave 1.20-2.00 around an estimate of 1.00)."""
    from moesd.bootstrap import kept_repeats

    frame = points({1: [2.0] * 5 + [1.0, 1.1, 0.9, 1.0, 1.0]})
    base = point_times(frame, "mean_last5")
    kept = kept_repeats(frame, "mean_last5")
    assert kept["repeat"].tolist() == [5, 6, 7, 8, 9] and kept_repeats(frame, "median") is frame
    reps = replicates(lambda table: point_times(table, "mean_last5"), {"table": kept}, ["B"], ["seconds"], 200, 0)
    table = with_intervals(base, reps, ["B"], ["seconds"], 0.95)
    assert table["seconds_ci_low"].item() <= base["seconds"].item() <= table["seconds_ci_high"].item()
    assert table["seconds_ci_high"].item() <= 1.1


def test_group_resamples_draw_whole_units_within_their_group():
    from moesd.bootstrap import group_resample

    frame = pd.DataFrame(
        [{"tokens": t, "sample": s, "layer": layer, "value": 100 * t + 10 * s + layer}
         for t in (1, 4) for s in range(3 if t == 1 else 5) for layer in range(2)]
    )  # fmt: skip
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(40):
        drawn = group_resample(frame, ["tokens"], "sample", rng)
        assert drawn.groupby("tokens").size().to_dict() == {1: 6, 4: 10}  # each group keeps its size
        assert (drawn["value"] // 100 == drawn["tokens"]).all()  # units stay in their group
        pairs = drawn.groupby(np.arange(len(drawn)) // 2)["layer"].agg(list)
        assert all(p == [0, 1] for p in pairs)  # a sample's layers together, in order
        seen |= set(drawn.loc[drawn["tokens"] == 4, "sample"])
    assert seen == set(range(5))
