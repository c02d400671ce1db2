"""Timing, for every stage that times: the decode loop (stage times), the engine check, the
hardware probe and the latency stage import it, so no stage reaches into another for its clock.

- Timer, timed_repeats, timed_interleaved: device work timed with syncs (CUDA events on a GPU,
  the host clock after a synchronisation elsewhere), warm-up outside the timed region, and the
  contenders of one measurement taking turns within each round so that their ratios are
  measured side by side. torch is imported where a call needs it, so the lock below stays light.
- exclusive_timing: one timed measurement on a machine's CPU cores at a time.

Two timed jobs on the same cores measure each other: after a killed Snakemake (SIGKILL leaves
its running job behind) and `--unlock`, a rerun would time a second latency stage beside the
orphaned one (and `snakemake --cores 8` would run four 2-thread timed jobs at once). Every
command that times CPU work holds an exclusive lock on one file of the machine
(/tmp/moesd-cpu-timing.lock, whatever a job's TMPDIR) for as long as it measures; the operating system releases it when the process ends,
however it ends. A second one finds it held, says so in one line naming the holder, and waits
for it. GPU measurements take no lock: a scheduler gives each job its own GPUs.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

LOCK_NAME = "moesd-cpu-timing.lock"
LOCK_ENV = "MOESD_TIMING_LOCK"


def lock_path() -> Path:
    """The machine's one CPU timing lock: /tmp/moesd-cpu-timing.lock (MOESD_TIMING_LOCK moves it;
    `off` takes none, for a test cluster whose nodes share one machine). Not in TMPDIR: two jobs
    with their own TMPDIRs (Slurm gives each one) share these cores."""
    return Path(os.environ.get(LOCK_ENV) or Path("/tmp") / LOCK_NAME)


@contextlib.contextmanager
def exclusive_timing(device: str = "cpu"):
    """Hold the machine's CPU timing lock while the block runs (nothing on a GPU device)."""
    if str(device).startswith("cuda") or os.environ.get(LOCK_ENV) == "off":  # off: nodes simulated on one machine
        yield
        return
    path = lock_path()
    try:
        handle = open(path, "a+")  # noqa: SIM115 (held open for the block's life)
    except PermissionError:  # another user's lock: it locks as well read-only, without our name in it
        handle = open(path)  # noqa: SIM115
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown process"
            print(
                f"moesd: waiting: another measurement is timing on these CPU cores ({holder}; lock {path}); "
                "two would time each other (a Snakemake killed with SIGKILL leaves its job running: stop it "
                "to go on)",
                file=sys.stderr,
                flush=True,
            )
            fcntl.flock(handle, fcntl.LOCK_EX)
        if handle.writable():
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}: {' '.join(sys.argv)[:200]}")
            handle.flush()
        yield
    finally:
        handle.close()  # closing releases the lock


class Timer:
    """Wall time of device work: synchronises before reading the clock when enabled."""

    def __init__(self, device, enabled: bool):
        import torch

        self.enabled = enabled
        self.cuda = torch.device(device).type == "cuda"
        self._synchronize = torch.cuda.synchronize if self.cuda else None  # resolved once, not at each clock read

    def now(self) -> float | None:
        if not self.enabled:
            return None
        if self._synchronize is not None:
            self._synchronize()
        return time.perf_counter()

    @staticmethod
    def since(start: float | None, end: float | None) -> float | None:
        return None if start is None or end is None else end - start


def timed_repeats(call, device, warmup: int, repeats: int) -> list[float]:
    """Seconds of each of REPEATS calls after WARMUP untimed ones (see timed_interleaved)."""
    return timed_interleaved({None: call}, device, warmup, repeats)[None]


def timed_interleaved(calls: dict, device, warmup: int, repeats: int) -> dict:
    """Seconds of each of REPEATS rounds of CALLS (a dict of callables), the calls taking turns
    within a round so that their ratios are measured side by side, after WARMUP untimed rounds:
    the paper's fixed protocol (timed_rounds with RoundProtocol.fixed)."""
    return timed_rounds(calls, device, warmup, RoundProtocol.fixed(repeats)).seconds


@dataclass(frozen=True)
class RoundProtocol:
    """How the rounds of one point are taken on a shared machine (latency.rounds):

    - REPEATS rounds at least; a round is *disturbed* when one contender's time lies more than
      DISTURBED robust standard deviations (1.4826 MAD) and more than MIN_EXCESS above its median
      over the rounds so far, or when the machine counted steal time during it (a hypervisor took
      the cores). A disturbed round is measured again: it is dropped and a new round taken;
    - rounds are added until every contender's median has a distribution-free 95 % interval
      (order statistics) narrower than PRECISION of the median on either side;
    - never more than MAX_ROUNDS rounds in all, replacements included: a point that does not
      settle keeps what it has, and its spread says so."""

    repeats: int
    max_rounds: int
    precision: float = 0.03
    disturbed: float = 5.0
    min_excess: float = 0.10

    @classmethod
    def fixed(cls, repeats: int) -> RoundProtocol:
        """Exactly REPEATS rounds, nothing measured again (the paper's protocol)."""
        return cls(repeats, repeats, precision=math.inf, disturbed=math.inf, min_excess=math.inf)


