"""The lean decoder: Llama/Qwen2 (dense), Qwen2-MoE and Mixtral (routed experts), and OPT.

One forward takes s new tokens for each of B sequences (prefill, one decode step, or a
verification of gamma + 1 positions), writes their keys and values into a KVCache at each
sequence's own length, and returns logits. It never advances the cache: the caller commits the
tokens it keeps (KVCache.advance), which is how speculative decoding rolls back per sequence.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from moesd.models.attention import attend, resolve
from moesd.models.cache import KVCache
from moesd.models.linear import LINEAR_IMPLS, Linear, linear, uses_rows_kernel
from moesd.models.model_config import ModelConfig
from moesd.models.moe import MLP, MoE


class RMSNorm(nn.Module):
    def __init__(self, hidden: int, eps: float, **factory):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden, **factory))
        self.eps = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.to(torch.promote_types(dtype, torch.float32))  # at least fp32 statistics
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def rope_tables(head_dim: int, max_len: int, theta: float, device, dtype):
    """cos, sin: [max_len, head_dim] (frequencies repeated for the two halves)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64, device=device) / head_dim))
    freqs = torch.outer(torch.arange(max_len, dtype=torch.float64, device=device), inv_freq)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, **factory):
        super().__init__()
        h, nh, nkv, d = cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        bias = cfg.enable_bias if cfg.is_opt else cfg.qkv_bias
        self.q = Linear(h, nh * d, bias=bias, **factory)
        self.k = Linear(h, nkv * d, bias=bias, **factory)
        self.v = Linear(h, nkv * d, bias=bias, **factory)
        self.o = Linear(nh * d, h, bias=cfg.enable_bias if cfg.is_opt else False, **factory)
        self.nh, self.nkv, self.d = nh, nkv, d
        self.impl = "sdpa"  # the kernel (moesd.models.attention); Transformer.finalize picks it per device

    def forward(self, x, cache: KVCache, layer: int, positions, mask, upto: int, rope):
        b, s, _ = x.shape
        q = self.q(x).view(b, s, self.nh, self.d).transpose(1, 2)  # [B, nh, s, d]
        k = self.k(x).view(b, s, self.nkv, self.d).transpose(1, 2)  # [B, nkv, s, d]
        v = self.v(x).view(b, s, self.nkv, self.d).transpose(1, 2)
        if rope is not None:
            cos, sin = rope  # [B, 1, s, d]
            q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        cache.write(layer, k, v, positions)
        keys, values = cache.view(layer, upto)  # [B, nkv, T, d]
        out = attend(q, keys, values, mask, self.impl)
        return self.o(out.transpose(1, 2).reshape(b, s, self.nh * self.d))


class OPTMLP(nn.Module):
    def __init__(self, cfg: ModelConfig, **factory):
        super().__init__()
        self.fc1 = Linear(cfg.hidden_size, cfg.intermediate_size, bias=cfg.enable_bias, **factory)
        self.fc2 = Linear(cfg.intermediate_size, cfg.hidden_size, bias=cfg.enable_bias, **factory)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, index: int, expert_impl: str, **factory):
        super().__init__()
        self.cfg = cfg
        if cfg.is_opt:
            self.norm1 = nn.LayerNorm(cfg.hidden_size, eps=cfg.norm_eps, **factory)
            self.norm2 = nn.LayerNorm(cfg.hidden_size, eps=cfg.norm_eps, **factory)
            self.mlp = OPTMLP(cfg, **factory)
        else:
            self.norm1 = RMSNorm(cfg.hidden_size, cfg.norm_eps, **factory)
            self.norm2 = RMSNorm(cfg.hidden_size, cfg.norm_eps, **factory)
            if cfg.sparse_layers[index]:
                self.mlp = MoE(
                    cfg.hidden_size,
                    cfg.moe_intermediate_size,
                    cfg.num_experts,
                    cfg.top_k,
                    norm_topk_prob=cfg.norm_topk_prob,
                    shared_width=cfg.shared_expert_intermediate_size,
                    impl=expert_impl,
                    **factory,
                )
            else:
                self.mlp = MLP(cfg.hidden_size, cfg.intermediate_size, **factory)
        self.attn = Attention(cfg, **factory)
        self.index = index

    def _ffn(self, x):
        if isinstance(self.mlp, MoE):
            b, s, h = x.shape
            return self.mlp(x.reshape(b * s, h)).view(b, s, h)
        return self.mlp(x)

    def forward(self, x, cache, positions, mask, upto, rope):
        if self.cfg.is_opt and not self.cfg.pre_layer_norm:  # post-LN (opt-350m)
            x = self.norm1(x + self.attn(x, cache, self.index, positions, mask, upto, rope))
            return self.norm2(x + self._ffn(x))
        x = x + self.attn(self.norm1(x), cache, self.index, positions, mask, upto, rope)
        return x + self._ffn(self.norm2(x))


