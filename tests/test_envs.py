"""The conda environments a cluster user gets with `--sdm conda`, checked
statically: conda is not on these machines, so no environment is created here. What is checked:
each env file pins what pyproject.toml pins and names no path (Snakemake creates it from a copy
under .snakemake/conda/), the post-deploy script installs this checkout and MT-bench's questions
and refuses a folder that is not the checkout, every rule's environment exists, the measuring
rules take the CUDA environment exactly where the experiment times a GPU, and the Snakefile's
parse needs nothing beyond Snakemake, its own dependencies and this package."""

import importlib.metadata as metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from moesd.paths import REPO_ROOT
from moesd.prompts import MTBENCH_INSTALL

ENVS = REPO_ROOT / "envs"
PYPROJECT = (REPO_ROOT / "pyproject.toml").read_text()


def _pins(env: dict) -> tuple[list[str], list[str]]:
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next((d["pip"] for d in env["dependencies"] if isinstance(d, dict)), [])
    return conda, pip


@pytest.mark.parametrize("name", ["cpu.yaml", "gpu.yaml", "vllm-gpu.yaml"])
def test_env_files_pin_what_the_project_pins_and_name_no_path(name):
    conda, pip = _pins(yaml.safe_load((ENVS / name).read_text()))
    assert "python=3.11" in conda and 'requires-python = ">=3.11,<3.12"' in PYPROJECT
    for entry in pip:
        assert not entry.startswith(("-e", ".", "/")) and "../" not in entry, entry  # a copy has no neighbours
    if name != "vllm-gpu.yaml":
        assert "torch==2.13.0" in pip and '"torch==2.13.0"' in PYPROJECT
        index = next(e for e in pip if e.startswith("--extra-index-url"))
        assert index.endswith("/cpu" if name == "cpu.yaml" else "/cu128")  # the CUDA build where a GPU is timed
    else:
        setup = (REPO_ROOT / "workflow/scripts/setup_vllm.sh").read_text()
        vllm = next(e for e in pip if e.startswith("vllm=="))
        assert f'"{vllm}"' in setup  # the same vLLM as the venv the README sets up


@pytest.mark.parametrize("name", ["cpu", "gpu"])
def test_post_deploy_installs_the_checkout_and_mtbench(name, tmp_path):
    script = ENVS / f"{name}.post-deploy.sh"
    assert script.resolve().is_file()
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/calls\n')
    (fake / "python").chmod(0o755)
    env = os.environ | {"PATH": f"{fake}:{os.environ['PATH']}", "MOESD_CHECKOUT": str(REPO_ROOT)}
    subprocess.run(["bash", str(script)], env=env, check=True, cwd=tmp_path)
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[0] == f"-m pip install --no-input -e {REPO_ROOT}"
    assert calls[1].endswith(MTBENCH_INSTALL.removeprefix("pip install"))  # the README's pin
    env["MOESD_CHECKOUT"] = str(tmp_path)
    result = subprocess.run(["bash", str(script)], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 1 and "is not the moesd checkout" in result.stderr


def _conda_directives() -> dict[str, str]:
    rules = {}
    for path in sorted((REPO_ROOT / "workflow/rules").glob("*.smk")):
        for block in re.split(r"^rule ", path.read_text(), flags=re.M)[1:]:
            name = block.split(":", 1)[0]
            if m := re.search(r"^    conda:\n        (\S+)", block, re.M):
                rules[name] = m[1].strip('"')
    return rules


def test_every_rule_environment_exists_and_measuring_rules_take_the_gpu_one():
    common = (REPO_ROOT / "workflow/rules/common.smk").read_text()
    measure = re.search(
        r'^MEASURE_ENV = "(\S+)" if config\["latency"\]\["device"\] == "cuda" else "(\S+)"', common, re.M
    )
    assert measure and measure.groups() == ("../../envs/gpu.yaml", "../../envs/cpu.yaml")
    rules = _conda_directives()
    measuring = {"environment", "measure_acceptance", "measure_acceptance_vllm", "measure_routing",
                 "measure_latency", "measure_e2e_vllm"}  # fmt: skip
    assert {name for name, env in rules.items() if env == "MEASURE_ENV"} == measuring
    for name, env in rules.items():
        for file in measure.groups() if env == "MEASURE_ENV" else [env]:
            assert (REPO_ROOT / "workflow/rules" / file).resolve().is_file(), (name, file)
    assert len(rules) > 15  # every rule with a shell command names its environment


def _requirement_closure(name: str, seen: set[str]) -> set[str]:
    name = re.split(r"[ ;<>=!~\[]", name, maxsplit=1)[0].lower().replace("_", "-")
    if name in seen:
        return seen
    seen.add(name)
    try:
        requires = metadata.requires(name) or []
    except metadata.PackageNotFoundError:
        return seen
    for req in requires:
        if "extra ==" not in req:
            _requirement_closure(req, seen)
    return seen


def _installed(name: str) -> bool:
    try:
        return metadata.requires(name) is not None
    except metadata.PackageNotFoundError:
        return False


def _imported(cwd: Path) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "snakemake", "-n"], cwd=cwd, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    return {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in lines}


@pytest.mark.slow
def test_the_snakefile_parse_needs_only_snakemake_and_light_modules(tmp_path):
    (tmp_path / "Snakefile").write_text('rule a:\n    output: "x"\n    shell: "touch x"\n')
    bare = _imported(tmp_path)
    extra = _imported(REPO_ROOT) - bare - set(sys.stdlib_module_names) - {"moesd"}
    distributions = _requirement_closure("snakemake", set())
    for name in list(distributions):  # a package may import its own optional extras where they are installed
        for req in metadata.requires(name) if _installed(name) else []:
            if "extra ==" in req:
                _requirement_closure(req, distributions)
    owners = metadata.packages_distributions()
    foreign = {m for m in extra if not {d.lower().replace("_", "-") for d in owners.get(m, [m])} & distributions}
    assert not foreign, f"the Snakefile's parse imports {sorted(foreign)}, which Snakemake does not bring"
