"""The models stage's commands fail on bad input with one line, before any training."""

import os
import subprocess
import sys

import pytest
from moesd.cli import main


def run_cli(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as stop:
        code = stop.code
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("config_text", "message"),
    [
        ("acceptance:\n  datasets: [gsm8k]\n", "unknown prompt set 'gsm8k'"),
        ("acceptance:\n  datasets: [/no/such/prompts.jsonl]\n", "prompt file /no/such/prompts.jsonl: no such file"),
        (
            "pairs:\n  - {name: p, target: 'trained:teacher', draft: 'trained:draft'}\n",
            "trained: names are target and draft",
        ),
    ],
)
def test_train_refuses_bad_input_before_training(tmp_path, capsys, config_text, message):
    config = tmp_path / "c.yaml"
    config.write_text(config_text)
    code, err = run_cli(capsys, "train", "--config", str(config), "--out", str(tmp_path / "models"))
    assert code == 2, err[-1000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("moesd: error:") and message in lines[0], err[-500:]
    assert not (tmp_path / "models").exists()


@pytest.mark.slow  # waits for huggingface_hub's connection error (about 2 s)
def test_an_unreachable_hub_model_stops_training_in_one_line(tmp_path):
    # a fresh interpreter: huggingface_hub reads HF_HUB_OFFLINE when it is imported
    config = tmp_path / "c.yaml"
    config.write_text("pairs:\n  - {name: p, target: 'hf:Qwen/Qwen2-0.5B-Instruct@main', draft: 'trained:draft'}\n")
    env = os.environ | {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run(
        [sys.executable, "-m", "moesd", "train", "--config", str(config), "--out", str(tmp_path / "models")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and lines[-1].startswith("moesd: error:"), result.stderr[-1000:]
    assert "model spec hf:Qwen/Qwen2-0.5B-Instruct@main: cannot download" in lines[-1]
    assert not (tmp_path / "models").exists()


def test_broken_prompt_file_line_is_named(tmp_path, capsys):
    prompts = tmp_path / "mine.jsonl"
    prompts.write_text('{"text": "def f():"}\n{"text": \n')
    config = tmp_path / "c.yaml"
    config.write_text(f"acceptance:\n  datasets: [{prompts}]\n")
    code, err = run_cli(capsys, "train", "--config", str(config), "--out", str(tmp_path / "m"))
    assert code == 2 and f"prompt file {prompts}, line 2: not JSON" in err
