"""Model specs: one type, one parser, every kind (hf, dir, arch, trained) and the operations the
pipeline needs (K override, family, display name, resolving trained: against a run)."""

from pathlib import Path

import pytest
from moesd.models import checkpoint
from moesd.models.spec import ModelSpec, ModelSpecError, parse_spec, parse_value


def test_every_kind_parses():
    hub = parse_spec("hf:Qwen/Qwen2-0.5B-Instruct@abc123")
    assert (hub.kind, hub.name, hub.revision) == ("hf", "Qwen/Qwen2-0.5B-Instruct", "abc123")
    assert parse_spec("dir:/models/x").name == "/models/x"
    arch = parse_spec("arch:qwen2-0.5b:num_hidden_layers=2,seed=3,name=tiny")
    assert (arch.kind, arch.name, arch.seed) == ("arch", "qwen2-0.5b", 3)
    assert arch.overrides == {"num_hidden_layers": 2, "name": "tiny"}
    trained = parse_spec("trained:draft")
    assert (trained.kind, trained.name) == ("trained", "draft")
    assert str(trained) == "trained:draft" and parse_spec(trained) is trained


@pytest.mark.parametrize(
    "text, reason",
    [
        ("qwen2-0.5b:trained", "expected hf:"),
        ("hf:Qwen/Qwen2-0.5B@main:num_hidden_layers=2", "take no key=value overrides"),
        ("arch:qwen2-0.5b:num_hidden_layers", "is not key=value"),
        ("trained:teacher", "trained: names are target and draft"),
        ("arch:qwen2-0.5b:seed=abc", "seed must be an integer"),
    ],
)
def test_bad_specs_name_the_spec(text, reason):
    with pytest.raises(ModelSpecError, match=reason):
        parse_spec(text)


def test_override_values_are_json_where_they_parse_and_strings_elsewhere():
    assert parse_value("4") == 4 and parse_value("0.5") == 0.5 and parse_value("[1, 2]") == [1, 2]
    assert parse_value("true") is True and parse_value("tiny") == "tiny" and parse_value("abc") == "abc"


def test_k_override_and_family():
    base = parse_spec("arch:qwen2-57b-a14b")
    assert base.with_k(4).text == "arch:qwen2-57b-a14b:num_experts_per_tok=4"
    assert base.with_k(4).overrides == {"num_experts_per_tok": 4}
    layered = parse_spec("arch:qwen2-57b-a14b:num_hidden_layers=2").with_k(16)
    assert layered.text.endswith("num_hidden_layers=2,num_experts_per_tok=16")
    assert layered.family == "arch:qwen2-57b-a14b:num_hidden_layers=2" and base.family == base.text
    assert parse_spec("dir:/x").with_k(None).text == "dir:/x"
    with pytest.raises(ModelSpecError, match="needs an arch: spec"):
        parse_spec("dir:/x").with_k(4)


def test_display_names_and_the_papers_models():
    assert parse_spec("arch:qwen2-57b-a14b:num_hidden_layers=2").short == "arch:qwen2-57b-a14b*"
    assert parse_spec("arch:qwen2-57b-a14b").short == "arch:qwen2-57b-a14b"
    assert parse_spec("arch:qwen2-57b-a14b").is_architecture("qwen2-57b-a14b")
    assert not parse_spec("arch:qwen2-57b-a14b:num_hidden_layers=2").is_architecture("qwen2-57b-a14b")
    assert not parse_spec("arch:qwen2-57b-a14b:seed=1").is_architecture("qwen2-57b-a14b")
    assert parse_spec("hf:Qwen/Qwen2-57B-A14B-Instruct@main").is_architecture("qwen2-57b-a14b")
    assert not parse_spec("hf:Qwen/Qwen2-0.5B-Instruct@main").is_architecture("qwen2-57b-a14b")


def test_trained_specs_resolve_against_the_run(tmp_path: Path):
    resolved = parse_spec("trained:target").resolve(tmp_path)
    assert resolved.kind == "dir" and Path(resolved.name) == tmp_path / "models" / "target"
    assert parse_spec("arch:qwen2-0.5b").resolve(tmp_path).text == "arch:qwen2-0.5b"
    with pytest.raises(ModelSpecError, match="resolve trained: specs"):
        checkpoint.folder(parse_spec("trained:target"))


def test_configs_without_weights_and_the_cli_form():
    config = checkpoint.hf_config(ModelSpec.of_architecture("qwen2-57b-a14b:num_experts_per_tok=4"))
    assert config["num_experts_per_tok"] == 4 and config["model_type"] == "qwen2_moe"
    assert ModelSpec.of_architecture("arch:qwen2-0.5b").name == "qwen2-0.5b"
    assert checkpoint.folder(parse_spec("arch:qwen2-0.5b")) is None
    with pytest.raises(ModelSpecError, match="no config.json"):
        checkpoint.hf_config(parse_spec("dir:/no/such/folder"))
