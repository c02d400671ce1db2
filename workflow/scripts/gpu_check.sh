#!/usr/bin/env bash
# One-GPU check of the latency stage on the real architectures with random weights, in under
# 8 minutes: probes the GPU (env.json), runs config/gpu_check.yaml's latency sweep, and prints the two
# figures the project reports (achieved fraction of memory bandwidth of the AR step at B = 32,
# and the peak SD speedup over B at forced sigma = 0.90, gamma = 4). Tables land in
# data/runs/gpu_check/ (commit them so figures rebuild on a CPU) and in $OUT when set.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUN=data/runs/gpu_check
mkdir -p "$RUN"
snakemake --cores 4 --configfile config/gpu_check.yaml --until environment measure_latency --resources gpu=1
python - "$RUN" <<'PY'
import json, sys
import pandas as pd
from moesd.architectures import describe
run = sys.argv[1]
probe = json.load(open(f"{run}/env.json"))["hardware_probe"]
forward = pd.read_csv(f"{run}/latency/forward.csv")
ar = forward[(forward.model == "qwen2-57b-a14b") & (forward.K == 8) & (forward.B == 32) & (forward.s == 1)]
seconds = ar["seconds"].median()
pc = describe("qwen2-57b-a14b")
experts = ar["distinct_experts_mean"].iloc[0]  # measured at this point, per layer
bytes_read = 2 * (pc.dense_params() + experts * pc.routed_expert_one)
print(f"AR step B=32: {seconds * 1e3:.2f} ms, {bytes_read / 1e9:.1f} GB of weights -> "
      f"{bytes_read / seconds / 1e12:.2f} TB/s = {bytes_read / seconds / probe['bandwidth']:.1%} of the measured copy bandwidth "
      f"({probe['bandwidth'] / 1e12:.2f} TB/s)")
e2e = pd.read_csv(f"{run}/latency/e2e.csv")
t = e2e.groupby(["B", "mode"])["seconds"].median().unstack()
speedup = (t["ar"] / t["sd"]).rename("speedup")
print(speedup.to_string())
print(f"peak SD speedup {speedup.max():.2f}x at B = {speedup.idxmax()} (forced sigma 0.90, gamma 4)")
PY
if [ -n "${OUT:-}" ]; then cp -r "$RUN" "$OUT/"; fi
