"""Commands of the acceptance stage (workflow/rules/acceptance.smk): `moesd acceptance` measures
per-round accepted draft tokens and derives alpha and sigma (moesd.acceptance), `moesd
acceptance-vllm` the same through vLLM's counters; `moesd routing`
counts distinct experts per forward (moesd.routing); `moesd plot-routing` draws Fig. 1 a/b from
those counts (moesd.figures.fig1_routing)."""

from __future__ import annotations

import json
from pathlib import Path

from moesd.cli.args import PROMPTS, RUN_DIR, add_command


def cmd_acceptance(args) -> int:
    """Every pair x dataset x temperature x gamma; one point file each, so a killed run resumes."""
    import torch

    from moesd.acceptance import acceptance_verdicts, measure_pairs, summarise
    from moesd.config import load_config, narrowed
    from moesd.io import write_csv, write_json, write_text

    config = load_config(args.config)
    platform = config["analysis"]["reference_platform"]
    if args.slice is not None:  # one pair's job (moesd.config.acceptance_slices), on its platform
        config, part = narrowed(config, "acceptance", args.slice)
        platform = part["platform"]
    torch.set_num_threads(config["acceptance"]["threads"])
    run_dir, out = Path(args.run_dir), Path(args.out)
    rounds, resolved = measure_pairs(config, run_dir, Path(args.prompts), out / "points", log=_log)
    rounds = rounds.assign(platform=platform)
    summary = summarise(rounds).assign(platform=platform)
    write_json(out / "models.json", resolved)  # hub snapshots are named by their commit
    write_csv(out / "rounds.csv", rounds)
    write_csv(out / "summary.csv", summary)
    print(summary.drop(columns=["target", "draft"]).to_string(index=False, float_format="%.3f"))
    manifest = run_dir / "models" / "manifest.json"
    target_loss = json.loads(manifest.read_text())["target"]["loss_curve"][-1]["loss"] if manifest.is_file() else None
    lines = acceptance_verdicts(summary, target_loss)
    for line in lines:
        print(line)
    write_text(out / "verdicts.txt", "\n".join(lines) + "\n")
    return 0


def cmd_acceptance_vllm(args) -> int:
    """The same pairs and settings through vLLM, beside ours (acceptance.vllm)."""

    from moesd.acceptance import backends_table, measure_pairs_vllm
    from moesd.backends.vllm import vllm_python
    from moesd.config import load_config, narrowed
    from moesd.io import read_table, write_csv

    config = load_config(args.config)
    platform = config["analysis"]["reference_platform"]
    if args.slice is not None:  # one platform and pair (moesd.config.acceptance_vllm_slices)
        config, part = narrowed(config, "acceptance_vllm", args.slice)
        platform = part["platform"]
    ours = read_table(args.summary)  # before the engine starts: a missing table stops here
    vllm_python()
    out = Path(args.out)
    summary = measure_pairs_vllm(config, Path(args.run_dir), Path(args.prompts), out / "points", log=_log)
    summary, table = summary.assign(platform=platform), backends_table(ours, summary).assign(platform=platform)
    write_csv(out / "summary_vllm.csv", summary)
    write_csv(out / "backends.csv", table)
    print(table.drop(columns=["target", "draft"]).to_string(index=False, float_format="%.3f"))
    return 0


def _log(line: str) -> None:
    print(line, flush=True)


def cmd_routing(args) -> int:
    from moesd.config import load_config
    from moesd.io import write_csv
    from moesd.routing import routing_table

    table = routing_table(load_config(args.config), Path(args.run_dir), Path(args.prompts))
    write_csv(args.out, table)
    if len(table):
        mean = table.groupby(["inputs", "mode", "tokens"])[["distinct_experts", "eq8"]].mean().reset_index()
        print(mean.to_string(index=False, float_format="%.2f"))
    return 0


def cmd_plot_routing(args) -> int:
    from moesd.figures.fig1_routing import routing_figure
    from moesd.io import read_table

    table = read_table(args.routing, "routing")
    if table.empty:
        raise ValueError(f"{args.routing}: no routing measurements (no MoE target in the run)")
    routing_figure(table, Path(args.out))
    return 0


def add_parsers(sub) -> None:
    add_command(
        sub,
        "acceptance",
        cmd_acceptance,
        "the acceptance stage: per-round accepted counts and alpha/sigma",
        config="the acceptance stage's config",
        run_dir=RUN_DIR,
        prompts=PROMPTS,
        out="output folder",
    ).add_argument("--slice", help="one pair's job (moesd.config.acceptance_slices: its name); default: every pair")

    p = add_command(
        sub,
        "acceptance-vllm",
        cmd_acceptance_vllm,
        "the acceptance stage through vLLM (the paper's engine), beside ours",
        config="the acceptance stage's config",
        run_dir=RUN_DIR,
        prompts=PROMPTS,
        out="output folder (summary_vllm.csv, backends.csv)",
    )
    p.add_argument("--summary", required=True, type=Path, help="our engine's summary.csv (the comparison)")
    p.add_argument("--slice", help="one PLATFORM/PAIR job (moesd.config.acceptance_vllm_slices); default: every pair")

    add_command(
        sub,
        "routing",
        cmd_routing,
        "distinct experts per layer against tokens per forward (Fig. 1)",
        config="the routing stage's config",
        run_dir=RUN_DIR,
        prompts=PROMPTS,
        out="routing.csv to write",
    )

    p = sub.add_parser("plot-routing", help="Fig. 1 (a/b): measured distinct experts against Eq. 8")
    p.add_argument("routing", type=Path, help="routing.csv of the acceptance stage")
    p.add_argument("--out", required=True, type=Path, help="figure path stem")
    p.set_defaults(func=cmd_plot_routing)