@dataclass
class Rounds:
    """The kept rounds of a point: seconds per contender, and per kept round the involuntary
    context switches of this process and the machine's steal time (jiffies) counted around it;
    how many rounds were measured again, and how many were taken in all."""

    seconds: dict
    switches: list[int] = field(default_factory=list)
    steal: list[int] = field(default_factory=list)
    remeasured: int = 0
    taken: int = 0


def machine_counters() -> tuple[int, int]:
    """(this process's involuntary context switches, the machine's steal time in jiffies; 0 where
    /proc/stat is not readable)."""
    switches = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw
    try:
        with open("/proc/stat") as handle:
            fields = handle.readline().split()
        steal = int(fields[8]) if len(fields) > 8 else 0
    except OSError:
        steal = 0
    return switches, steal


def median_interval(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """A distribution-free interval of the median: the order statistics j and n + 1 - j with j the
    largest whose binomial tail P(Bin(n, 1/2) < j) stays within (1 - level) / 2 (5 values: the
    range, 93.75 %)."""
    ordered = sorted(values)
    n, tail, j, cumulative = len(ordered), (1 - level) / 2, 0, 0.0
    while n and j < n // 2:
        cumulative += math.comb(n, j) / 2**n
        if cumulative > tail:
            break
        j += 1
    j = max(j, 1)
    return ordered[j - 1], ordered[n - j]


def _disturbed(rounds: list[dict], steal: list[int], protocol: RoundProtocol) -> list[int]:
    """Indices of disturbed rounds, the worst first (RoundProtocol)."""
    scores = {}
    for key in rounds[0]:
        values = [r[key] for r in rounds]
        median = statistics.median(values)
        spread = 1.4826 * statistics.median(abs(v - median) for v in values)
        for i, value in enumerate(values):
            excess = value / median - 1 if median > 0 else 0.0
            far = excess > protocol.min_excess and (value - median) > protocol.disturbed * spread
            if far or steal[i] > 0 and math.isfinite(protocol.disturbed):
                scores[i] = max(scores.get(i, 0.0), excess)
    return sorted(scores, key=scores.get, reverse=True)


def _precise(rounds: list[dict], protocol: RoundProtocol) -> bool:
    for key in rounds[0]:
        values = [r[key] for r in rounds]
        low, high = median_interval(values)
        median = statistics.median(values)
        if median > 0 and max(median - low, high - median) > protocol.precision * median:
            return False
    return True


def timed_rounds(calls: dict, device, warmup: int, protocol: RoundProtocol) -> Rounds:
    """CALLS (a dict of callables) timed in rounds, taking turns within each (their ratios measured
    side by side), under PROTOCOL: disturbed rounds measured again, rounds added until the medians
    are precise, up to the cap. The seconds of the kept rounds, in the order they were taken."""
    seconds_of = _clock(calls, device, warmup)
    kept, switches, steal = [], [], []
    taken = remeasured = 0

    def take() -> None:
        nonlocal taken
        before = machine_counters()
        kept.append({key: seconds_of(call) for key, call in calls.items()})
        after = machine_counters()
        switches.append(after[0] - before[0])
        steal.append(after[1] - before[1])
        taken += 1

    while len(kept) < protocol.repeats:
        take()
    while taken < protocol.max_rounds:
        disturbed = _disturbed(kept, steal, protocol)[: protocol.max_rounds - taken]
        if disturbed:
            for i in sorted(disturbed, reverse=True):
                del kept[i], switches[i], steal[i]
            remeasured += len(disturbed)
            for _ in disturbed:
                take()
            continue
        if _precise(kept, protocol):
            break
        take()
    return Rounds({key: [r[key] for r in kept] for key in calls}, switches, steal, remeasured, taken)


def _clock(calls: dict, device, warmup: int):
    """After WARMUP untimed rounds of CALLS: a function timing one call (CUDA events on a GPU,
    the host clock after a synchronisation elsewhere)."""
    import torch

    for _ in range(warmup):
        for call in calls.values():
            call()
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()

        def seconds_of(call) -> float:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            call()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3

        return seconds_of
    timer = Timer(device, enabled=True)

    def seconds_of(call) -> float:
        start = timer.now()
        call()
        return timer.now() - start

    return seconds_of


def interleaved_medians(contenders: dict, repeats: int, warmup: int) -> dict[str, float]:
    """Median ms per contender; calls alternate (A, B, A, B, ...) so that drifts of a shared,
    noisy machine hit every contender alike. Each contender is (call, reset or None)."""
    times = {name: [] for name in contenders}
    for i in range(warmup + repeats):
        for name, (call, reset) in contenders.items():
            start = time.perf_counter()
            call()
            elapsed = time.perf_counter() - start
            if reset is not None:
                reset()
            if i >= warmup:
                times[name].append(elapsed * 1e3)
    return {name: statistics.median(values) for name, values in times.items()}
