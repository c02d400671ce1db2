"""Mixture-of-Experts FFN: top-k routing, tokens grouped by expert, one grouped matrix product
per projection (torch._grouped_mm) or a loop over the active experts only.

"auto" loops over a CPU's experts packed for oneDNN's product where moesd.models.linear packs
them (bf16 with native bf16 products; fp32 experts of PACK_MIN_BYTES or more; resolve_impl); in
fp32 an expert's share of up to ROWS_MAX rows takes the rows kernel (moesd.models.rows_kernel)
instead, and with it smaller experts are looped over too ("by_rows" below ROWS_MAX tokens per
expert on average). Without the kernel, smaller fp32 experts, which a packed call's fixed cost
would dominate, take grouped_mm where it runs (a Qwen2-MoE layer of 16 experts of 256 x 256, top 4, 2 cores: 0.63-0.90x the loop's time
from 1 to 160 tokens). Other unpacked experts (`linear_impl: plain`, or no packed product for the
dtype) take grouped_mm too, except for fp32 on a CPU: there it picks per call by the
tokens each expert gets on average (N K / E), "by_rows". Below GROUPED_MIN_ROWS the loop, with
each expert's weights laid out [out, in] in memory, multiplies weight-major
(moesd.models.linear), which reads an expert's weights at one-token speed for the few tokens a
decode step routes to it; the CPU grouped product reads them up to 2x slower per byte at 2-5
tokens (64 experts of 1536 x 768: 15 ms against 28 ms at 2 tokens each, 20 against 30-36 at 5,
on 2 cores), a kernel switch that would bend T_T(B, s) at small B. From GROUPED_MIN_ROWS on the
grouped product over the parameters as loaded: a Qwen2-57B-shaped MoE of 4 layers (hidden 512,
64 experts of 256, top 8) forwarded B = 64 x 5 tokens in 164 ms grouped against 185 ms looped
(transformers' own forward: 216 ms; engine-check at B = 16, 64 and s = 1, 5 on 2 cores). The
loop's [out, in] copy doubles the routed experts' memory in this mode, a CPU's small models only.

Shapes: N tokens (all sequences' new tokens flattened), H hidden, E experts, K top-k,
I expert width. Expert weights are stacked: gate_up [E, H, 2I] (gate then up), down [E, I, H].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from moesd.models import rows_kernel
from moesd.models.linear import Linear, pack_weight, packs, product, small_weight, uses_rows_kernel, weight_state

EXPERT_IMPLS = ("auto", "grouped_mm", "loop")
GROUPED_MIN_ROWS = 8  # by_rows: the grouped product from this many tokens per expert on average


class MLP(nn.Module):
    """SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

    def __init__(self, hidden: int, width: int, **factory):
        super().__init__()
        self.gate = Linear(hidden, width, bias=False, **factory)
        self.up = Linear(hidden, width, bias=False, **factory)
        self.down = Linear(width, hidden, bias=False, **factory)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


def grouped_mm_available(hidden: int, width: int, dtype: torch.dtype, device: torch.device) -> bool:
    """torch._grouped_mm needs 16-byte aligned rows; probe it once on this device and dtype."""
    if not hasattr(torch, "_grouped_mm"):
        return False
    size = torch.tensor([], dtype=dtype).element_size()
    if (hidden * size) % 16 or (width * size) % 16:
        return False
    try:
        x = torch.zeros(4, hidden, dtype=dtype, device=device)
        w = torch.zeros(2, hidden, width, dtype=dtype, device=device)
        torch._grouped_mm(x, w, offs=torch.tensor([1, 4], dtype=torch.int32, device=device))
    except (RuntimeError, NotImplementedError, TypeError):
        return False
    return True


