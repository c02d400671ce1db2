"""Commands of the latency stage (workflow/rules/latency.smk): `moesd latency` times T_T(B, s),
T_D(B, 1), T_reject(B) and end-to-end AR against SD (moesd.latency.sweeps), the whole stage or
one slice of it (`--slice PLATFORM/PART`: one model at one K, the rejection rule, or one
end-to-end pair, on one platform: one cluster job each); `moesd latency-gather` concatenates the slices' tables into the stage's;
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


def cmd_latency_gather(args) -> int:
    """The slices' tables, concatenated in the order given, as the stage's tables."""
    import pandas as pd

    from moesd.columns import LATENCY_TABLES
    from moesd.latency.tables import write_tables

    tables = {}
    for name in LATENCY_TABLES:
        parts = []
        for folder in args.slices:
            path = Path(folder) / f"{name}.csv"
            if not path.is_file():
                raise FileNotFoundError(f"latency slice {folder}: {path.name} does not exist (run the slice first)")
            if path.stat().st_size > 1:  # an empty table: the slice measures no such point
                parts.append(pd.read_csv(path))
        tables[name] = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    write_tables(Path(args.out), tables)
    print(
        "latency: "
        + ", ".join(f"{len(t)} {name} rows" for name, t in tables.items())
        + f" from {len(args.slices)} slices"
    )
    return 0


def cmd_e2e_vllm(args) -> int:
    from moesd.backends.vllm import vllm_python
    from moesd.config import load_config
    from moesd.io import write_csv
    from moesd.latency.e2e_vllm import sweep_e2e_vllm
    from moesd.latency.measure import device_of
    from moesd.latency.store import PointStore
    from moesd.latency.tables import long_table, report_failures
    from moesd.timing import exclusive_timing

    config = load_config(args.config)
    vllm_python()  # before any work (the sweep checks every pair's folders before its first engine)
    out = Path(args.out)
    store = PointStore(out / "points")
    with exclusive_timing(device_of(config["latency"])):
        records = sweep_e2e_vllm(config, store, Path(args.run_dir), Path(args.prompts), log=_log)
    table = long_table(records)
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

    p = sub.add_parser("latency-gather", help="the latency slices' tables concatenated into the stage's")
    p.add_argument("slices", type=Path, nargs="+", help="slice folders of `moesd latency --slice`, in order")
    p.add_argument("--out", required=True, type=Path, help="folder of forward/draft/reject/e2e.csv")
    p.set_defaults(func=cmd_latency_gather)

    add_command(
        sub,
        "e2e-vllm",
        cmd_e2e_vllm,
        "end-to-end T_AR/T_SD through vLLM (latency.e2e.backends: vllm)",
        config="the latency stage's config",
        run_dir=RUN_DIR,
        prompts=PROMPTS,
        out="output folder (e2e_vllm.csv, points/)",
    )
