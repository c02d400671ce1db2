"""The Snakemake workflow, run for real in a copy of the checkout."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from moesd.paths import REPO_ROOT

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("checkout")
    shutil.copy(REPO_ROOT / "Snakefile", root)
    for folder in ("workflow", "config", "data", "profiles", "envs"):
        shutil.copytree(REPO_ROOT / folder, root / folder, ignore=shutil.ignore_patterns("runs", "__pycache__"))
    return root


def snakemake(root: Path, *args: str) -> subprocess.CompletedProcess:
    # the rules call `moesd`: put this interpreter's scripts first, as an activated venv does
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([*SNAKEMAKE, *args], cwd=root, capture_output=True, text=True, timeout=900, env=env)


def test_lint_is_clean(checkout):
    result = snakemake(checkout, "--lint")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


def test_default_run_produces_every_output_then_nothing_to_do(checkout):
    result = snakemake(checkout, "--cores", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    figures = checkout / "figures" / "default" / "theory"
    for name in ("active_experts", "tokens_per_expert", "roofline_speedup"):
        for ext in ("png", "pdf", "caption.md"):
            path = figures / f"{name}.{ext}"
            assert path.is_file() and path.stat().st_size > 0, path
    for name in ("saturation.csv", "roofline_speedup.csv", "fit_quality.csv", "fit_quality.md", "sparsity_fit.png"):
        assert (figures / name).stat().st_size > 0, name
    runs = checkout / "data" / "runs" / "default"
    for name in ("config.json", "env.json", "theory/simulated_sweep.csv", "theory/fit/params.json"):
        assert (runs / name).stat().st_size > 0, name
    assert not list(figures.glob(".*.tmp"))  # no half-written files
    again = snakemake(checkout, "--cores", "2")
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr


def test_bad_config_stops_before_any_job(checkout, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("fit:\n  stride: 0\n")
    result = snakemake(checkout, "-n", "--configfile", str(bad))
    assert result.returncode != 0
    assert "config error: fit.stride: 0 is less than the minimum of 1" in result.stdout + result.stderr
