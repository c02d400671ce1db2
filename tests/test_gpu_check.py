"""workflow/scripts/gpu_check.sh, the one script a lent GPU runs first, has never run on a GPU:
its CPU twin (`gpu_check.sh cpu`, config/gpu_check-cpu.yaml) runs every step of it here, so that
the day a GPU is lent the script's own errors are already gone."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .snakemake_run import copy_checkout


@pytest.mark.slow
@pytest.mark.vllm
def test_the_gpu_check_script_runs_on_a_cpu(tmp_path, vllm_env):
    root = tmp_path / "checkout"
    root.mkdir()
    copy_checkout(root)
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ) | {"OUT": str(out), "MOESD_VLLM_PYTHON": str(vllm_env)}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    result = subprocess.run(["bash", "workflow/scripts/gpu_check.sh", "cpu"], cwd=root, env=env, capture_output=True,
                            text=True, timeout=1200)  # fmt: skip
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-4000:]
    print("\n".join(line for line in text.splitlines() if line.startswith(("AR step", "peak SD", "ours_", "vllm_"))))
    assert "AR step B=32:" in text and "of the measured copy bandwidth" in text
    assert "peak SD speedup (decode)" in text and "peak SD speedup (total)" in text
    assert (out / "gpu_check_cpu/speedup/bandwidth.csv").is_file()
    assert (root / "data/runs/gpu_check_cpu/env/local.json").is_file()
    for name in ("ours_ar", "ours_sd", "vllm_ar", "vllm_sd"):  # the engines' greedy outputs, token for token
        assert f"{name}: 32/32 sequences equal to our greedy AR" in text, text[-3000:]
    bad = subprocess.run(["bash", "workflow/scripts/gpu_check.sh", "tpu"], cwd=root, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip() == "gpu_check.sh: device must be cuda or cpu, got 'tpu'"
