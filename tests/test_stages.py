"""The model-side stages fail on bad input with one line, before any training."""

import subprocess
import sys

import pytest


def moesd(*args, env=None, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "moesd", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.mark.parametrize(
    ("config_text", "message"),
    [
        ("acceptance:\n  datasets: [gsm8k]\n", "unknown prompt set 'gsm8k'"),
        ("acceptance:\n  datasets: [/no/such/prompts.jsonl]\n", "prompt file /no/such/prompts.jsonl: no such file"),
        (
            "pairs:\n  - {name: p, target: 'hf:Qwen/Qwen2-0.5B-Instruct@main', draft: 'trained:draft'}\n",
            "model spec hf:Qwen/Qwen2-0.5B-Instruct@main: cannot download",
        ),
        (
            "pairs:\n  - {name: p, target: 'trained:teacher', draft: 'trained:draft'}\n",
            "trained: names are target and draft",
        ),
    ],
)
def test_train_refuses_bad_input_before_training(tmp_path, config_text, message):
    import os

    config = tmp_path / "c.yaml"
    config.write_text(config_text)
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = moesd("train", "--config", str(config), "--out", str(tmp_path / "models"), env=env, timeout=60)
    assert result.returncode == 2, result.stderr[-1000:]
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("moesd: error:") and message in lines[-1], result.stderr[-500:]
    assert "train target" not in result.stderr and not (tmp_path / "models").exists()


def test_broken_prompt_file_line_is_named(tmp_path):
    prompts = tmp_path / "mine.jsonl"
    prompts.write_text('{"text": "def f():"}\n{"text": \n')
    config = tmp_path / "c.yaml"
    config.write_text(f"acceptance:\n  datasets: [{prompts}]\n")
    result = moesd("train", "--config", str(config), "--out", str(tmp_path / "m"))
    assert result.returncode == 2 and f"prompt file {prompts}, line 2: not JSON" in result.stderr
