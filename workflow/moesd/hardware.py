"""Hardware: datasheet peaks (data/hardware.yaml), a probe that measures the current device, and
the ridge point of Eq. 1.

A hardware spec string is one of
    NAME          a key of data/hardware.yaml, or a unique case-insensitive prefix ("H800")
    NxNAME        N GPUs of NAME ("2xH800"), the paper's platform labels
    probe:PATH    the measured values stored by `moesd probe-hardware` in the env.json at PATH
"""

from __future__ import annotations

import functools
import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import yaml

from moesd.paths import HARDWARE_FILE
from moesd.theory import ridge_point

BANDWIDTH_SCOPES = ("aggregate", "per_gpu")
BYTES_PER_PARAM = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0}  # weight bytes per parameter of a dtype


class HardwareError(ValueError):
    """An unknown hardware name or an unreadable probe file."""


@dataclass(frozen=True)
class Hardware:
    """Peak dense FLOP/s and memory bandwidth (byte/s) of one device, and how many serve the
    target (tensor parallel). The draft always runs on one device (the paper's setup)."""

    name: str
    flops: float
    bandwidth: float
    gpus: int = 1
    source: str = "datasheet"
    copy_bandwidth: float = float("nan")  # a probe's copy (read + written bytes over time); NaN on a datasheet

    @property
    def ridge_point(self) -> float:
        """Eq. 1, FLOP/byte; the same per device and for the tensor-parallel group."""
        return ridge_point(self.flops, self.bandwidth)

    def target_bandwidth(self, scope: str = "aggregate") -> float:
        """Bandwidth that streams the target's weights: the TP group's sum (each GPU reads its
        shard in parallel) or one GPU's (the paper does not say which; docs/open_choices.md)."""
        if scope not in BANDWIDTH_SCOPES:
            raise HardwareError(f"bandwidth_scope must be one of {BANDWIDTH_SCOPES}, got {scope!r}")
        return self.bandwidth * (self.gpus if scope == "aggregate" else 1)

    def target_flops(self, scope: str = "aggregate") -> float:
        return self.flops * (self.gpus if scope == "aggregate" else 1)

    @property
    def label(self) -> str:
        return f"{self.gpus}x{self.name}" if self.gpus > 1 else self.name


@functools.lru_cache(maxsize=1)
def datasheet() -> dict[str, dict]:
    """data/hardware.yaml, read once (callers read it, never change it)."""
    return yaml.safe_load(HARDWARE_FILE.read_text())


def resolve_name(name: str) -> str:
    """The data/hardware.yaml key for NAME (exact key or unique case-insensitive prefix)."""
    table = datasheet()
    if name in table:
        return name
    matches = [key for key in table if key.lower().startswith(name.lower())]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(table)
    reason = "ambiguous" if matches else "unknown"
    raise HardwareError(f"{reason} hardware {name!r} (known: {known}, NxNAME, probe:ENV.json)")


def load_hardware(spec: str, gpus: int | None = None) -> Hardware:
    """Resolve a hardware spec string (see the module docstring); GPUS overrides the count."""
    if spec.startswith("probe:"):
        path = Path(spec.removeprefix("probe:"))
        try:
            probe = json.loads(path.read_text())["hardware_probe"]
            missing = [key for key in ("device_name", "flops", "bandwidth") if key not in probe]
        except (OSError, KeyError, TypeError, json.JSONDecodeError) as error:
            reason = f"{type(error).__name__}: {error}".splitlines()[0]
            raise HardwareError(f"hardware {spec!r}: no hardware_probe object in {path} ({reason})") from None
        if missing:
            raise HardwareError(f"hardware {spec!r}: {path}'s hardware_probe lacks {', '.join(missing)}")
        copy = probe.get("copy_bandwidth", float("nan"))
        return Hardware(probe["device_name"], probe["flops"], probe["bandwidth"], gpus or 1, "measured", copy)
    count, sep, rest = spec.partition("x")
    if sep and count.isdigit():
        spec, gpus = rest, gpus or int(count)
    key = resolve_name(spec)
    entry = datasheet()[key]
    if gpus is not None and gpus < 1:
        raise HardwareError(f"hardware {key!r}: gpus must be >= 1, got {gpus}")
    return Hardware(key, float(entry["flops"]), float(entry["bandwidth"]), gpus or 1)


def probe_hardware(
    device: str = "cpu", dtype: str = "auto", buffer_mib: int = 512, matmul_n: int = 2048, repeats: int = 10
) -> dict:
    """Measure memory bandwidth and matrix-product throughput (2 n^3 FLOP over the median time) on
    DEVICE in DTYPE (auto: the timed models' dtype there, `moesd.devices.timing_dtype`).

    The roofline's bandwidth (Eq. 1) is the read bandwidth: a sum over a BUFFER_MIB buffer, bytes
    read over the median time. A forward streams its weights, it reads them and writes little;
    a copy (bytes read plus written over the time, the second column) understates that on CPUs,
    where writes cost more than reads. The buffer is kept at least 8 times the last-level cache,
    so that neither measures a cache.
    """
    import torch

    from moesd.devices import timing_dtype
    from moesd.timing import timed_repeats

    dev = torch.device(device)
    dtype = timing_dtype(dtype, dev)

    def median_seconds(call):
        return statistics.median(timed_repeats(call, dev, warmup=1, repeats=repeats))

    if dev.type == "cpu":
        buffer_mib = max(buffer_mib, 8 * last_level_cache_bytes() // 2**20)
    # bytes are bytes: a float32 buffer, whatever the timed dtype, so the sum's arithmetic stays cheap
    src = torch.empty(buffer_mib * 2**20 // 4, dtype=torch.float32, device=dev).fill_(1.0)
    buffer_bytes = src.numel() * src.element_size()
    read_s = median_seconds(lambda: src.sum())
    dst = torch.empty_like(src)
    copy_s = median_seconds(lambda: dst.copy_(src))

    a = torch.randn(matmul_n, matmul_n, dtype=dtype, device=dev)
    b = torch.randn(matmul_n, matmul_n, dtype=dtype, device=dev)
    mm_s = median_seconds(lambda: a @ b)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else _cpu_name()
    bandwidth = buffer_bytes / read_s
    flops = 2 * matmul_n**3 / mm_s
    return {
        "device": str(dev),
        "device_name": name,
        "dtype": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "bandwidth": bandwidth,
        "bandwidth_kind": "read",
        "copy_bandwidth": 2 * buffer_bytes / copy_s,
        "flops": flops,
        "ridge_point": ridge_point(flops, bandwidth),
        "buffer_bytes": buffer_bytes,
        "read_seconds": read_s,
        "copy_bytes": 2 * buffer_bytes,
        "copy_seconds": copy_s,
        "matmul_n": matmul_n,
        "matmul_seconds": mm_s,
        "repeats": repeats,
    }


def last_level_cache_bytes() -> int:
    """The largest CPU cache Linux reports (sysfs), 0 where it reports none."""
    sizes = [0]
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        try:
            text = path.read_text().strip().upper()
        except OSError:
            continue
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        sizes += [int(digits) * scale] if digits.isdigit() else []
    return max(sizes)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return "CPU " + line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return "CPU " + (platform.processor() or platform.machine())
