"""Attention over the KV cache, with the kernel chosen per device (issue 26: measured, not assumed).

    math   the scores as a matrix product, a softmax in fp32, the values as a matrix product;
           grouped-query heads share their key-value head by a reshape, never a copy
    sdpa   torch's scaled_dot_product_attention (its flash kernel where it has one)

On a CPU the kernel is chosen per dtype and shape, as measured (a 2-core AVX512-BF16 EPYC, 16
heads of 128 and GQA 12/4, over 129-133 slots, B 1 to 64; docs/benchmarks.md): in bf16 the math
path takes 0.08-0.69 of sdpa's time at every decode shape (B = 64, one query: 5.0 against 15.7 ms
a layer), since torch's CPU flash kernel splits its work by query blocks and a decode step has one
query per sequence; in fp32 sdpa is the faster with one query (1.0-1.9x) and the math path with
several (0.67-0.94), so fp32 goes by the queries (`by_shape`). On CUDA, sdpa. All give the same
attention (the tests compare them, and our logits with transformers').
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ATTENTION_IMPLS = ("auto", "math", "sdpa", "by_shape")


def resolve(impl: str, device: torch.device, dtype: torch.dtype = torch.bfloat16) -> str:
    """IMPL for weights on DEVICE in DTYPE: auto is sdpa off a CPU, by_shape for fp32 on a CPU,
    math for the other dtypes there."""
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f"attention implementation must be one of {ATTENTION_IMPLS}, got {impl!r}")
    if impl != "auto":
        return impl
    if device.type != "cpu":
        return "sdpa"
    return "by_shape" if dtype == torch.float32 else "math"


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, impl: str) -> torch.Tensor:
    """Softmax(q k^T / sqrt(d) where MASK) v. q [B, nh, s, d]; k, v [B, nkv, T, d] (nh a multiple
    of nkv: head h reads key-value head h // (nh / nkv)); MASK [B, 1, s, T], True where a query
    may attend. Returns [B, nh, s, d]."""
    b, nh, s, d = q.shape
    nkv = k.shape[1]
    if impl == "by_shape":
        impl = "sdpa" if s == 1 else "math"
    if impl == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=nkv != nh)
    group = nh // nkv
    grouped = q.reshape(b, nkv, group * s, d)  # each key-value head's query heads, one after another
    scores = torch.matmul(grouped, k.transpose(-1, -2)).float() * d**-0.5  # [B, nkv, group*s, T]
    allowed = mask.unsqueeze(2).expand(b, 1, group, s, mask.shape[-1]).reshape(b, 1, group * s, -1)
    weights = torch.softmax(scores.masked_fill_(~allowed, float("-inf")), dim=-1).to(v.dtype)
    return torch.matmul(weights, v).reshape(b, nh, s, d)
