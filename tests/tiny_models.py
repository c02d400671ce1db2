"""Tiny random models of every family, saved with transformers (the reference implementation)."""

from pathlib import Path

import torch

VOCAB = 96

FAMILIES = {
    "qwen2": dict(
        model_type="qwen2",
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=48,
    ),
    "llama": dict(
        model_type="llama",
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        intermediate_size=40,
    ),
    "qwen2_moe": dict(
        model_type="qwen2_moe",
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        moe_intermediate_size=16,
        shared_expert_intermediate_size=24,
        num_experts=8,
        num_experts_per_tok=2,
        intermediate_size=40,
        norm_topk_prob=False,
    ),
    "mixtral": dict(
        model_type="mixtral",
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=16,
        num_local_experts=4,
        num_experts_per_tok=2,
    ),
    "opt": dict(
        model_type="opt",
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        ffn_dim=40,
        word_embed_proj_dim=16,
        max_position_embeddings=128,
        do_layer_norm_before=False,
    ),
    "opt_pre_ln": dict(
        model_type="opt",
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        ffn_dim=40,
        max_position_embeddings=128,
        do_layer_norm_before=True,
    ),
}


def save_tiny(family: str, folder: Path, vocab: int = VOCAB, std: float = 0.15, seed: int = 0, **extra) -> Path:
    """Save a random model of FAMILY with transformers; std above the default 0.02 so that logits
    spread and comparisons are not trivially small."""
    from transformers import AutoConfig, AutoModelForCausalLM

    params = dict(FAMILIES[family]) | extra
    model_type = params.pop("model_type")
    config = AutoConfig.for_model(model_type, vocab_size=vocab, initializer_range=std, **params)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # norms and biases non-trivial too
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(folder)
    return folder
