"""Command of the speedup stage (workflow/rules/fit.smk): `moesd speedup` composes speedups from
the latency tables (Eq. 4 of arXiv 2505.19645) and reads the measured end-to-end ones, each with
its bootstrap interval, and the AR step's achieved bandwidth (moesd.speedup, moesd.bandwidth)."""

from __future__ import annotations

from pathlib import Path

from moesd.cli.args import ANALYSIS, add_command


def read_input(path: Path, what: str, kind: str | None = None):
    from moesd.io import read_table

    if not path.is_file():
        raise FileNotFoundError(f"{what}: {path} does not exist")
    return read_table(path, kind)


def cmd_speedup(args) -> int:
    import pandas as pd

    from moesd.bandwidth import ar_bandwidth
    from moesd.config import declared_drafts, load_config, sigma_pair
    from moesd.hardware import load_hardware
    from moesd.io import write_csv
    from moesd.speedup import sigma_table, speedup_tables

    config = load_config(args.config)
    analysis = config["analysis"]
    latency = {
        name: read_input(args.latency / f"{name}.csv", f"latency {name} table")
        for name in ("forward", "draft", "reject", "e2e")
    }
    if args.e2e_vllm:  # vLLM's end-to-end points beside ours: one table, told apart by `backend`
        vllm = read_input(args.e2e_vllm, "vLLM's e2e table")
        latency["e2e"] = pd.concat([t for t in (latency["e2e"], vllm) if len(t)], ignore_index=True)
    for name, table in latency.items():  # failed points stay in the latency tables, not here
        failed = int((table["status"] != "ok").sum()) if "status" in table else 0
        if failed:
            print(f"speedup: {failed} failed points of the latency {name} table left out (their status is there)")
    pair = sigma_pair(config)
    summary = read_input(args.acceptance, "acceptance summary") if args.acceptance else None
    if pair is not None and summary is None:
        raise ValueError(f"analysis.sigma_pair {pair['name']!r}: the acceptance summary (--acceptance) is needed")
    sigmas = sigma_table(summary, *(pair["target"], pair["draft"]) if pair else (None, None))
    rounds = read_input(args.rounds, "acceptance rounds") if args.rounds and pair is not None else None
    drafts_of = declared_drafts(config["latency"]["models"])
    hardware = load_hardware(f"probe:{args.env}")  # the device every row was measured on (C9); before long work
    composed, e2e, composed_reps, e2e_reps = speedup_tables(latency, sigmas, pair, rounds, drafts_of, analysis)
    write_csv(args.out / "composed_bootstrap.csv", composed_reps)
    write_csv(args.out / "e2e_bootstrap.csv", e2e_reps)
    for table in (composed, e2e):
        table["hardware"], table["ridge_point"] = hardware.name, hardware.ridge_point
    bandwidth = ar_bandwidth(latency["forward"], hardware.bandwidth, hardware.copy_bandwidth, analysis["statistic"])
    write_csv(args.out / "composed.csv", composed)
    write_csv(args.out / "e2e.csv", e2e)
    write_csv(args.out / "bandwidth.csv", bandwidth)
    n = analysis["bootstrap_resamples"]
    print(f"{len(composed)} composed speedups, {len(e2e)} end-to-end speedups ({n} resamples) -> {args.out}")
    for row in bandwidth.itertuples():
        print(
            f"AR step {row.model} K={row.K} B={row.B}: {row.weight_bytes / 1e6:.0f} MB of weights in "
            f"{row.seconds * 1e3:.1f} ms = {row.bandwidth_fraction:.0%} of the read "
            f"bandwidth ({row.copy_fraction:.0%} of the copy bandwidth)"
        )
    return 0


def add_parsers(sub) -> None:
    p = add_command(
        sub,
        "speedup",
        cmd_speedup,
        "speedups composed from the latency tables (Eq. 4) and measured end to end",
        config=ANALYSIS,
        latency="the latency stage's folder (forward/draft/reject/e2e.csv)",
        env="the run's env.json (the device of every row)",
        out="output folder (composed.csv, e2e.csv, bandwidth.csv)",
    )
    p.add_argument("--acceptance", type=Path, help="the acceptance stage's summary.csv (measured sigma)")
    p.add_argument("--rounds", type=Path, help="the acceptance stage's rounds.csv (sigma resampled over prompts)")
    p.add_argument("--e2e-vllm", type=Path, help="the latency stage's e2e_vllm.csv (vLLM's e2e points, beside ours)")
