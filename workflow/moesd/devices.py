"""Devices and dtypes: the device a run uses when none is named, and the dtype its models are
built and timed in (bf16 on CUDA and on a CPU with native bf16 matrix products, fp32 elsewhere).
Read by the model loader, the hardware probe and the latency stage alike."""

from __future__ import annotations

import torch


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device) -> torch.dtype:
    """fp32 on CPU, bf16 on CUDA."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 matrix products natively here (AVX512-BF16, AMX); elsewhere
    they are emulated and slower than fp32."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def timing_dtype(name: str, device) -> torch.dtype:
    """The dtype of timed models: NAME, or for "auto" bf16 on CUDA and on a CPU with native bf16
    matrix products (fp32 elsewhere). On a CPU, fp32 takes a GEMV path at one token that is
    several times faster per weight byte than its GEMM at two, a kernel switch that bends
    T_T(B, s) at B = 1; oneDNN's bf16 kernels have no such switch (see latency.dtype)."""
    if name != "auto":
        return DTYPES[name]
    if torch.device(device).type == "cuda" or cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32
