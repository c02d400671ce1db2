"""Linear layers whose time on a CPU follows the weights they read, as on a GPU.

A decode step multiplies a few rows (B sequences x s new tokens) by each weight matrix. While
that stays below the ridge point, its time should be the time to read the weights, flat in the
number of rows, which is what Fig. 3's target efficiency T_T(B, 1) / T_T(B, gamma) rests on. On
an x86 CPU without native bf16 (AVX2 only), fp32 `F.linear` does not behave so: one row takes a
matrix-vector kernel at about the copy bandwidth, and two or more rows an x @ W^T GEMM that reads
the weights about 2x slower per byte (2048 x 8192: 3.4 ms at one row, 7 ms at two, 9-12 ms at
five, on 2 cores), which would put a kernel switch, not the hardware's roofline, into the
efficiency at B = 1 and 2. The same product computed weight-major, (W @ x^T)^T, reads the weights
at nearly one-row speed up to about 16 rows (4.8 ms at two, 6-8 at five). `linear` takes that
form for fp32 inference on a CPU with 2 to WEIGHT_MAJOR_MAX_ROWS rows; everywhere else (one row,
many rows, training, other dtypes, CUDA) it is `F.linear`. The results agree to fp32 rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# above this many rows the GEMM x @ W^T is as fast (workflow/scripts/bench_cpu_linear.py on a
# 2-core AMD EPYC with native bf16: weight-major 1.07-1.20x faster at 64 rows, 0.99-1.04x at 320)
WEIGHT_MAJOR_MAX_ROWS = 64


def weight_major(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether `linear` computes x @ W^T as (W @ x^T)^T (fp32 CPU inference, 2 to
    WEIGHT_MAJOR_MAX_ROWS rows)."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and x.shape[-1] < x.numel() <= WEIGHT_MAJOR_MAX_ROWS * x.shape[-1]  # 2 to the most rows
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
    )


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x [..., in] @ weight [out, in]^T (+ bias [out]) -> [..., out]: the faster form for the shape."""
    return weight_major_product(x, weight, bias) if weight_major(x, weight) else F.linear(x, weight, bias)


def weight_major_product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x [..., in] @ weight [out, in]^T (+ bias) computed as (W @ x^T)^T."""
    rows = x.reshape(-1, x.shape[-1])  # [M, in]
    if bias is None:
        out = torch.mm(weight, rows.t())  # [out, M]
    else:
        out = torch.addmm(bias[:, None], weight, rows.t())
    return out.t().contiguous().view(*x.shape[:-1], weight.shape[0])


class Linear(nn.Linear):
    """nn.Linear (same parameters and state-dict keys) through `linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
