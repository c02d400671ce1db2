"""The timing protocol on a shared machine (moesd.timing.RoundProtocol): disturbed rounds are
measured again, rounds are added until the medians are precise, never beyond the cap, and the
fixed protocol takes exactly its repeats. A fake clock makes every duration exact."""

import itertools
import math

import pytest
from moesd import timing
from moesd.timing import RoundProtocol, median_interval, timed_rounds


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def call(self, durations):
        """A callable that advances the clock by the next of DURATIONS each call."""
        durations = iter(durations)

        def advance():
            self.now += next(durations)

        return advance


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(timing.time, "perf_counter", fake.perf_counter)
    monkeypatch.setattr(timing, "machine_counters", lambda: (0, 0))
    return fake


def test_a_disturbed_round_is_measured_again(clock):
    """The third round of s = 1 took 19x its median (an interference burst): that whole round is
    dropped and taken again; the kept rounds are the undisturbed ones."""
    calls = {
        1: clock.call([1.0, 1.01, 19.0, 0.99, 1.0, 1.02, 1.0]),
        5: clock.call([1.5, 1.51, 1.5, 1.49, 1.5, 1.5, 1.5]),
    }
    rounds = timed_rounds(calls, "cpu", 0, RoundProtocol(5, 15, precision=math.inf))
    assert rounds.seconds[1] == pytest.approx([1.0, 1.01, 0.99, 1.0, 1.02])
    assert rounds.seconds[5] == pytest.approx([1.5, 1.51, 1.49, 1.5, 1.5])
    assert rounds.remeasured == 1 and rounds.taken == 6


def test_steal_time_around_a_round_marks_it_disturbed(clock, monkeypatch):
    counters = iter([(0, 0), (0, 0), (0, 0), (3, 2)] + [(3, 2)] * 20)  # steal counted during round 2
    monkeypatch.setattr(timing, "machine_counters", lambda: next(counters))
    rounds = timed_rounds({1: clock.call([1.0] * 10)}, "cpu", 0, RoundProtocol(3, 9, precision=math.inf))
    assert rounds.remeasured == 1 and rounds.taken == 4 and rounds.steal == [0, 0, 0]


def test_rounds_are_added_until_the_median_is_precise_and_never_beyond_the_cap(clock):
    # 5 % either side: no round disturbed (min_excess 10 %), but the median of 3 is not precise
    settles = timed_rounds(
        {1: clock.call([1.0, 1.05, 0.95] + [1.0] * 30)}, "cpu", 0, RoundProtocol(3, 30, precision=0.02)
    )
    assert 3 < settles.taken < 30 and settles.remeasured == 0
    low, high = median_interval(settles.seconds[1])
    assert high - low <= 0.04  # the median's interval within 2 % on either side
    swings = timed_rounds({1: clock.call(itertools.cycle([0.95, 1.0, 1.05]))}, "cpu", 0, RoundProtocol(3, 12, 0.02))
    assert swings.taken == 12 and len(swings.seconds[1]) == 12  # never settles: the cap


def test_the_fixed_protocol_takes_exactly_its_repeats(clock):
    rounds = timed_rounds({1: clock.call([1.0, 30.0, 1.0, 2.0])}, "cpu", 1, RoundProtocol.fixed(3))
    assert rounds.seconds[1] == [30.0, 1.0, 2.0] and rounds.taken == 3 and rounds.remeasured == 0


def test_median_intervals_are_order_statistics():
    assert median_interval([5, 1, 3, 2, 4]) == (1, 5)  # 5 values: the range (93.75 %)
    assert median_interval(list(range(1, 10))) == (2, 8)  # 9 values: P(Bin(9, 1/2) <= 1) = 2 %
    assert median_interval([7.0]) == (7.0, 7.0)


def test_a_cap_below_the_repeats_is_one_line(tmp_path):
    from moesd.config import ConfigError, validate_config

    with pytest.raises(ConfigError, match=r"latency.rounds.max_repeats: 3 is below latency.repeats 5"):
        validate_config({"latency": {"repeats": 5, "rounds": {"max_repeats": 3}}})


def test_the_interleave_benchmark_separates_a_drifting_shape_from_a_steady_one():
    """bench_interleave.py's summary: a way whose repetitions scale every point alike (the machine's
    drift) agrees fully once the levels are divided out, and in its shape over B; a way whose
    repetitions slow one batch size at a time (a slow spell inside one point) does not."""
    import importlib.util

    import pandas as pd
    from moesd.paths import REPO_ROOT

    spec = importlib.util.spec_from_file_location("bench", REPO_ROOT / "workflow/scripts/bench_interleave.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = []
    for repetition, b, s in itertools.product(range(4), (1, 2, 4), (1, 5)):
        base = (1 + b) * (1 + s)
        rows.append({"repetition": repetition, "way": "batch_sizes", "B": b, "s": s, "median": base * 1.1**repetition})
        slowed = 1.3 if b == 2 ** (repetition % 3) else 1.0  # one B slow as a whole, another each time
        rows.append({"repetition": repetition, "way": "tokens", "B": b, "s": s, "median": base * slowed})
    tokens, batch_sizes = (
        [cell.strip() for cell in row.strip("|").split("|")] for row in bench.summarise(pd.DataFrame(rows))
    )
    assert batch_sizes[1].startswith("0%")  # 10 % faster each repetition: no raw pair within 5 %
    assert batch_sizes[2:] == ["100% (1.000-1.000)"] * 3
    assert not tokens[2].startswith("100%") and not tokens[3].startswith("100%") and tokens[4].startswith("100%")
