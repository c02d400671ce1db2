import json

import pytest
from moesd.prompts import PromptError, load_prompts, read_prompt_file

from .test_cli import run_cli as run
from .tiny_models import VOCAB


def test_generate_sd_matches_ar_and_writes_jsonl(tmp_path, capsys, tiny_dirs):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        "\n".join(json.dumps({"input_ids": ids}) for ids in ([1, 2, 3], [4, 5], [6, 7, 8, 9, 10])) + "\n"
    )
    common = [
        "--target",
        f"dir:{tiny_dirs['qwen2_moe']}",
        "--prompts",
        str(prompts),
        "--max-new-tokens",
        "9",
        "--batch-size",
        "2",
        "--ignore-eos",
        "--dtype",
        "float64",
    ]
    assert run(capsys, "generate", *common, "--out", str(tmp_path / "ar.jsonl"))[0] == 0
    code, out, _ = run(
        capsys,
        "generate",
        *common,
        "--mode",
        "sd",
        "--draft",
        f"dir:{tiny_dirs['qwen2_moe']}",
        "--gamma",
        "3",
        "--out",
        str(tmp_path / "sd.jsonl"),
    )
    assert code == 0 and "3 prompts" in out
    ar = [json.loads(line) for line in (tmp_path / "ar.jsonl").read_text().splitlines()]
    sd = [json.loads(line) for line in (tmp_path / "sd.jsonl").read_text().splitlines()]
    assert [r["prompt_index"] for r in sd] == [0, 1, 2]
    assert [r["output_ids"] for r in sd] == [r["output_ids"] for r in ar]
    assert all(len(r["output_ids"]) == 9 and r["accepted"] and r["target_outputs"] for r in sd)
    assert all(n == 3 for r in sd for n in r["accepted"])  # the draft is the target: all accepted


def test_generate_random_prompts_and_forced_acceptance(tmp_path, capsys, tiny_dirs):
    out = tmp_path / "f.jsonl"
    code, _, _ = run(
        capsys,
        "generate",
        "--target",
        f"dir:{tiny_dirs['mixtral']}",
        "--draft",
        f"dir:{tiny_dirs['llama']}",
        "--mode",
        "sd",
        "--prompts",
        "random:5:7",
        "--acceptance",
        "forced",
        "--alpha",
        "0.5",
        "--max-new-tokens",
        "6",
        "--out",
        str(out),
    )
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert code == 0 and len(rows) == 5 and not any(r["target_outputs"] for r in rows)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--prompts", "/no/such.jsonl"], "prompt file /no/such.jsonl: no such file"),
        (["--prompts", "random:5"], "expected random:N:L"),
        (["--prompts", "random:2:3", "--mode", "sd"], "--mode sd needs --draft"),
        (["--prompts", "random:2:3", "--gamma", "0"], "argument --gamma: must be a positive integer"),
        (["--prompts", "random:2:3", "--acceptance", "forced"], "forced acceptance needs alpha"),
    ],
)
def test_generate_bad_input_one_line(tmp_path, capsys, tiny_dirs, extra, message):
    code, _, err = run(
        capsys, "generate", "--target", f"dir:{tiny_dirs['qwen2']}", *extra, "--out", str(tmp_path / "o.jsonl")
    )
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_prompt_file_errors_name_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input_ids": [1, 2]}\n{"input_ids": [1, 2]\n')
    with pytest.raises(PromptError, match="line 2: not JSON"):
        read_prompt_file(bad)
    bad.write_text('{"prompt": "x"}\n')
    with pytest.raises(PromptError, match="line 1: needs an"):
        read_prompt_file(bad)
    bad.write_text('{"input_ids": []}\n')
    with pytest.raises(PromptError, match="non-empty list"):
        read_prompt_file(bad)
    bad.write_text('{"text": "hello"}\n')
    with pytest.raises(PromptError, match="no tokenizer"):
        load_prompts(str(bad), vocab_size=VOCAB)
    bad.write_text(f'{{"input_ids": [{VOCAB}]}}\n')
    with pytest.raises(PromptError, match="outside the vocabulary"):
        load_prompts(str(bad), vocab_size=VOCAB)


def test_random_prompts_are_seeded():
    a = load_prompts("random:3:4", vocab_size=50, seed=1)
    assert a == load_prompts("random:3:4", vocab_size=50, seed=1) and a != load_prompts(
        "random:3:4", vocab_size=50, seed=2
    )
    assert [len(p) for p in a] == [4, 4, 4]


def test_engine_check_runs_side_by_side(tmp_path, capsys, tiny_dirs):
    code, out, _ = run(
        capsys,
        "engine-check",
        "--model",
        f"dir:{tiny_dirs['qwen2_moe']}",
        "--batch-sizes",
        "2",
        "--tokens",
        "1",
        "3",
        "--repeats",
        "2",
        "--warmup",
        "1",
        "--out",
        str(tmp_path / "b.csv"),
    )
    assert code == 0 and "ours slower than transformers at" in out
    import pandas as pd

    table = pd.read_csv(tmp_path / "b.csv")
    assert list(table["s"]) == [1, 3] and (table[["ours_ms", "transformers_ms"]] > 0).all().all()


def test_bench_reference_for_arch_specs_is_the_same_model(tmp_path):
    import torch
    from moesd.engine_check import reference_folder
    from moesd.models import load_model
    from transformers import AutoModelForCausalLM

    spec = (
        "arch:mixtral-8x7b:num_hidden_layers=1,hidden_size=32,num_attention_heads=4,num_key_value_heads=2,"
        "intermediate_size=16,vocab_size=64"
    )
    folder = reference_folder(spec, tmp_path)
    ours = load_model(f"dir:{folder}", device="cpu")
    hf = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = torch.randint(0, 64, (1, 5))
    with torch.no_grad():
        assert (ours(ids, ours.new_cache(1, 8)) - hf(ids).logits).abs().max() < 1e-4