class Transformer(nn.Module):
    def __init__(
        self,
        cfg: ModelConfig,
        *,
        dtype=torch.float32,
        device="cpu",
        expert_impl="auto",
        attention_impl="auto",
        linear_impl="auto",
    ):
        super().__init__()
        resolve(attention_impl, torch.device("cpu"))  # a bad name stops here, before any weight
        if linear_impl not in LINEAR_IMPLS:
            raise ValueError(f"linear implementation must be one of {LINEAR_IMPLS}, got {linear_impl!r}")
        self.requested_attention, self.requested_linear = attention_impl, linear_impl
        factory = {"dtype": dtype, "device": device}
        self.cfg = cfg
        width = cfg.word_embed_proj_dim or cfg.hidden_size
        self.embed = nn.Embedding(cfg.vocab_size, width, **factory)
        if cfg.is_opt:
            self.pos_embed = nn.Embedding(cfg.max_position_embeddings + 2, cfg.hidden_size, **factory)  # offset 2
            has_proj = width != cfg.hidden_size
            self.project_in = Linear(width, cfg.hidden_size, bias=False, **factory) if has_proj else None
            self.project_out = Linear(cfg.hidden_size, width, bias=False, **factory) if has_proj else None
            self.norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.norm_eps, **factory) if cfg.final_layer_norm else None
        else:
            self.norm = RMSNorm(cfg.hidden_size, cfg.norm_eps, **factory)
        self.layers = nn.ModuleList(Block(cfg, i, expert_impl, **factory) for i in range(cfg.num_layers))
        self.lm_head = None if cfg.tie_word_embeddings else Linear(width, cfg.vocab_size, bias=False, **factory)
        self._rope = None
        self.cuda_graphs = False  # capture fixed-shape forwards on CUDA (moesd.models.graphs)
        self.compiled = False  # torch.compile the fixed-shape forward on a CPU (moesd.models.compiled)
        self.recording = False  # router_recording is on: forwards run eagerly (a replay records nothing)
        self.rows_head = False  # a tied output layer's few rows through the rows kernel (finalize)

    # ---- set-up -------------------------------------------------------------------------------
    @property
    def device(self):
        return self.embed.weight.device

    @property
    def dtype(self):
        return self.embed.weight.dtype

    @property
    def moe_layers(self) -> list[MoE]:
        return [layer.mlp for layer in self.layers if isinstance(layer.mlp, MoE)]

    def finalize(self) -> Transformer:
        """After weights are in place: choose the expert, attention and linear kernels (packing
        the linear layers' weights where oneDNN's packed product runs), build RoPE tables."""
        for moe in self.moe_layers:
            moe.resolve_impl(self.requested_linear)
        for module in self.modules():
            if isinstance(module, Linear):
                module.pack(self.requested_linear)
        self.rows_head = uses_rows_kernel(self.embed.weight, self.requested_linear)
        for layer in self.layers:
            layer.attn.impl = resolve(self.requested_attention, self.device, self.dtype)
        if not self.cfg.is_opt:  # fixed tables for every position: graphs keep pointers to them
            length = min(self.cfg.max_position_embeddings, 1 << 16)
            self._rope = rope_tables(self.cfg.head_dim, length, self.cfg.rope_theta, self.device, self.dtype)
        return self.eval()

    @property
    def expert_impl(self) -> str:
        impls = {moe.impl for moe in self.moe_layers}
        return impls.pop() if len(impls) == 1 else ("dense" if not impls else "mixed")

    @property
    def linear_impl(self) -> str:
        """packed where every linear layer runs oneDNN's packed product, plain where none does,
        mixed where some do (linear_impl auto packs by the weight's size, moesd.models.linear);
        "+rows" where few rows take the rows kernel (moesd.models.rows_kernel)."""
        packed = [m.packed is not None for m in self.modules() if isinstance(m, Linear)]
        form = "packed" if packed and all(packed) else ("plain" if not any(packed) else "mixed")
        rows = any(m.rows for m in self.modules() if isinstance(m, Linear | MoE))
        return form + ("+rows" if rows else "")

    @property
    def attention_impl(self) -> str:
        return self.layers[0].attn.impl if len(self.layers) else "none"

    def new_cache(self, batch_size: int, max_len: int) -> KVCache:
        """An empty cache. With CUDA graphs, caches of one shape are reused (emptied), so that the
        graphs captured on them are too: a timed generation then never pays for a capture."""
        c = self.cfg
        if self.compiled:  # whole buckets: prompts a little longer or shorter share a compile
            from moesd.models.compiled import bucketed

            max_len = bucketed(max_len)
        graphed = self.cuda_graphs and self.device.type == "cuda"
        pool = self.__dict__.setdefault("_cache_pool", {})
        if graphed and (batch_size, max_len) in pool:
            cache = pool[(batch_size, max_len)]
            cache.lengths.zero_()
            return cache
        cache = KVCache(
            c.num_layers, batch_size, c.num_kv_heads, max_len, c.head_dim, dtype=self.dtype, device=self.device
        )
        if graphed:
            pool[(batch_size, max_len)] = cache
        return cache

    def _rope_for(self, positions, max_len):
        if self._rope is None or self._rope[0].shape[0] < max_len:  # a cache longer than max positions
            self._rope = rope_tables(self.cfg.head_dim, max_len, self.cfg.rope_theta, self.device, self.dtype)
        cos, sin = self._rope
        return cos[positions][:, None], sin[positions][:, None]  # [B, 1, s, d]

    @contextlib.contextmanager
    def router_recording(self):
        """Record, per forward call and MoE layer, the tokens routed to each expert.

        Yields a list that receives one [n_moe_layers, E] tensor per forward. Off by default:
        it synchronises the device, so it is never on while timing. While on, forwards run
        eagerly: a CUDA-graph replay would skip the Python that records.
        """
        calls: list = []
        for moe in self.moe_layers:
            moe.record = []
        self.recording = True
        try:
            yield calls
        finally:
            self.recording = False
            per_layer = [moe.record for moe in self.moe_layers]
            for moe in self.moe_layers:
                moe.record = None
            if per_layer:
                calls.extend(torch.stack(step) for step in zip(*per_layer, strict=True))

    # ---- forward ------------------------------------------------------------------------------
    @torch.inference_mode()
    def forward(self, input_ids: torch.Tensor, cache: KVCache, last_only: torch.Tensor | None = None):
        """input_ids [B, s] at slots cache.lengths + 0..s-1. Returns logits [B, s, V], or [B, V]
        at position last_only[b] of each sequence when last_only ([B] indices) is given."""
        if self.cuda_graphs and last_only is None and not self.recording:
            from moesd.models.graphs import graphs_supported, run_graphed

            if graphs_supported(self):
                return run_graphed(self, input_ids, cache)
        upto = int(cache.lengths.max()) + input_ids.shape[1]
        if upto > cache.max_len:
            raise ValueError(f"KV cache overflow: {upto} slots needed, {cache.max_len} allocated")
        if self.compiled and last_only is None and not self.recording:
            from moesd.models.compiled import run_compiled

            return run_compiled(self, input_ids, cache)
        return self._forward(input_ids, cache, last_only, upto)

    @torch.inference_mode()
    def forward_static(self, input_ids: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """The same forward with fixed shapes and no host synchronisation: attention spans the
        whole cache (masked by slot). What CUDA graphs capture; its CPU twin in the tests."""
        return self._forward(input_ids, cache, None, cache.max_len)

    def _forward(self, input_ids, cache: KVCache, last_only, upto: int):
        b, s = input_ids.shape
        positions = cache.positions(s)  # [B, s]
        slots = torch.arange(upto, device=self.device)
        mask = (slots[None, None, :] <= positions[:, :, None])[:, None]  # [B, 1, s, T] causal by slot
        x = self.embed(input_ids)
        rope = None
        if self.cfg.is_opt:
            if self.project_in is not None:
                x = self.project_in(x)
            x = x + self.pos_embed(positions + 2)
        else:
            rope = self._rope_for(positions, cache.max_len)
        for layer in self.layers:
            x = layer(x, cache, positions, mask, upto, rope)
        if last_only is not None:
            x = x[torch.arange(b, device=self.device), last_only][:, None]  # [B, 1, H]
        if self.norm is not None:
            x = self.norm(x)
        if self.cfg.is_opt and self.project_out is not None:
            x = self.project_out(x)
        logits = self.lm_head(x) if self.lm_head is not None else linear(x, self.embed.weight, rows=self.rows_head)
        return logits[:, 0] if last_only is not None else logits
