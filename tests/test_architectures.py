import json

import pytest
from moesd.architectures import (
    ArchitectureError,
    available_architectures,
    count_parameters,
    describe,
    load_architecture,
)
from moesd.paths import ARCHITECTURES_DIR

# data/architectures/SOURCES.md: totals and A_all checked there against transformers' numel()
EXPECTED = {
    "qwen2-57b-a14b": (57_408_658_944, 14_249_270_784),
    "qwen2-0.5b": (494_032_768, 494_032_768),
    "mixtral-8x7b": (46_702_792_704, 12_879_925_248),
    "opt-30b": (29_974_540_288, 29_974_540_288),
    "opt-350m": (331_196_416, 331_196_416),
    "deepseek-v2-lite": (15_706_484_224, 2_661_150_208),
    "qwen1.5-moe-a2.7b": (14_315_784_192, 2_689_173_504),
    "qwen3-30b-a3b": (30_532_122_624, 3_353_032_704),
    "olmoe-1b-7b-0924": (6_919_161_856, 1_282_017_280),
}


def test_every_config_is_known():
    assert set(available_architectures()) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_total_and_active_counts(name):
    pc = describe(name)
    assert (pc.total, pc.active) == EXPECTED[name]


def test_qwen2_57b_about_57b_total_14b_active():
    pc = describe("qwen2-57b-a14b")
    assert abs(pc.total / 1e9 - 57) < 0.5 and abs(pc.active / 1e9 - 14) < 0.3
    assert (pc.n_experts, pc.top_k) == (64, 8)
    # Derived from Qwen2-57B-A14B's config (App. C.2's V_exp, V_dense): one routed expert over all layers ~0.771 B, attention ~0.82 B,
    # shared expert ~6.17 B, embedding + lm_head ~1.09 B
    assert abs(pc.routed_expert_one / 1e9 - 0.771) < 0.001
    assert abs(pc.attention / 1e9 - 0.82) < 0.01
    assert abs(pc.shared_experts / 1e9 - 6.17) < 0.01
    assert abs((pc.embedding + pc.lm_head) / 1e9 - 1.09) < 0.01


def test_dense_conventions_differ_by_shared_expert():
    pc = describe("qwen2-57b-a14b")
    assert pc.dense_params("non_routed") - pc.dense_params("non_ffn") == pc.shared_experts
    assert 5 < pc.dense_params("non_routed") / pc.dense_params("non_ffn") < 7  # "about 7x" (§6.8)
    with pytest.raises(ValueError):
        pc.dense_params("everything")


def test_mixtral_expert_and_attention():
    pc = describe("mixtral-8x7b")
    assert abs(pc.routed_expert_one / 1e9 - 5.64) < 0.01 and abs(pc.attention / 1e9 - 1.34) < 0.01


def test_overrides_change_k_and_layers():
    base = describe("qwen2-57b-a14b")
    small = describe("qwen2-57b-a14b", {"num_experts_per_tok": 2, "num_hidden_layers": 2})
    assert small.top_k == 2 and small.layers == 2
    assert small.total < base.total
    assert small.routed_expert_one == base.routed_expert_one // 14


def test_unknown_name_and_key_fail_with_message():
    with pytest.raises(ArchitectureError, match="unknown architecture 'qwen9'"):
        load_architecture("qwen9")
    with pytest.raises(ArchitectureError, match="no key 'num_expert'"):
        load_architecture("qwen2-57b-a14b", {"num_expert": 4})


def test_files_are_the_shared_configs():
    for name in EXPECTED:
        data = json.loads((ARCHITECTURES_DIR / f"{name}.json").read_text())
        assert count_parameters(data).total == EXPECTED[name][0]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_experts_per_tok": 100}, "num_experts_per_tok=100 exceeds the 64 experts"),
        ({"num_experts_per_tok": 0}, "num_experts_per_tok=0 must be a positive integer"),
        ({"num_hidden_layers": -2}, "num_hidden_layers=-2 must be a positive integer"),
        ({"num_experts": 6.5}, "num_experts=6.5 must be a positive integer"),
        ({"hidden_size": 1000}, "num_attention_heads=28 does not divide hidden_size=1000"),
        ({"num_key_value_heads": 5}, "num_key_value_heads=5 does not divide num_attention_heads=28"),
        ({"shared_expert_intermediate_size": -1}, "shared_expert_intermediate_size=-1 must be an integer >= 0"),
    ],
)
def test_overrides_that_make_no_model_are_rejected(overrides, message):
    """moesd params once reported 85.2 B active parameters of 57.4 B with top-100 of 64 experts."""
    with pytest.raises(ArchitectureError, match=message) as info:
        describe("qwen2-57b-a14b", overrides)
    assert "\n" not in str(info.value)
