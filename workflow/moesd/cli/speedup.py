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


def platform_envs(paths: list[Path], latency: dict) -> dict:
    """platform -> its Hardware, from the env files PATHS (<platform>.json, as the workflow names
    them), in the order given. Latency tables without a platform column (an older run, or tables
    made by hand) are one platform: the one env file's."""
    from moesd.hardware import load_hardware

    rows = [set(t["platform"]) for t in latency.values() if len(t) and "platform" in t]
    if not rows:
        if len(paths) != 1:
            raise ValueError(f"--env: {len(paths)} env files, but the latency tables name no platform (give one)")
        for table in latency.values():
            table["platform"] = paths[0].stem
    envs = {path.stem: load_hardware(f"probe:{path}") for path in paths}
    missing = sorted(set().union(*rows) - set(envs)) if rows else []
    if missing:
        raise ValueError(f"--env: no env file for platform {', '.join(missing)} (give <platform>.json for each)")
    return envs


def on_platform(table, platform: str):
    """TABLE's rows measured on PLATFORM, without the column (the composition reads one platform)."""
    if table.empty:
        return table
    return table[table["platform"] == platform].drop(columns="platform").reset_index(drop=True)


def _concat(tables):
    import pandas as pd

    tables = [t for t in tables if len(t)]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def cmd_speedup(args) -> int:
    import pandas as pd

    from moesd.bandwidth import ar_bandwidth
    from moesd.config import declared_drafts, engine_pairs, load_config, sigma_pair
    from moesd.io import write_csv
    from moesd.latency.tables import missing_points
    from moesd.speedup import acceptance_settings, own_pair_sigmas, sigma_table, speedup_tables

    config = load_config(args.config)
    analysis = config["analysis"]
    latency = {
        name: read_input(args.latency / f"{name}.csv", f"latency {name} table", "latency")
        for name in ("forward", "draft", "reject", "e2e")
    }
    if args.e2e_vllm:  # vLLM's end-to-end points beside ours: one table, told apart by `backend`
        vllm = read_input(args.e2e_vllm, "vLLM's e2e table", "latency")
        latency["e2e"] = pd.concat([t for t in (latency["e2e"], vllm) if len(t)], ignore_index=True)
    missing = missing_points(latency)  # failed points stay in the latency tables; named in missing.csv
    for name, count in missing["table"].value_counts(sort=False).items():
        print(f"speedup: {count} failed points of the latency {name} table left out (speedup/missing.csv)")
    pair = sigma_pair(config)
    summary = read_input(args.acceptance, "acceptance summary", "acceptance") if args.acceptance else None
    if pair is not None and summary is None:
        raise ValueError(f"analysis.sigma_pair {pair['name']!r}: the acceptance summary (--acceptance) is needed")
    wanted = acceptance_settings(config["acceptance"])  # a summary that lost a setting stops here
    sigmas = sigma_table(summary, *(pair["target"], pair["draft"]) if pair else (None, None), wanted)
    # each target with a pair of its own composes with that pair's sigma; the others with the sigma pair's
    own = own_pair_sigmas(summary, config["latency"]["models"], engine_pairs(config), pair, wanted)
    sigmas = pd.concat([sigmas, own], ignore_index=True) if len(own) else sigmas
    rounds = read_input(args.rounds, "acceptance rounds") if args.rounds and pair is not None else None
    drafts_of = declared_drafts(config["latency"]["models"])
    envs = platform_envs(args.env, latency)  # the device every row was measured on (C9); before long work
    parts = []
    for platform, hardware in envs.items():  # each platform's rows composed with its own components
        rows = {name: on_platform(table, platform) for name, table in latency.items()}
        tables = speedup_tables(rows, sigmas, pair, rounds, drafts_of, analysis)
        tables = [t.assign(platform=platform, hardware=hardware.name, ridge_point=hardware.ridge_point) for t in tables]
        bandwidth = (
            ar_bandwidth(rows["forward"], hardware.bandwidth, hardware.copy_bandwidth, analysis["statistic"])
            if len(rows["forward"])
            else pd.DataFrame()
        )
        parts.append([*tables, bandwidth.assign(platform=platform)])
    composed, e2e, composed_reps, e2e_reps, bandwidth = (_concat([p[i] for p in parts]) for i in range(5))
    write_csv(args.out / "composed_bootstrap.csv", composed_reps)
    write_csv(args.out / "e2e_bootstrap.csv", e2e_reps)
    write_csv(args.out / "composed.csv", composed)
    write_csv(args.out / "e2e.csv", e2e)
    write_csv(args.out / "bandwidth.csv", bandwidth)
    write_csv(args.out / "missing.csv", missing)
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
        out="output folder (composed.csv, e2e.csv, bandwidth.csv, missing.csv)",
    )
    p.add_argument(
        "--env", required=True, type=Path, nargs="+", help="each platform's env file, <platform>.json (its device)"
    )
    p.add_argument("--acceptance", type=Path, help="the acceptance stage's summary.csv (measured sigma)")
    p.add_argument("--rounds", type=Path, help="the acceptance stage's rounds.csv (sigma resampled over prompts)")
    p.add_argument("--e2e-vllm", type=Path, help="the latency stage's e2e_vllm.csv (vLLM's e2e points, beside ours)")
