"""Linear layers whose time on a CPU follows the weights they read, as on a GPU.

A decode step multiplies a few rows (B sequences x s new tokens) by each weight matrix. While
that stays below the ridge point, its time should be the time to read the weights, flat in the
number of rows, which is what Fig. 3's target efficiency T_T(B, 1) / T_T(B, gamma) rests on. On a
CPU, `F.linear` does not behave so: on plain weights oneDNN reads them at about half the memory's
bandwidth at a decode step's few rows (bf16 and fp32), and fp32 at two or more rows takes an
x @ W^T GEMM about 2x slower per byte than at one row. The products, per form:

- **packed** (inference on a CPU, the default for bf16 weights and fp32 weights of PACK_MIN_BYTES
  or more): oneDNN's product on a copy of the weight laid out in its blocked format once, at load
  (`Linear.pack`; an MoE's experts too, moesd.models.moe).
  `workflow/scripts/bench_cpu_linear.py`: 1.1-1.5x faster than F.linear in bf16 and 2-4x in fp32
  from 2 rows on. In the default models' steps it is faster at every row count, one row included
  (the dense bf16 AR step at B = 1: 9.7 ms packed, 12.1 with one row weight-major, 13.4
  unpacked). The copy doubles those weights' host memory.
- **Small fp32 weights stay unpacked** (`linear_impl: auto`): oneDNN's packed product costs
  about 25-30 us a call whatever the weight (fp32, 2 cores: a 256 x 256 weight at one row 35 us
  packed, 9 us unpacked), so below PACK_MIN_BYTES the unpacked forms are faster up to 4 rows and
  within 1.3x beyond; from 1 MiB on the packed product is as fast or faster from 2 rows (up to
  2.2x) and within 1.6x at one (docs/benchmarks.md). bf16 weights are packed at every size (the
  tiny draft's bf16 step was faster packed). `linear_impl: packed` packs every weight.
- **weight-major** (W @ x^T)^T without a packed copy (`linear_impl: plain`, the eager twin), for
  fp32 from 2 to WEIGHT_MAJOR_MAX_ROWS rows: it reads the weights at nearly one-row speed where
  F.linear's GEMM reads them 2x slower (2048 x 8192: 3.4 ms at one row, 7 ms at two, 9-12 at
  five, on 2 cores).
- **the rows kernel** (`linear_impl: auto`, fp32 on a CPU with AVX2, at most ROWS_MAX rows;
  moesd.models.rows_kernel): each row of the weight streamed once by a small C kernel, ahead of
  every form above at those rows (26-35 GB/s at one row where the probe reads 29 GB/s) and level
  with the packed one at ROWS_MAX. It needs no copy: it reads the [out, in] weight itself.
- **F.linear** everywhere else: training, CUDA, other dtypes, one row or many without a packed copy.

The forms agree to the dtype's rounding (bf16: the same sums; tests/test_models.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from moesd.models import rows_kernel

# without a packed copy, above this many rows the GEMM x @ W^T is as fast in fp32
# (bench_cpu_linear.py on a 2-core AMD EPYC: weight-major 1.07-1.20x faster at 64 rows)
WEIGHT_MAJOR_MAX_ROWS = 64
LINEAR_IMPLS = ("auto", "packed", "plain")
# auto packs an fp32 weight of this many bytes or more (smaller ones: the packed call's fixed cost
# outweighs its faster read; fp32 on a 2-core AVX2 EPYC, docs/benchmarks.md)
PACK_MIN_BYTES = 1 << 20
PACKED_DTYPES = (torch.bfloat16, torch.float32)


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


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, rows: bool = False) -> torch.Tensor:
    """x [..., in] @ weight [out, in]^T (+ bias [out]) -> [..., out]: the faster unpacked form
    (the rows kernel first where ROWS says it may run and it fits)."""
    if rows and rows_kernel.fits(x, weight, bias):
        return rows_kernel.product(x, weight, bias)
    return weight_major_product(x, weight, bias) if weight_major(x, weight) else F.linear(x, weight, bias)


def weight_major_product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x [..., in] @ weight [out, in]^T (+ bias) computed as (W @ x^T)^T."""
    rows = x.reshape(-1, x.shape[-1])  # [M, in]
    if bias is None:
        out = torch.mm(weight, rows.t())  # [out, M]
    else:
        out = torch.addmm(bias[:, None], weight, rows.t())
    return out.t().contiguous().view(*x.shape[:-1], weight.shape[0])


