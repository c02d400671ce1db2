"""The rows kernel: x @ W^T in fp32 on a CPU for a decode step's few rows, at the memory's speed.

A decode step multiplies 1 to a few dozen rows by each weight. On a 2-core AVX2 AMD EPYC the
library products read the weights far below the memory's bandwidth at those rows (the probe:
29 GB/s): MKL's GEMM (F.linear) at 5-13 GB/s from 2 rows, oneDNN's packed product at 15-30 GB/s
on large weights but 3-11 GB/s on an expert of 256 x 512, whose call costs about 25-30 us
whatever its size (docs/benchmarks.md). A step whose time is not its weight reads hides the
paper's mechanism (issue: T_T(B, s) grows too slowly in s). `rows_kernel.c` streams each row of
W once, the rows of W split among the process's OpenMP threads: 26-35 GB/s at one row on the
same weights, ahead of both products up to ROWS_MAX rows and level with the packed one there.

It is built once per source and compiler with the system's C compiler (cc -O3 -mavx2 -mfma
-fopenmp, under a second) into MOESD_KERNEL_CACHE (default ~/.cache/moesd/kernels), written
whole or not at all, and loaded with ctypes after torch, so that it shares torch's OpenMP
runtime (libgomp.so.1). Where it cannot run (no x86 CPU with AVX2 and FMA, no compiler, a failed
build, which it warns of, MOESD_ROWS_KERNEL=off; any other value than on or off is refused)
`problem()` says why and the library products run instead:
`linear_impl: auto` uses it where it runs, packed and plain never (plain is the eager twin the
tests compare it with, and what torch.compile traces).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch

ROWS_MAX = 16  # the C source's ROWS_MAX: the packed product is as fast from about 16 rows
PROFILE_NAME = "moesd::rows_product"  # its range in a torch.profiler trace (moesd.step_profile)
SOURCE = Path(__file__).with_name("rows_kernel.c")
FLAGS = ("-O3", "-mavx2", "-mfma", "-fopenmp", "-shared", "-fPIC")
OFF_VALUES = ("0", "off", "false", "no")
ON_VALUES = ("", "1", "on", "true", "yes")


def switched_on() -> bool:
    """MOESD_ROWS_KERNEL read: on (or unset) or off; any other value is refused in one line."""
    switch = os.environ.get("MOESD_ROWS_KERNEL", "on").strip().lower()
    if switch not in ON_VALUES + OFF_VALUES:
        raise ValueError(f"MOESD_ROWS_KERNEL={switch!r}: give on or off (or unset it)")
    return switch in ON_VALUES


def compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")


def cache_dir() -> Path:
    return Path(os.environ.get("MOESD_KERNEL_CACHE") or Path.home() / ".cache" / "moesd" / "kernels")


def _build(cc: str) -> Path:
    """The shared library for this source, compiler and flags: built once (written to a temporary
    name in the cache and renamed, so that concurrent jobs never load a half-written file)."""
    key = hashlib.sha256(SOURCE.read_bytes() + " ".join((cc, *FLAGS)).encode()).hexdigest()[:16]
    target = cache_dir() / f"rows_kernel-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=target.parent, prefix=".rows_kernel-", suffix=".so")
    os.close(fd)
    try:
        subprocess.run([cc, *FLAGS, str(SOURCE), "-o", partial], check=True, capture_output=True, text=True)
        os.replace(partial, target)
    finally:
        Path(partial).unlink(missing_ok=True)
    return target


@functools.cache
def _load() -> tuple[ctypes.CDLL | None, str | None]:
    """(library, None) where the kernel runs here, else (None, why not)."""
    if not switched_on():
        return None, "MOESD_ROWS_KERNEL is off"
    if platform.machine().lower() not in ("x86_64", "amd64") or torch.backends.cpu.get_cpu_capability() not in (
        "AVX2",
        "AVX512",
    ):
        return None, "it needs an x86-64 CPU with AVX2 and FMA"
    cc = compiler()
    if cc is None:
        return None, "no C compiler (cc or gcc) on the PATH"
    try:
        library = ctypes.CDLL(str(_build(cc)))
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", "") or str(error)
        why = f"its build failed: {detail.strip().splitlines()[-1] if detail.strip() else error}"
        # the library products run instead, and the timings with them: say so, not only in linear_impl
        warnings.warn(f"moesd: the rows kernel does not run here, {why}", RuntimeWarning, stacklevel=2)
        return None, why
    library.rows_product.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_long] * 3 + [ctypes.c_int]
    library.rows_product.restype = ctypes.c_int
    return library, None


def problem() -> str | None:
    """Why the rows kernel does not run in this process, or None where it does."""
    return _load()[1]


def available() -> bool:
    return problem() is None


def fits(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> bool:
    """Whether the kernel computes x [..., K] @ WEIGHT [N, K]^T (+ BIAS): fp32 on a CPU, at most
    ROWS_MAX rows, K a multiple of 8, WEIGHT (and BIAS) contiguous, no gradient, not traced."""
    k = x.shape[-1]
    return (  # the row count first: calls of more rows leave at once
        0 < x.numel() <= ROWS_MAX * k
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and x.device.type == "cpu"
        and weight.device.type == "cpu"
        and weight.dim() == 2
        and weight.shape[1] == k
        and k % 8 == 0
        and weight.is_contiguous()
        and (bias is None or (bias.dtype == torch.float32 and bias.is_contiguous()))
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
        and not torch.compiler.is_compiling()
    )


def product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x [..., K] @ weight [N, K]^T (+ bias [N]) -> [..., N] through the kernel (`fits` first)."""
    library, why = _load()
    if library is None:
        raise RuntimeError(f"the rows kernel does not run here: {why}")
    rows = x.reshape(-1, x.shape[-1]).contiguous()
    out = torch.empty(rows.shape[0], weight.shape[0], dtype=torch.float32)
    profiled = torch.autograd._profiler_enabled()  # a range costs a few us: only under a profiler
    scope = torch.profiler.record_function(PROFILE_NAME) if profiled else contextlib.nullcontext()
    with scope:
        status = _call(library, rows, weight, bias, out)
    if status:
        raise ValueError(f"the rows kernel refused {tuple(rows.shape)} @ {tuple(weight.shape)}^T")
    return out.view(*x.shape[:-1], weight.shape[0])


def _call(library, rows, weight, bias, out) -> int:
    return library.rows_product(
        rows.data_ptr(),
        weight.data_ptr(),
        None if bias is None else bias.data_ptr(),
        out.data_ptr(),
        rows.shape[0],
        weight.shape[0],
        rows.shape[1],
        torch.get_num_threads(),
    )
