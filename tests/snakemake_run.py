"""Snakemake run on a copy of the checkout, as a user runs it (shared by the workflow tests)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from moesd.paths import REPO_ROOT

SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def copy_checkout(root: Path) -> Path:
    """The tracked parts of the checkout the workflow reads, copied into ROOT (no runs)."""
    shutil.copy(REPO_ROOT / "Snakefile", root)
    for folder in ("workflow", "config", "data", "profiles", "envs", "notebooks"):
        shutil.copytree(REPO_ROOT / folder, root / folder, ignore=shutil.ignore_patterns("runs", "__pycache__"))
    return root


# the shipped configs that are overlays -> the config each is read over (--configfile BASE OVERLAY)
OVERLAYS = {"rehearsal.yaml": "paper.yaml", "gpu_check-cpu.yaml": "gpu_check.yaml"}


def merged(*layers: dict) -> dict:
    """Snakemake's merge of --configfile files: dicts recursively, anything else replaced."""
    out: dict = {}
    for layer in layers:
        for key, value in layer.items():
            out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def snakemake(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    # the rules call `moesd`: put this interpreter's scripts first, as an activated venv does
    env = (env or os.environ) | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run([*SNAKEMAKE, *args], cwd=root, capture_output=True, text=True, timeout=900, env=env)


def planned_resources(result) -> dict[str, dict[str, str]]:
    """rule -> its resources, from a dry run's job blocks (the last job of a rule)."""
    text = result.stdout + result.stderr
    plans = {}
    for block in text.split("\nrule ")[1:]:
        line = next((x for x in block.splitlines() if x.strip().startswith("resources:")), "")
        items = [item.strip().split("=", 1) for item in line.split(":", 1)[-1].split(",") if "=" in item]
        plans[block.split(":", 1)[0]] = dict(items)
    return plans


def job_counts(result) -> dict[str, int]:
    """rule -> its number of jobs, from a dry run's "Job stats" table."""
    stats = (result.stdout + result.stderr).split("Job stats:", 1)[1].split("total", 1)[0]
    return {name: int(count) for name, count in (line.split() for line in stats.splitlines()[3:] if line.strip())}


def planned_jobs(result) -> list[dict]:
    """Every job of a dry run: {"rule", "wildcards" (a dict), "resources" (a dict of strings)}."""
    jobs = []
    for block in (result.stdout + result.stderr).split("\nrule ")[1:]:
        lines = block.splitlines()
        fields = {line.strip().split(":", 1)[0]: line.split(":", 1)[1].strip() for line in lines[1:] if ":" in line}
        parse = lambda text: dict(item.strip().split("=", 1) for item in text.split(",") if "=" in item)  # noqa: E731
        jobs.append(
            {
                "rule": lines[0].rstrip(":"),
                "wildcards": parse(fields.get("wildcards", "")),
                "resources": parse(fields.get("resources", "")),
            }
        )
    return jobs
