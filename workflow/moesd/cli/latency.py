"""Commands of the latency stage (workflow/rules/latency.smk): `moesd latency` times T_T(B, s),
T_D(B, 1), T_reject(B) and end-to-end AR against SD (moesd.latency.sweeps), the whole stage or
one slice of it (`--slice PLATFORM/PART`: one model at one K, the rejection rule, or one
end-to-end pair, on one platform: one cluster job each); `moesd gather` (moesd.cli.gather) concatenates the slices' tables;
`moesd e2e-vllm` times the end-to-end points through vLLM (moesd.latency.e2e_vllm). Every
measurement is resumable per point."""

from __future__ import annotations

from pathlib import Path

from moesd.cli.args import PROMPTS, RUN_DIR, add_command


def cmd_latency(args) -> int:
    import torch

    from moesd.config import latency_slices, load_config
    from moesd.config.platforms import platform_of
    from moesd.io import read_table
    from moesd.latency.measure import device_of
    from moesd.latency.store import PointStore
    from moesd.latency.sweeps import run_sweeps
    from moesd.latency.tables import report_failures, write_tables
    from moesd.timing import exclusive_timing

    config = load_config(args.config)
    device_of(config["latency"])  # a missing GPU stops here, before any work
    slices = latency_slices(config)
    if args.slice is not None and args.slice not in slices:
        raise ValueError(f"--slice {args.slice}: not a slice of this config ({', '.join(slices)})")
    # the slice's platform (the whole stage: the reference platform's), its threads and its name on every row
    platform = platform_of(
        config, slices[args.slice]["platform"] if args.slice else config["analysis"]["reference_platform"]
    )
    torch.set_num_threads(platform["threads"])
    out = Path(args.out)
    summary_path = Path(args.acceptance) if args.acceptance else None
    summary = read_table(summary_path) if summary_path and summary_path.is_file() else None
    with exclusive_timing(device_of(config["latency"])):
        tables = run_sweeps(
            config, Path(args.run_dir), Path(args.prompts), summary, PointStore(out / "points"), args.slice
        )
    tables = {name: table.assign(platform=platform["name"]) if len(table) else table for name, table in tables.items()}
    write_tables(out, tables)
    failed = sum((t["status"] != "ok").sum() for t in tables.values() if len(t))
    stage = "latency" if args.slice is None else f"latency slice {args.slice}"
    print(f"{stage}: {sum(len(t) for t in tables.values())} rows, {failed} failed points -> {out}")
    report_failures(tables, stage)
    return 0


def cmd_e2e_vllm(args) -> int:
    from moesd.backends.vllm import vllm_python
    from moesd.config import load_config, narrowed
    from moesd.io import write_csv
    from moesd.latency.e2e_vllm import sweep_e2e_vllm
    from moesd.latency.measure import device_of
    from moesd.latency.store import PointStore
    from moesd.latency.tables import long_table, report_failures
    from moesd.timing import exclusive_timing

    config = load_config(args.config)
    platform = config["analysis"]["reference_platform"]
    if args.slice is not None:  # one platform, pair and K (moesd.config.e2e_vllm_slices)
        config, part = narrowed(config, "e2e_vllm", args.slice)
        platform = part["platform"]
    vllm_python()  # before any work (the sweep checks every pair's folders before its first engine)
    out = Path(args.out)
    store = PointStore(out / "points")
    with exclusive_timing(device_of(config["latency"])):
        records = sweep_e2e_vllm(config, store, Path(args.run_dir), Path(args.prompts), log=_log)
    table = long_table(records)
    table = table.assign(platform=platform) if len(table) else table
    write_csv(out / "e2e_vllm.csv", table)
    failed = sum(r["status"] != "ok" for r in records)
    print(f"e2e through vLLM: {len(records)} points, {failed} failed -> {out / 'e2e_vllm.csv'}")
    report_failures({"e2e": table}, "e2e through vLLM")
    return 0


def _log(line: str) -> None:
    print(line, flush=True)


def add_parsers(sub) -> None:
    p = add_command(
        sub,
        "latency",
        cmd_latency,
        "T_T(B,s), T_D(B,1), T_reject(B) sweeps and end-to-end T_AR/T_SD",
        config="the latency stage's config",
        run_dir=RUN_DIR,
        prompts=PROMPTS,
        out="output folder",
    )
    p.add_argument("--acceptance", type=Path, help="the acceptance stage's summary.csv (forced alpha)")
    p.add_argument("--slice", help="one slice of the stage (moesd.config.latency_slices); default: every slice")

    add_command(
        sub,
        "e2e-vllm",
        cmd_e2e_vllm,
        "end-to-end T_AR/T_SD through vLLM (latency.e2e.backends: vllm)",
        config="the latency stage's config",
        run_dir=RUN_DIR,
        prompts=PROMPTS,
        out="output folder (e2e_vllm.csv, points/)",
    ).add_argument("--slice", help="one PLATFORM/PAIR[-K<k>] job (moesd.config.e2e_vllm_slices); default: all")
