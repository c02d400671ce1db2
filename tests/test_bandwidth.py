"""The AR step's achieved bandwidth: weights actually read over time over the read (and copy) bandwidth."""

import math

import pandas as pd
import pytest
from moesd.architectures import count_parameters
from moesd.bandwidth import ar_bandwidth, weight_bytes
from moesd.models import checkpoint
from moesd.models.spec import parse_spec

MOE = (
    "arch:qwen2-57b-a14b:num_hidden_layers=2,hidden_size=64,num_attention_heads=4,moe_intermediate_size=16,"
    "shared_expert_intermediate_size=32"
)
DENSE = "arch:opt-30b:num_hidden_layers=2,hidden_size=64,ffn_dim=128,num_attention_heads=2,word_embed_proj_dim=64"


def _counts(spec):
    return count_parameters(checkpoint.hf_config(parse_spec(spec)))


def test_every_expert_read_means_every_weight_but_the_embedding_lookup():
    moe = _counts(MOE)
    assert weight_bytes(MOE, moe.n_experts, "bfloat16") == 2 * (moe.total - moe.embedding)
    assert weight_bytes(MOE, 0, "float32") == 4 * moe.dense_params()
    assert weight_bytes(MOE, 8, "bfloat16") < weight_bytes(MOE, 16, "bfloat16")
    dense = _counts(DENSE)  # no experts (NaN in the tables): the dense part only
    assert weight_bytes(DENSE, math.nan, "bfloat16") == 2 * dense.dense_params() > 0


def test_fraction_of_the_read_and_copy_bandwidth_per_target_and_batch_size():
    rows = []
    for spec, model, distinct in ((MOE, "moe", 12.0), (DENSE, "dense", math.nan)):
        for batch, seconds in ((1, 0.002), (32, 0.004)):
            for repeat, factor in enumerate((1.0, 0.5, 2.0)):
                rows.append(
                    {"model": model, "spec": spec, "role": "target", "K": 8, "B": batch, "s": 1, "dtype": "bfloat16",
                     "distinct_experts_mean": distinct, "status": "ok", "repeat": repeat, "seconds": seconds * factor}
                )  # fmt: skip
    rows.append(rows[0] | {"s": 5, "seconds": 1.0})  # verification forwards are not AR steps
    rows.append(rows[0] | {"role": "draft", "model": "d"})
    table = ar_bandwidth(pd.DataFrame(rows), 1e9, 2e9)
    assert sorted(zip(table["model"], table["B"], strict=True)) == [
        ("dense", 1),
        ("dense", 32),
        ("moe", 1),
        ("moe", 32),
    ]
    moe = table[(table["model"] == "moe") & (table["B"] == 32)].iloc[0]
    assert moe["seconds"] == pytest.approx(0.004)  # the median repeat
    counts = _counts(MOE)  # 12 distinct experts per MoE layer, 2 bytes per parameter
    assert moe["weight_bytes"] == 2 * (counts.dense_params() + 12 * counts.routed_expert_one)
    assert moe["bandwidth_fraction"] == pytest.approx(moe["weight_bytes"] / 0.004 / 1e9)
    assert moe["copy_fraction"] == pytest.approx(moe["bandwidth_fraction"] / 2)
