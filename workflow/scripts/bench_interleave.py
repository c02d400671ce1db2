"""Benchmark: how well repeated sweeps of one latency model agree, timed one batch size at a time
(latency.rounds.interleave: tokens) or with every batch size in each round (batch_sizes), the two
ways alternating in one process so that the machine's drift hits both:

    python workflow/scripts/bench_interleave.py [--model moe] [--repetitions 6] [--csv FILE]

The model is one of the default experiment's latency models (config/config.yaml), timed in the
dtype `latency.dtype: auto` picks on this machine, under the default's round protocol. For each
way it prints, over every pair of repetitions, the share of point medians within +-5 % (raw, and
with each repetition's overall level divided out: the machine's drift over minutes, which no
protocol within a run removes), of T(B, s) / T(1, s) (the shape over B a speedup curve reads) and
of T(B, 1) / T(B, v) (the target efficiency, v the largest s).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

WAYS = ("tokens", "batch_sizes")


def within(ratios, share: float = 0.05) -> str:
    ratios = np.asarray(ratios)
    low, high = np.percentile(ratios, [5, 95])
    return f"{np.mean(np.abs(ratios - 1) <= share):.0%} ({low:.3f}-{high:.3f})"


def pairs(table: pd.DataFrame, value: str) -> list[float]:
    """Ratios of VALUE between every two repetitions, per point (rows indexed by repetition)."""
    out = []
    for _, point in table.groupby(["B", "s"]):
        values = point.set_index("repetition")[value]
        out += [values[b] / values[a] for a, b in itertools.combinations(sorted(values.index), 2)]
    return out


def summarise(table: pd.DataFrame) -> list[str]:
    rows = []
    for way in WAYS:
        t = table[table["way"] == way].copy()
        level = t.groupby("repetition")["median"].apply(lambda v: np.exp(np.log(v).mean()))
        t["levelled"] = t["median"] / t["repetition"].map(level)
        first = t[t["B"] == t["B"].min()].set_index(["repetition", "s"])["median"]
        t["shape"] = t["median"] / [first[(r, s)] for r, s in zip(t["repetition"], t["s"], strict=True)]
        widest = t.groupby(["repetition", "B"])["s"].transform("max")
        one = t[t["s"] == 1].set_index(["repetition", "B"])["median"]
        verify = t[t["s"] == widest].set_index(["repetition", "B"])["median"]
        efficiency = (one / verify).rename("efficiency").reset_index().assign(s=1)
        rows.append(
            f"| {way} | {within(pairs(t, 'median'))} | {within(pairs(t, 'levelled'))} | "
            f"{within(pairs(t[t['B'] > t['B'].min()], 'shape'))} | {within(pairs(efficiency, 'efficiency'))} |"
        )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="moe", help="a latency model of config/config.yaml (default: moe)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32])
    parser.add_argument("--tokens", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--repetitions", type=int, default=6, help="sweeps per way (default: 6)")
    parser.add_argument("--csv", type=Path, help="also write every point median here")
    args = parser.parse_args(argv)
    if args.repetitions < 2:
        parser.error("--repetitions: at least 2 (agreement is between repetitions)")
    if min(args.batch_sizes) < 1 or min(args.tokens) < 1:
        parser.error("--batch-sizes and --tokens: each at least 1")

    import torch
    from moesd.config import load_config
    from moesd.devices import timing_dtype
    from moesd.latency.measure import forward_point, forward_points, round_protocol
    from moesd.models.loading import load_model
    from moesd.paths import REPO_ROOT

    lat = load_config(REPO_ROOT / "config" / "config.yaml")["latency"]
    entry = next((m for m in lat["models"] if m["name"] == args.model), None)
    if entry is None:
        parser.error(f"--model: {args.model!r} is not a latency model of config/config.yaml")
    torch.set_num_threads(lat["threads"])
    dtype = timing_dtype(lat["dtype"], "cpu")
    model = load_model(entry["spec"], device="cpu", dtype=dtype)
    protocol, warmup, length = round_protocol(lat), lat["warmup"], lat["context"]["length"]
    contexts = {batch: [length] * batch for batch in args.batch_sizes}
    rows, start = [], time.perf_counter()
    for repetition in range(args.repetitions):
        for way in WAYS if repetition % 2 == 0 else WAYS[::-1]:  # neither way always first
            if way == "tokens":
                points = {
                    b: forward_point(model, b, args.tokens, contexts[b], warmup, protocol, seed=b) for b in contexts
                }
            else:
                points = forward_points(model, contexts, args.tokens, warmup, protocol)
            for batch, point in points.items():
                for part in point["per_s"]:
                    rows.append(
                        {"repetition": repetition, "way": way, "B": batch, "s": part["s"]}
                        | {"median": float(np.median(part["seconds"])), "rounds": len(part["seconds"])}
                    )
        print(f"repetition {repetition + 1} of {args.repetitions}: {time.perf_counter() - start:.0f} s", flush=True)
    table = pd.DataFrame(rows)
    if args.csv:
        table.to_csv(args.csv, index=False)
    print(f"\n{args.model} ({str(dtype).removeprefix('torch.')}), B = {args.batch_sizes}, s = {args.tokens}")
    print("| rounds over | point medians | levels divided out | T(B, s) / T(1, s) | T(B, 1) / T(B, v) |")
    print("|---|---|---|---|---|")
    print("\n".join(summarise(table)))
    print("(share of repetition pairs within +-5 %; 5th-95th percentile of the ratio in brackets)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
