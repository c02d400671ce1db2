"""Timing of device work, shared by the decode loop, the latency stage and the hardware probe."""

from __future__ import annotations

import statistics
import time

import torch


class Timer:
    """Wall time of device work: synchronises before reading the clock when enabled."""

    def __init__(self, device, enabled: bool):
        self.enabled = enabled
        self.cuda = torch.device(device).type == "cuda"

    def now(self) -> float | None:
        if not self.enabled:
            return None
        if self.cuda:
            torch.cuda.synchronize()
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
