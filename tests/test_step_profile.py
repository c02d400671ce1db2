"""The step profile (moesd profile-step): a decode step's time sorted into what it does, beside its
weights at the read bandwidth (issue 26's profile, on a tiny MoE and its dense twin)."""

import pandas as pd
import pytest
import torch
from moesd.cli import main
from moesd.models.loading import load_model
from moesd.step_profile import CATEGORIES, category, profile_step

MOE = "arch:qwen2-57b-a14b:num_hidden_layers=2,hidden_size=64,num_attention_heads=4,num_key_value_heads=2,moe_intermediate_size=32,shared_expert_intermediate_size=64,num_experts=8,num_experts_per_tok=2,vocab_size=512"


def test_operators_fall_into_what_the_step_does():
    assert category("aten::mm") == category("aten::_grouped_mm", "moe") == "weights"
    assert category("aten::_scaled_dot_product_flash_attention_for_cpu") == "attention"
    assert category("aten::bmm", "attend") == category("aten::_softmax", "attend") == "attention"  # the math kernel
    assert category("aten::_softmax", "moe") == "routing" and category("aten::_softmax") != "routing"
    assert category("aten::topk", "moe") == "routing" and category("aten::index_put_") == "copies"
    assert category("aten::empty") == "allocation" and category("aten::mul") == "elementwise"


def test_a_profiled_step_splits_into_its_categories():
    model = load_model(MOE, device="cpu", dtype=torch.float32)
    part = profile_step(model, batch=2, s=3, context=16, repeats=3, warmup=1)
    split = sum(part[name] for name in CATEGORIES)
    assert split == pytest.approx(part["profiled_ms"], rel=1e-6)  # dispatch is the rest of the wall time
    assert part["weights"] > 0 and part["routing"] > 0 and part["attention"] > 0 and part["step_ms"] > 0
    assert 2 <= part["distinct_experts"] <= 8  # top 2 of 8, six tokens


def test_the_command_writes_its_table(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(
        "latency:\n  models:\n"
        f"    - {{name: moe, role: target, spec: '{MOE}'}}\n"
        "    - {name: d, role: draft, spec: 'arch:qwen2-0.5b:num_hidden_layers=1,hidden_size=32,num_attention_heads=2,"
        "num_key_value_heads=1,intermediate_size=64,vocab_size=512'}\n"
    )
    env = tmp_path / "env.json"
    env.write_text('{"hardware_probe": {"device_name": "cpu", "flops": 1e11, "bandwidth": 2e10}}')
    argv = ["profile-step", "--config", str(config), "--batch-sizes", "1", "2", "--dtypes", "float32"]
    argv += ["--repeats", "2", "--env", str(env), "--out", str(tmp_path / "p.csv")]
    assert main(argv) == 0
    table = pd.read_csv(tmp_path / "p.csv")
    assert len(table) == 2 * 2 + 2  # the target at s 1 and 5, the draft at s 1, B 1 and 2
    assert (table["bandwidth_fraction"] > 0).all() and (table["bandwidth_gbs"] == 20).all()
    assert "| moe " in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:  # an unknown model: one line, before any model loads
        main([*argv[:3], "--models", "nope", *argv[3:]])
    assert stop.value.code == 2 and "--models: 'nope' is no latency model" in capsys.readouterr().err