def packed_supported(weight: torch.Tensor) -> bool:
    """Whether oneDNN's packed product runs WEIGHT: fp32 on a CPU, or bf16 on one with native
    bf16 products."""
    if weight.device.type != "cpu" or weight.dtype not in PACKED_DTYPES or not torch.backends.mkldnn.is_available():
        return False
    return weight.dtype == torch.float32 or torch.ops.mkldnn._is_mkldnn_bf16_supported()


def packs(weight: torch.Tensor, impl: str) -> bool:
    """Whether linear implementation IMPL packs WEIGHT: auto where packed_supported, except a
    small fp32 weight (`small_weight`); packed where supported (else an error); plain never."""
    if impl not in LINEAR_IMPLS:
        raise ValueError(f"linear implementation must be one of {LINEAR_IMPLS}, got {impl!r}")
    if impl == "packed" and not packed_supported(weight):
        raise RuntimeError(f"no packed product for {weight.dtype} on {weight.device}")
    if impl == "plain" or not packed_supported(weight):
        return False
    return impl == "packed" or not small_weight(weight)


def small_weight(weight: torch.Tensor) -> bool:
    """Whether WEIGHT is an fp32 weight of fewer than PACK_MIN_BYTES (auto leaves it unpacked).
    bf16 weights are packed whatever their size: measured on the AVX512-BF16 machine, the tiny
    draft's step (every weight small) took 0.90-0.95x the unpacked step's time packed."""
    return weight.dtype == torch.float32 and weight.numel() * weight.element_size() < PACK_MIN_BYTES


def pack_weight(weight: torch.Tensor) -> torch.Tensor:
    """A copy of WEIGHT [out, in] in oneDNN's blocked layout (packed_supported weights)."""
    return torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous())


def product(
    x: torch.Tensor, weight: torch.Tensor, packed: torch.Tensor | None, bias=None, rows: bool = False
) -> torch.Tensor:
    """x [..., in] @ weight^T (+ bias): through the rows kernel where ROWS allows and it fits,
    else through PACKED (a pack_weight copy of WEIGHT) in inference, else `linear`."""
    if rows and rows_kernel.fits(x, weight, bias):
        return rows_kernel.product(x, weight, bias)
    if packed is not None and not torch.is_grad_enabled():
        return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")
    return linear(x, weight, bias)


def uses_rows_kernel(weight: torch.Tensor, impl: str) -> bool:
    """Whether linear implementation IMPL runs WEIGHT's products of few rows through the rows
    kernel: auto, on an fp32 CPU weight, where the kernel runs in this process."""
    return impl == "auto" and weight.dtype == torch.float32 and weight.device.type == "cpu" and rows_kernel.available()


def _version(tensor: torch.Tensor) -> int:
    """TENSOR's version counter (bumped by every in-place change); -1 for an inference tensor,
    which has none (and which no code outside inference mode can change)."""
    try:
        return tensor._version
    except RuntimeError:
        return -1


def weight_state(*tensors: torch.Tensor) -> tuple[tuple[int, int], ...]:
    """Each tensor's storage and version: a packed copy made at one state serves only that state
    (an in-place change, or a move by .to(), makes another)."""
    return tuple((t.data_ptr(), _version(t)) for t in tensors)


class Linear(nn.Linear):
    """nn.Linear (same parameters and state-dict keys) through `product`: once packed, oneDNN's
    product on a copy of the weight in its blocked layout."""

    packed: torch.Tensor | None = None
    packed_of: tuple = ()  # the weight's weight_state when packed
    rows: bool = False  # few rows through the rows kernel (`uses_rows_kernel`)

    def pack(self, impl: str = "auto") -> bool:
        """Lay a copy of the weight out for oneDNN's product where IMPL packs it (`packs`), and
        let the rows kernel take few rows where IMPL uses it. The copy serves inference only; a
        later change of the weight (in place, or moved by .to()) returns the layer to the
        unpacked forms. True where packed."""
        on = packs(self.weight, impl)
        self.packed = pack_weight(self.weight) if on else None
        self.packed_of = weight_state(self.weight)
        self.rows = uses_rows_kernel(self.weight, impl)
        return on

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        packed = self.packed if self.packed is not None and weight_state(self.weight) == self.packed_of else None
        return product(x, self.weight, packed, self.bias, rows=self.rows)
