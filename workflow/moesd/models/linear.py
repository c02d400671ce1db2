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
form for fp32 inference on a CPU with more than one row; everywhere else (one row, training,
other dtypes, CUDA) it is `F.linear`. The results agree to fp32 rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def weight_major(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether `linear` computes x @ W^T as (W @ x^T)^T (fp32 CPU inference, several rows)."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and x.numel() > x.shape[-1]  # more than one row
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
    )


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x [..., in] @ weight [out, in]^T (+ bias [out]) -> [..., out]."""
    if not weight_major(x, weight):
        return F.linear(x, weight, bias)
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
