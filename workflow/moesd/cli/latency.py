"""Commands of the latency stage (workflow/rules/latency.smk): `moesd latency` times T_T(B, s),
T_D(B, 1), T_reject(B) and end-to-end AR against SD (moesd.latency.sweeps), `moesd e2e-vllm` the
end-to-end points through vLLM (moesd.latency.e2e_vllm); both resumable per point."""

from __future__ import annotations

from pathlib import Path

from moesd.cli.args import PROMPTS, RUN_DIR, add_command


def cmd_latency(args) -> int:
    import torch

    from moesd.config import load_config
    from moesd.io import read_table
    from moesd.latency.measure import device_of
    from moesd.latency.store import PointStore
    from moesd.latency.sweeps import run_sweeps
    from moesd.latency.tables import report_failures, write_tables
    from moesd.timing import exclusive_timing

    config = load_config(args.config)
    device_of(config["latency"])  # a missing GPU stops here, before any work
    torch.set_num_threads(config["latency"]["threads"])
    out = Path(args.out)
    summary_path = Path(args.acceptance) if args.acceptance else None
    summary = read_table(summary_path) if summary_path and summary_path.is_file() else None
    with exclusive_timing(device_of(config["latency"])):
        tables = run_sweeps(config, Path(args.run_dir), Path(args.prompts), summary, PointStore(out / "points"))
    write_tables(out, tables)
    failed = sum((t["status"] != "ok").sum() for t in tables.values() if len(t))
    print(f"latency: {sum(len(t) for t in tables.values())} rows, {failed} failed points -> {out}")
    report_failures(tables, "latency")
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
