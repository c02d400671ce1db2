"""Benchmark: the decode step with each attention kernel (moesd.models.attention), side by side.

    python workflow/scripts/bench_attention.py [--config config/config.yaml] [--rounds 5]

For each latency model of the config (one per spec), dtype, B and s, the same weights are loaded
twice, with torch's sdpa and with the kernel `auto` picks (the math path in bf16, by_shape in
fp32), and their steps (the latency stage's forward over a 128-token context, fresh tokens each
call) alternate within each round: the medians' ratio auto / sdpa is measured under the same
drift. Prints a table (below 1: auto is faster) and writes it with --csv.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--tokens", type=int, nargs="+", default=[1, 5])
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per kernel per round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--csv", type=Path)
    args = parser.parse_args()

    import pandas as pd
    import torch
    from moesd.config import load_config
    from moesd.devices import DTYPES
    from moesd.models.loading import load_model
    from moesd.step_profile import Steps
    from moesd.timing import exclusive_timing

    torch.set_num_threads(args.threads)
    models = {m["spec"]: m for m in reversed(load_config(args.config)["latency"]["models"])}  # one per spec
    rows = []
    with exclusive_timing("cpu"):
        for spec, entry in reversed(models.items()):
            for dtype in args.dtypes:
                pair = {impl: load_model(spec, device="cpu", dtype=DTYPES[dtype], attention_impl=impl)
                        for impl in ("sdpa", "auto")}  # fmt: skip
                chosen = pair["auto"].attention_impl
                for batch in args.batch_sizes:
                    for s in [1] if entry["role"] == "draft" else args.tokens:
                        ms = {impl: [] for impl in pair}
                        steps = {impl: Steps(model, batch, s, 128) for impl, model in pair.items()}  # one prefill each
                        for impl in pair:
                            steps[impl].timed(0, warmup=2)
                        for _ in range(args.rounds):
                            for impl in pair:
                                ms[impl] += steps[impl].timed(args.steps)
                        sdpa, auto = statistics.median(ms["sdpa"]), statistics.median(ms["auto"])
                        rows.append({"model": entry["name"], "dtype": dtype, "B": batch, "s": s, "auto": chosen,
                                     "sdpa_ms": sdpa, "auto_ms": auto, "ratio": auto / sdpa})  # fmt: skip
                        print(f"{entry['name']:>6} {dtype:>8} B={batch:<3} s={s}  sdpa {sdpa:8.2f} ms  "
                              f"{chosen} {auto:8.2f} ms  ratio {auto / sdpa:.2f}", flush=True)  # fmt: skip
    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False, floatfmt=".2f"))
    if args.csv:
        table.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
