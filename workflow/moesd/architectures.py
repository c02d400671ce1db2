"""Real model architectures (Hugging Face config.json files in data/architectures) and their
parameter counts per component.

The counts feed the bounds of Algorithm 1 (App. C.2: V_dense, V_exp, V_draft) and the
uncalibrated roofline prediction. Formulas follow data/architectures/SOURCES.md, which checks
them against transformers' own parameter count for every file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from moesd.paths import ARCHITECTURES_DIR

FAMILIES = ("llama", "mistral", "qwen2", "qwen2_moe", "qwen3_moe", "mixtral", "olmoe", "opt", "deepseek_v2")
DENSE_CONVENTIONS = ("non_routed", "non_ffn")


class ArchitectureError(ValueError):
    """An unknown architecture name, a bad override or an unsupported family."""


def available_architectures() -> list[str]:
    """Names of the complete configs in data/architectures (partial files are left out)."""
    return sorted(p.stem for p in ARCHITECTURES_DIR.glob("*.json") if ".partial" not in p.name)


def load_architecture(name: str, overrides: dict | None = None) -> dict:
    """The config dict of architecture NAME with OVERRIDES applied (keys must already exist or
    be a known optional key of the family, so typos fail loudly)."""
    path = ARCHITECTURES_DIR / f"{name}.json"
    if not ARCHITECTURES_DIR.is_dir():
        raise ArchitectureError(
            f"architecture {name!r}: no folder {ARCHITECTURES_DIR} (an installed moesd reads a checkout's data/: "
            "set MOESD_DATA to it)"
        )
    if not path.is_file():
        known = ", ".join(available_architectures())
        raise ArchitectureError(f"unknown architecture {name!r} (known: {known})")
    config = json.loads(path.read_text())
    for key, value in (overrides or {}).items():
        if key not in config and key not in _OPTIONAL_KEYS:
            raise ArchitectureError(f"architecture {name!r} has no key {key!r} to override")
        config[key] = value
    if config.get("model_type") not in FAMILIES:
        raise ArchitectureError(f"architecture {name!r}: unsupported model_type {config.get('model_type')!r}")
    check_shape(name, config)
    return config


_SIZES = (  # positive integers wherever a config has them
    "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size",
    "moe_intermediate_size", "vocab_size", "num_experts", "num_local_experts", "n_routed_experts",
    "num_experts_per_tok", "ffn_dim", "word_embed_proj_dim", "max_position_embeddings", "head_dim",
)  # fmt: skip


def expert_count(config: dict) -> int | None:
    """E of a Hugging Face config (Qwen2-MoE's num_experts, Mixtral's num_local_experts,
    DeepSeek's n_routed_experts); None for a dense model."""
    return next((config[k] for k in ("num_experts", "num_local_experts", "n_routed_experts") if config.get(k)), None)


def check_shape(name: str, config: dict) -> None:
    """The rules a config (with its overrides) must obey for the counts and the engine to mean
    anything: sizes are positive integers, top-k within the experts, heads dividing the width
    (where no head_dim is given) and key-value heads dividing the heads. One line naming the key."""
    for key in _SIZES:
        value = config.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ArchitectureError(f"architecture {name!r}: {key}={value!r} must be a positive integer")
    shared = config.get("shared_expert_intermediate_size")
    if shared is not None and (not isinstance(shared, int) or isinstance(shared, bool) or shared < 0):
        raise ArchitectureError(
            f"architecture {name!r}: shared_expert_intermediate_size={shared!r} must be an integer >= 0"
        )
    experts = expert_count(config)
    top_k = config.get("num_experts_per_tok")
    if experts is not None and top_k is not None and top_k > experts:
        raise ArchitectureError(f"architecture {name!r}: num_experts_per_tok={top_k} exceeds the {experts} experts")
    heads, width = config.get("num_attention_heads"), config.get("hidden_size")
    if heads and width and "head_dim" not in config and config["model_type"] != "deepseek_v2" and width % heads:
        raise ArchitectureError(
            f"architecture {name!r}: num_attention_heads={heads} does not divide hidden_size={width}"
        )
    kv = config.get("num_key_value_heads")
    if heads and kv and (kv > heads or heads % kv):
        raise ArchitectureError(
            f"architecture {name!r}: num_key_value_heads={kv} does not divide num_attention_heads={heads}"
        )


_OPTIONAL_KEYS = {"head_dim", "mlp_only_layers", "decoder_sparse_step", "attention_bias", "tie_word_embeddings"}


def split_problem(config: dict, ranks: int) -> str | None:
    """Why CONFIG's attention heads do not split over RANKS tensor-parallel ranks in vLLM (its
    query heads must divide evenly; its KV heads divide evenly or are replicated), else None."""
    heads = config.get("num_attention_heads")
    kv = config.get("num_key_value_heads") or heads
    if heads and heads % ranks:
        return f"{heads} attention heads do not split over tensor parallel {ranks}"
    if kv and kv % ranks and ranks % kv:
        return f"{kv} key-value heads neither split over nor replicate across tensor parallel {ranks}"
    return None


@dataclass(frozen=True)
class ParamCount:
    """Parameter counts of one model, per component, summed over all layers."""

    model_type: str
    attention: int = 0  # q/k/v/o (+ biases, qk-norms, MLA projections)
    dense_mlp: int = 0  # FFN of dense layers
    routed_experts: int = 0  # all routed experts of all MoE layers
    routed_expert_one: int = 0  # one routed expert summed over the MoE layers (V_exp, App. C.2)
    shared_experts: int = 0  # always-on shared experts and their gates
    router: int = 0
    norms: int = 0
    embedding: int = 0  # input token embedding (a lookup, not a matrix product)
    lm_head: int = 0  # 0 when tied to the embedding
    positions: int = 0  # learned positions (OPT)
    projections: int = 0  # OPT project_in / project_out
    n_experts: int = 1  # E (1 for dense)
    top_k: int = 1  # K (1 for dense)
    moe_layers: int = 0
    layers: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def is_moe(self) -> bool:
        return self.moe_layers > 0

    @property
    def total(self) -> int:
        return (
            self.attention
            + self.dense_mlp
            + self.routed_experts
            + self.shared_experts
            + self.router
            + self.norms
            + self.embedding
            + self.lm_head
            + self.positions
            + self.projections
        )

    @property
    def active(self) -> int:
        """Weights touched per token, both the input embedding and the lm_head counted (A_all)."""
        return self.total - self.routed_experts + self.top_k * self.routed_expert_one

    def dense_params(self, convention: str = "non_routed") -> int:
        """V_dense of App. C.2: parameters read on every forward whatever the routing.

        non_routed (default): everything but the routed experts and the input-embedding lookup
            (when tied, the matrix is read as the lm_head). This is the physical meaning of
            Algorithm 1's `bias` ("loading the fixed (dense) parameters").
        non_ffn: the paper's literal wording: also without shared experts and dense MLPs.
        (App. C.2 does not say which one it meant, docs/open_choices.md; they differ ~7x for Qwen2-57B.)
        """
        if convention not in DENSE_CONVENTIONS:
            raise ValueError(f"dense convention must be one of {DENSE_CONVENTIONS}, got {convention!r}")
        read = self.total - self.routed_experts - (self.embedding if self.lm_head else 0)
        if convention == "non_ffn":
            read -= self.shared_experts + self.dense_mlp
        return read

    @property
    def flops_per_token(self) -> int:
        """Matrix-product FLOPs per token (2 per active weight, embedding lookup excluded)."""
        return 2 * (self.active - self.embedding * (1 if self.lm_head else 0) - self.positions)


def count_parameters(config: dict) -> ParamCount:
    """Count the parameters of a Hugging Face config dict, per component."""
    family = config.get("model_type")
    if family == "opt":
        return _count_opt(config)
    if family == "deepseek_v2":
        return _count_deepseek_v2(config)
    if family in FAMILIES:
        return _count_llama_like(config)
    raise ArchitectureError(f"unsupported model_type {family!r}")


def _embeddings(config: dict, width: int) -> tuple[int, int]:
    vocab = config["vocab_size"]
    tied = config.get("tie_word_embeddings", config.get("model_type") == "opt")
    return vocab * width, 0 if tied else vocab * width


def _is_sparse_layer(config: dict, i: int) -> bool:
    family = config["model_type"]
    if family == "mixtral":
        return True
    if family == "olmoe":
        return True
    step = config.get("decoder_sparse_step", 1)
    return i not in config.get("mlp_only_layers", []) and config.get("num_experts", 0) > 0 and (i + 1) % step == 0


def _count_llama_like(config: dict) -> ParamCount:
    """Llama, Mistral, Qwen2 (dense), Qwen2-MoE, Qwen3-MoE, Mixtral and OLMoE."""
    family = config["model_type"]
    h, layers = config["hidden_size"], config["num_hidden_layers"]
    n_h = config["num_attention_heads"]
    n_kv = config.get("num_key_value_heads", n_h)
    d = config.get("head_dim") or h // n_h
    moe = family in ("qwen2_moe", "qwen3_moe", "mixtral", "olmoe")
    n_experts = config.get("num_local_experts" if family == "mixtral" else "num_experts", 1) if moe else 1
    top_k = config.get("num_experts_per_tok", 1) if moe else 1
    expert_width = (
        config["intermediate_size"] if family in ("mixtral", "olmoe") else config.get("moe_intermediate_size")
    )

    bias = family in ("qwen2", "qwen2_moe") or config.get("attention_bias", False)
    attention = h * n_h * d + 2 * h * n_kv * d + n_h * d * h
    if bias:
        attention += n_h * d + 2 * n_kv * d
    if family == "qwen3_moe":
        attention += 2 * d  # q_norm and k_norm over head_dim
    if family == "olmoe":
        attention += n_h * d + n_kv * d  # q_norm over all heads, k_norm over the kv heads

    sparse = [moe and _is_sparse_layer(config, i) for i in range(layers)]
    n_moe = sum(sparse)
    one_expert = 3 * h * expert_width if moe else 0
    shared = 0
    if family == "qwen2_moe":
        shared = n_moe * (3 * h * config["shared_expert_intermediate_size"] + h)  # + sigmoid gate
    embedding, lm_head = _embeddings(config, h)
    return ParamCount(
        model_type=family,
        attention=layers * attention,
        dense_mlp=(layers - n_moe) * 3 * h * config["intermediate_size"],
        routed_experts=n_moe * n_experts * one_expert,
        routed_expert_one=n_moe * one_expert,
        shared_experts=shared,
        router=n_moe * h * n_experts,
        norms=layers * 2 * h + h,
        embedding=embedding,
        lm_head=lm_head,
        n_experts=n_experts,
        top_k=top_k,
        moe_layers=n_moe,
        layers=layers,
    )


def _count_deepseek_v2(config: dict) -> ParamCount:
    """DeepSeek-V2: multi-head latent attention and DeepSeekMoE (routed + shared experts)."""
    h, layers = config["hidden_size"], config["num_hidden_layers"]
    n_h = config["num_attention_heads"]
    nope, rope, v_head = config["qk_nope_head_dim"], config["qk_rope_head_dim"], config["v_head_dim"]
    kv_rank, q_rank = config["kv_lora_rank"], config.get("q_lora_rank")
    q_out = n_h * (nope + rope)
    q_proj = h * q_out if not q_rank else h * q_rank + q_rank + q_rank * q_out
    attention = q_proj + h * (kv_rank + rope) + kv_rank + kv_rank * n_h * (nope + v_head) + n_h * v_head * h
    first_dense = config.get("first_k_dense_replace", 0)
    freq = config.get("moe_layer_freq", 1)
    n_moe = sum(1 for i in range(layers) if i >= first_dense and i % freq == 0)
    expert_width = config["moe_intermediate_size"]
    n_experts = config["n_routed_experts"]
    one_expert = 3 * h * expert_width
    embedding, lm_head = _embeddings(config, h)
    return ParamCount(
        model_type="deepseek_v2",
        attention=layers * attention,
        dense_mlp=(layers - n_moe) * 3 * h * config["intermediate_size"],
        routed_experts=n_moe * n_experts * one_expert,
        routed_expert_one=n_moe * one_expert,
        shared_experts=n_moe * 3 * h * expert_width * config.get("n_shared_experts", 0),
        router=n_moe * h * n_experts,
        norms=layers * 2 * h + h,
        embedding=embedding,
        lm_head=lm_head,
        n_experts=n_experts,
        top_k=config["num_experts_per_tok"],
        moe_layers=n_moe,
        layers=layers,
    )


def _count_opt(config: dict) -> ParamCount:
    """OPT: biases everywhere, LayerNorms, learned positions with an offset of 2."""
    h, layers, f = config["hidden_size"], config["num_hidden_layers"], config["ffn_dim"]
    width = config.get("word_embed_proj_dim", h)
    pre_ln = config.get("do_layer_norm_before", True)
    embedding, lm_head = _embeddings(config, width)
    return ParamCount(
        model_type="opt",
        attention=layers * 4 * (h * h + h),
        dense_mlp=layers * (h * f + f + f * h + h),
        norms=layers * 2 * 2 * h + (2 * h if pre_ln else 0),
        embedding=embedding,
        lm_head=lm_head,
        positions=(config["max_position_embeddings"] + 2) * h,
        projections=2 * h * width if width != h else 0,
        layers=layers,
    )


def describe(name: str, overrides: dict | None = None) -> ParamCount:
    """Parameter counts of a named architecture (convenience for the CLI and the fit)."""
    return count_parameters(load_architecture(name, overrides))
