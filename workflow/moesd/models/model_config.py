"""ModelConfig: the architecture facts the lean decoder needs, read from a Hugging Face
config.json dict (families: llama, mistral, qwen2, qwen2_moe, mixtral, opt)."""

from __future__ import annotations

from dataclasses import dataclass, field

SUPPORTED = ("llama", "mistral", "qwen2", "qwen2_moe", "mixtral", "opt")


class ModelConfigError(ValueError):
    """A config the engine cannot run (family, rope scaling, sliding window ...)."""


@dataclass(frozen=True)
class ModelConfig:
    family: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int  # dense MLP width (OPT: ffn_dim)
    max_position_embeddings: int
    tie_word_embeddings: bool
    norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    qkv_bias: bool = False  # Qwen2: q/k/v with bias, o without
    # MoE (Qwen2-MoE, Mixtral)
    num_experts: int = 0
    top_k: int = 0
    moe_intermediate_size: int = 0
    shared_expert_intermediate_size: int = 0  # 0: no shared expert
    norm_topk_prob: bool = True
    sparse_layers: tuple[bool, ...] = ()
    # OPT
    pre_layer_norm: bool = True  # do_layer_norm_before
    final_layer_norm: bool = True
    word_embed_proj_dim: int = 0
    enable_bias: bool = True
    eos_token_id: tuple[int, ...] = field(default_factory=tuple)

    @property
    def is_moe(self) -> bool:
        return self.num_experts > 0 and any(self.sparse_layers)

    @property
    def is_opt(self) -> bool:
        return self.family == "opt"


def _eos(raw) -> tuple[int, ...]:
    if raw is None:
        return ()
    return tuple(raw) if isinstance(raw, list) else (int(raw),)


def _rope_theta(hf: dict) -> float:
    params = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling") or {}
    kind = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if kind != "default":
        raise ModelConfigError(f"rope scaling {kind!r} is not supported by the engine")
    return float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))


def from_hf(hf: dict) -> ModelConfig:
    """Build a ModelConfig from a Hugging Face config dict; unsupported features fail loudly."""
    family = hf.get("model_type")
    if family not in SUPPORTED:
        raise ModelConfigError(
            f"model_type {family!r} is not supported by the engine (supported: {', '.join(SUPPORTED)})"
        )
    if hf.get("use_sliding_window"):
        raise ModelConfigError("sliding-window attention is not supported by the engine")
    layers = hf["num_hidden_layers"]
    if family == "opt":
        heads = hf["num_attention_heads"]
        return ModelConfig(
            family=family,
            vocab_size=hf["vocab_size"],
            hidden_size=hf["hidden_size"],
            num_layers=layers,
            num_heads=heads,
            num_kv_heads=heads,
            head_dim=hf["hidden_size"] // heads,
            intermediate_size=hf["ffn_dim"],
            max_position_embeddings=hf["max_position_embeddings"],
            tie_word_embeddings=hf.get("tie_word_embeddings", True),
            norm_eps=1e-5,
            pre_layer_norm=hf.get("do_layer_norm_before", True),
            final_layer_norm=hf.get("do_layer_norm_before", True) and not hf.get("_remove_final_layer_norm", False),
            word_embed_proj_dim=hf.get("word_embed_proj_dim", hf["hidden_size"]),
            enable_bias=hf.get("enable_bias", True),
            eos_token_id=_eos(hf.get("eos_token_id")),
        )
    if hf.get("activation_function", hf.get("hidden_act", "silu")) != "silu":
        raise ModelConfigError(f"activation {hf.get('hidden_act')!r} is not supported (silu only)")
    heads = hf["num_attention_heads"]
    experts, top_k, sparse = 0, 0, (False,) * layers
    moe_width, shared_width, norm_topk = 0, 0, True
    if family == "qwen2_moe":
        experts, top_k = hf["num_experts"], hf["num_experts_per_tok"]
        step, only_mlp = hf.get("decoder_sparse_step", 1), set(hf.get("mlp_only_layers", []))
        sparse = tuple(i not in only_mlp and experts > 0 and (i + 1) % step == 0 for i in range(layers))
        moe_width, shared_width = hf["moe_intermediate_size"], hf.get("shared_expert_intermediate_size", 0)
        norm_topk = hf.get("norm_topk_prob", False)
    elif family == "mixtral":
        experts, top_k = hf["num_local_experts"], hf["num_experts_per_tok"]
        sparse, moe_width = (True,) * layers, hf["intermediate_size"]
    if top_k > experts:
        raise ModelConfigError(f"num_experts_per_tok={top_k} exceeds the {experts} experts")
    return ModelConfig(
        family=family,
        vocab_size=hf["vocab_size"],
        hidden_size=hf["hidden_size"],
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=hf.get("num_key_value_heads") or heads,
        head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
        intermediate_size=hf.get("intermediate_size", 0),
        max_position_embeddings=hf.get("max_position_embeddings", 4096),
        tie_word_embeddings=hf.get("tie_word_embeddings", False),
        norm_eps=hf.get("rms_norm_eps", 1e-6),
        rope_theta=_rope_theta(hf),
        qkv_bias=family in ("qwen2", "qwen2_moe") or bool(hf.get("attention_bias", False)),
        num_experts=experts,
        top_k=top_k,
        moe_intermediate_size=moe_width,
        shared_expert_intermediate_size=shared_width,
        norm_topk_prob=norm_topk,
        sparse_layers=sparse,
        eos_token_id=_eos(hf.get("eos_token_id")),
    )
