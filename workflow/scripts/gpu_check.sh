#!/usr/bin/env bash
# One-GPU check of the latency stage on the real architectures with random weights, in under
# 8 minutes: probes the GPU (env.json), runs config/gpu_check.yaml's latency sweep and speedup tables, and prints the two
# figures the project reports (achieved fraction of memory bandwidth of the AR step at B = 32,
# and the peak SD speedup over B at forced sigma = 0.90, gamma = 4). Tables land in
# data/runs/gpu_check/ (commit them so figures rebuild on a CPU) and in $OUT when set.
#   bash workflow/scripts/gpu_check.sh [cuda|cpu]
# cpu is its CPU twin: every step of the script on this
# machine, config/gpu_check-cpu.yaml over gpu_check.yaml (the same models at miniature widths),
# into data/runs/gpu_check_cpu/.
set -euo pipefail
cd "$(dirname "$0")/../.."
DEVICE="${1:-cuda}"
case "$DEVICE" in
  cuda) CONFIGS=(config/gpu_check.yaml); RUN=data/runs/gpu_check; TARGET=":num_hidden_layers=2"; DRAFT=""
        VLLM_START=() ;;  # vLLM's default start: CUDA graphs, its own process layout
  cpu) CONFIGS=(config/gpu_check.yaml config/gpu_check-cpu.yaml); RUN=data/runs/gpu_check_cpu
       WIDTH="hidden_size=128,num_attention_heads=4,num_key_value_heads=2,vocab_size=512"  # head size 32: vLLM's CPU least
       TARGET=":num_hidden_layers=2,$WIDTH,moe_intermediate_size=32,shared_expert_intermediate_size=128"
       DRAFT=":num_hidden_layers=2,$WIDTH,intermediate_size=128"
       VLLM_START=(--enforce-eager --in-process) ;;  # the same decoding; a quarter of a default start on a CPU
  *) echo "gpu_check.sh: device must be cuda or cpu, got '$DEVICE'" >&2; exit 2 ;;
esac
LOGS="logs/$(basename "$RUN")"
mkdir -p "$RUN"
status=0
# stop before the caller's own limit (GPU_CHECK_SECONDS, default 8 minutes) so that the points
# measured so far still come back; a rerun resumes from them (carry data/runs/gpu_check)
timeout "${GPU_CHECK_SECONDS:-480}" \
  snakemake environments speedup --cores 4 --configfile "${CONFIGS[@]}" --resources gpu=1 || status=$?
if [ -n "${OUT:-}" ]; then  # what was measured comes back even when a later step fails
  cp -r "$RUN" "$OUT/" 2>/dev/null || true
  cp -r "$LOGS" "$OUT/logs" 2>/dev/null || true
fi
[ "$status" -eq 0 ] || exit "$status"
python - "$RUN" <<'PY'
import sys
import pandas as pd
from moesd.speedup import e2e_speedups
run = sys.argv[1]
bandwidth = pd.read_csv(f"{run}/speedup/bandwidth.csv")  # moesd speedup: the AR step's weight bytes / time
print(bandwidth[["model", "K", "B", "seconds", "distinct_experts", "weight_bytes", "bandwidth_fraction"]].to_string())
ar = bandwidth[(bandwidth.model == "qwen2-57b-a14b") & (bandwidth.K == 8) & (bandwidth.B == 32)].iloc[0]
print(f"AR step B=32: {ar.seconds * 1e3:.2f} ms, {ar.weight_bytes / 1e9:.1f} GB of weights -> "
      f"{ar.achieved_bandwidth / 1e12:.2f} TB/s = {ar.bandwidth_fraction:.1%} of the measured copy bandwidth "
      f"({ar.copy_bandwidth / 1e12:.2f} TB/s)")
for time in ("decode", "total"):  # without and with the prefill (analysis.e2e_time)
    table = e2e_speedups(pd.read_csv(f"{run}/latency/e2e.csv"), time=time).set_index("B")
    print(table[["t_ar", "t_sd", "sigma", "speedup"]].to_string())
    peak = table["speedup"].idxmax()
    print(f"peak SD speedup ({time}) {table['speedup'].max():.2f}x at B = {peak} (forced sigma 0.90, gamma 4)")
PY
# vLLM on the same GPU (when its environment is there: VLLM_GPU=1 bash workflow/scripts/setup_vllm.sh):
# a scaled-down Qwen2-57B-A14B (2 layers, real widths, random weights) and Qwen2-0.5B draft saved as
# checkpoints, greedy AR and SD through vLLM against our engine on the GPU, token for token
if [ -x "${MOESD_VLLM_PYTHON:-.venv-vllm/bin/python}" ]; then
  VLLM_RUN="$RUN/vllm"
  mkdir -p "$VLLM_RUN"
  python workflow/scripts/save_checkpoint.py "arch:qwen2-57b-a14b$TARGET" "$VLLM_RUN/target"
  python workflow/scripts/save_checkpoint.py "arch:qwen2-0.5b$DRAFT" "$VLLM_RUN/draft"
  for backend in ours vllm; do
    for mode in ar sd; do
      moesd generate --backend "$backend" --target "dir:$VLLM_RUN/target" --draft "dir:$VLLM_RUN/draft" \
        --mode "$mode" --gamma 4 --prompts random:32:64 --batch-size 32 --max-new-tokens 64 --device "$DEVICE" \
        $([ "$backend" = vllm ] && echo "${VLLM_START[*]}") --out "$VLLM_RUN/${backend}_${mode}.jsonl"
    done
  done
  python - "$VLLM_RUN" <<'PY'
import json, sys
run = sys.argv[1]
rows = {name: [json.loads(l)["output_ids"] for l in open(f"{run}/{name}.jsonl")] for name in ("ours_ar", "ours_sd", "vllm_ar", "vllm_sd")}
for name, outputs in rows.items():
    same = sum(a == b for a, b in zip(outputs, rows["ours_ar"]))
    print(f"{name}: {same}/{len(outputs)} sequences equal to our greedy AR")
PY
  [ -n "${OUT:-}" ] && cp -r "$VLLM_RUN"/*.jsonl "$OUT/" 2>/dev/null || true
fi
