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
command that times CPU work holds an exclusive lock on a file in the machine's temporary folder
(TMPDIR) for as long as it measures; the operating system releases it when the process ends,
however it ends. A second one finds it held, says so in one line naming the holder, and waits
for it. GPU measurements take no lock: a scheduler gives each job its own GPUs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

LOCK_NAME = "moesd-cpu-timing.lock"


def lock_path() -> Path:
    return Path(tempfile.gettempdir()) / LOCK_NAME


@contextlib.contextmanager
def exclusive_timing(device: str = "cpu"):
    """Hold the machine's CPU timing lock while the block runs (nothing on a GPU device)."""
    if str(device).startswith("cuda"):
        yield
        return
    path = lock_path()
    handle = open(path, "a+")  # noqa: SIM115 (held open for the block's life)
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
    CUDA events on a GPU, the host clock after a synchronisation elsewhere."""
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

    else:
        timer = Timer(device, enabled=True)

        def seconds_of(call) -> float:
            start = timer.now()
            call()
            return timer.now() - start

    seconds = {key: [] for key in calls}
    for _ in range(repeats):
        for key, call in calls.items():
            seconds[key].append(seconds_of(call))
    return seconds


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