class MoE(nn.Module):
    def __init__(self, hidden, width, n_experts, top_k, *, norm_topk_prob, shared_width=0, impl="auto", **factory):
        super().__init__()
        self.n_experts, self.top_k, self.width, self.norm_topk_prob = n_experts, top_k, width, norm_topk_prob
        self.router = Linear(hidden, n_experts, bias=False, **factory)
        self.gate_up = nn.Parameter(torch.empty(n_experts, hidden, 2 * width, **factory))
        self.down = nn.Parameter(torch.empty(n_experts, width, hidden, **factory))
        self.shared = MLP(hidden, shared_width, **factory) if shared_width else None
        self.shared_gate = Linear(hidden, 1, bias=False, **factory) if shared_width else None
        if impl not in EXPERT_IMPLS:
            raise ValueError(f"expert implementation must be one of {EXPERT_IMPLS}, got {impl!r}")
        self.requested_impl = impl
        self.impl = "loop"
        self.loop_weights = (self.gate_up, self.down)  # the loop's expert weights (resolve_impl)
        self.packed_experts: tuple[list, list] | None = None  # each expert's packed copies (resolve_impl)
        self.packed_of: tuple = ()  # the expert weights' weight_state when packed
        self.record: list | None = None  # router instrumentation: per-call expert token counts
        self.rows = False  # an expert's few rows through the rows kernel (resolve_impl)

    def resolve_impl(self, linear_impl: str = "auto") -> str:
        """Pick the expert implementation for the device and dtype the weights now live on; where
        LINEAR_IMPL packs an expert's matrix (`packs`; auto: fp32 by its size), a CPU's experts are
        packed for oneDNN's product (each expert's matrices once, moesd.models.linear) and looped
        over: 1.2-1.6x faster than the grouped product at every token count of the default MoE's
        layer in bf16 (64 experts of 1536 x 384, 1 to 320 tokens; docs/benchmarks.md)."""
        available = grouped_mm_available(self.gate_up.shape[1], self.width, self.gate_up.dtype, self.gate_up.device)
        if self.requested_impl == "grouped_mm" and not available:
            raise RuntimeError("torch._grouped_mm is not available for this device, dtype and shape")
        cpu_fp32 = self.gate_up.device.type == "cpu" and self.gate_up.dtype == torch.float32
        packed = packs(self.gate_up[0], linear_impl)  # an expert's larger matrix (auto: by its size)
        self.rows = uses_rows_kernel(self.gate_up, linear_impl)
        if self.requested_impl == "auto" and packed:
            self.impl = "loop"
        elif self.requested_impl == "auto":  # by_rows where the loop pays: large experts, or any with the rows kernel
            small = linear_impl == "auto" and small_weight(self.gate_up[0]) and not self.rows
            self.impl = ("by_rows" if cpu_fp32 and not small else "grouped_mm") if available else "loop"
        else:
            self.impl = self.requested_impl
        self.loop_weights = (self.gate_up, self.down)
        if self.impl in ("loop", "by_rows") and (cpu_fp32 or packed):  # [E, in, out] viewed over [E, out, in] memory
            major = tuple(w.data.transpose(1, 2).contiguous().transpose(1, 2) for w in self.loop_weights)
            if self.impl == "loop":  # the parameters themselves, so that the loop reads any later change
                self.gate_up.data, self.down.data = major
            else:
                self.loop_weights = major
        self.packed_experts = None
        if self.impl == "loop" and packed:
            self.packed_experts = tuple(
                [pack_weight(w[e].t()) for e in range(self.n_experts)] for w in self.loop_weights
            )
        self.packed_of = weight_state(self.gate_up, self.down)
        return self.impl

    def impl_for(self, n_tokens: int) -> str:
        """The implementation of a call on N_TOKENS tokens (by_rows: by the tokens per expert; with
        the rows kernel the loop runs while an expert's rows fit it on average)."""
        if self.impl != "by_rows":
            return self.impl
        most = rows_kernel.ROWS_MAX if self.rows else GROUPED_MIN_ROWS
        return "grouped_mm" if n_tokens * self.top_k >= most * self.n_experts else "loop"

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [N, H]
        probs = torch.softmax(self.router(x).float(), dim=-1)  # [N, E]
        weights, experts = torch.topk(probs, self.top_k, dim=-1)  # [N, K]
        if self.norm_topk_prob:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        flat = experts.reshape(-1)  # [N*K]
        order = torch.argsort(flat, stable=True)  # assignments grouped by expert
        token = order // self.top_k  # token of each sorted assignment
        counts = torch.zeros(self.n_experts, dtype=torch.long, device=x.device)
        counts.scatter_add_(0, flat, torch.ones_like(flat))  # [E] tokens per expert (no host sync)
        if self.record is not None:
            self.record.append(counts.detach().cpu())
        xs = x[token]  # [N*K, H]
        if self.impl_for(x.shape[0]) == "grouped_mm":
            offsets = torch.cumsum(counts, 0).to(torch.int32)
            h = torch._grouped_mm(xs, self.gate_up, offs=offsets)  # [N*K, 2I]
            h = (F.silu(h[:, : self.width]) * h[:, self.width :]).contiguous()
            out = torch._grouped_mm(h, self.down, offs=offsets)  # [N*K, H]
        else:
            out = torch.empty_like(xs)
            gate_up, down = self.loop_weights
            current = self.packed_experts is not None and weight_state(self.gate_up, self.down) == self.packed_of
            packed_gate_up, packed_down = self.packed_experts if current else (None, None)
            start = 0
            for e, n in enumerate(counts.tolist()):  # active experts only
                if n:
                    h = product(
                        xs[start : start + n], gate_up[e].t(), packed_gate_up and packed_gate_up[e], rows=self.rows
                    )  # [n, 2I]
                    out[start : start + n] = product(
                        F.silu(h[:, : self.width]) * h[:, self.width :],
                        down[e].t(),
                        packed_down and packed_down[e],
                        rows=self.rows,
                    )
                    start += n
        out = out * weights.reshape(-1)[order].to(out.dtype)[:, None]
        y = torch.zeros_like(x).index_add_(0, token, out)  # [N, H]
        if self.shared is not None:
            y = y + torch.sigmoid(self.shared_gate(x)) * self.shared(x)
        return y
