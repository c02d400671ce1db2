import pytest
import torch
from moesd.models import ModelSpecError, load_model
from moesd.prompts import random_prompts
from moesd.routing import engine_routing_stats, hf_routing_stats

from .tiny_models import VOCAB


def test_engine_routing_on_random_ids_follows_eq8(tiny_dirs):
    model = load_model(f"dir:{tiny_dirs['qwen2_moe']}", device="cpu")
    prompts = random_prompts(32, 40, VOCAB, 0)
    stats = engine_routing_stats(model, prompts, "random", [1, 4, 32], [1, 8, 32], 4)
    assert set(stats["mode"]) == {"batch", "sequence"} and set(stats["layer"]) == {0, 1}
    one = stats[stats["tokens"] == 1]
    assert (one["distinct_experts"] == 2).all()  # one token activates exactly K experts
    assert (stats["distinct_experts"] <= 8).all()
    many = stats[(stats["tokens"] == 32)]
    assert many["distinct_experts"].mean() >= 6  # Eq. 8: 8 (1 - 0.75^32) = 8.0


def test_hf_router_hooks_on_a_family_the_engine_lacks(tmp_path):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        "deepseek_v2",
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        moe_intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        n_routed_experts=8,
        n_shared_experts=1,
        num_experts_per_tok=2,
        first_k_dense_replace=1,
        kv_lora_rank=16,
        q_lora_rank=None,
        qk_nope_head_dim=8,
        qk_rope_head_dim=8,
        v_head_dim=8,
        n_group=1,
        topk_group=1,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    model.save_pretrained(tmp_path)
    with pytest.raises(ModelSpecError, match="not supported by the engine"):
        load_model(f"dir:{tmp_path}", device="cpu")
    prompts = random_prompts(8, 20, 64, 1)
    stats = hf_routing_stats(model, prompts, "random", [1, 8], [1, 8], 2)
    assert set(stats["layer"]) == {1}  # layer 0 is dense (first_k_dense_replace)
    assert (stats[stats["tokens"] == 1]["distinct_experts"] == 2).all()
    assert stats[stats["tokens"] == 8]["distinct_experts"].max() <= 8
