"""Command-line glue of the model-side stages (models, prompts, acceptance, routing).

Every stage reads the run's resolved config (data/runs/<experiment>/config.json) and writes
into the run folder. Cheap checks (prompt sets, model specs) run before any long work.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch

from moesd.config import load_config
from moesd.io import atomic_path, fingerprint, write_csv, write_json, write_text


def resolve_spec(spec: str, run_dir: Path) -> str:
    """trained:NAME -> dir:<run>/models/NAME; other specs unchanged."""
    if spec.startswith("trained:"):
        return f"dir:{run_dir / 'models' / spec.removeprefix('trained:')}"
    return spec


def check_model_specs(config: dict) -> None:
    """Parse every pair's specs and resolve hub ones (download or cache), before long work."""
    from moesd.models.loading import ModelSpecError, parse_spec, resolve_folder

    for pair in config["pairs"]:
        for role in ("target", "draft"):
            spec = pair[role]
            if spec.startswith("trained:"):
                if spec.removeprefix("trained:") not in ("target", "draft"):
                    raise ModelSpecError(f"model spec {spec}: trained: names are target and draft")
                continue
            parsed = parse_spec(spec)
            if parsed.kind in ("hf", "dir"):
                resolve_folder(parsed)


# ---- models ------------------------------------------------------------------------------------
def cmd_train(args) -> int:
    from moesd.prompts import check_prompt_source
    from moesd.train import build_models

    config = load_config(args.config)
    for source in config["acceptance"]["datasets"]:  # fail on a broken prompt set before training
        check_prompt_source(source)
    check_model_specs(config)
    manifest = build_models(config["models"], Path(args.out))
    print(
        f"target {manifest['target']['parameters']:,} parameters, final loss {manifest['target']['loss_curve'][-1]['loss']:.3f}"
    )
    print(
        f"draft {manifest['draft']['parameters']:,} parameters, final KL {manifest['draft']['loss_curve'][-1]['loss']:.3f}"
    )
    return 0


# ---- prompts -----------------------------------------------------------------------------------
def _folder(spec: str) -> Path | None:
    from moesd.models.loading import parse_spec, resolve_folder

    parsed = parse_spec(spec)
    return None if parsed.kind == "arch" else resolve_folder(parsed)


def cmd_prompts(args) -> int:
    """Encode every prompt set with each pair's target tokenizer; record length statistics."""
    from moesd.prompts import PromptEncoder, encode_rows, prompt_rows

    config = load_config(args.config)
    run_dir, out = Path(args.run_dir), Path(args.out)
    sources = list(dict.fromkeys(config["acceptance"]["datasets"] + config["routing"]["datasets"]))
    rows_by_source = {source: prompt_rows(source) for source in sources}
    stats = []
    for pair in config["pairs"]:
        encoder = PromptEncoder(_folder(resolve_spec(pair["target"], run_dir)))
        for source, rows in rows_by_source.items():
            encoded = encode_rows(rows, encoder)
            name = dataset_name(source)
            with atomic_path(out / pair["name"] / f"{name}.jsonl") as tmp:
                tmp.write_text("".join(json.dumps(r) + "\n" for r in encoded))
            lengths = pd.Series([len(r["input_ids"]) for r in encoded])
            stats.append(
                {
                    "pair": pair["name"],
                    "dataset": name,
                    "n_prompts": len(lengths),
                    "min_tokens": int(lengths.min()),
                    "median_tokens": float(lengths.median()),
                    "max_tokens": int(lengths.max()),
                    "chat_template": encoder.uses_chat_template,
                }
            )
    columns = ["pair", "dataset", "n_prompts", "min_tokens", "median_tokens", "max_tokens", "chat_template"]
    table = pd.DataFrame(stats, columns=columns)
    write_csv(out / "stats.csv", table)
    print(table.to_string(index=False))
    return 0


def dataset_name(source: str) -> str:
    return Path(source).stem if source.endswith(".jsonl") else source


def read_prompts(path: Path, limit: int | None = None) -> list[list[int]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r["input_ids"] for r in rows][:limit]


# ---- acceptance --------------------------------------------------------------------------------
def _model_fingerprint(spec: str) -> str:
    folder = _folder(spec)
    if folder is None:
        return spec
    files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.glob("*.safetensors"))
    return fingerprint(spec, (folder / "config.json").read_text(), files)


def cmd_acceptance(args) -> int:
    """Every pair x dataset x temperature x gamma; one point file each, so a killed run resumes."""
    from moesd.acceptance import measure_rounds, summarise
    from moesd.models import load_model

    config = load_config(args.config)
    acc = config["acceptance"]
    torch.set_num_threads(acc["threads"])
    run_dir, out = Path(args.run_dir), Path(args.out)
    points_dir = out / "points"
    frames, resolved = [], {}
    for pair in config["pairs"]:
        target_spec, draft_spec = resolve_spec(pair["target"], run_dir), resolve_spec(pair["draft"], run_dir)
        model_keys = {spec: _model_fingerprint(spec) for spec in (target_spec, draft_spec)}  # read once per pair
        for role, spec in (("target", target_spec), ("draft", draft_spec)):  # where each spec resolved to
            resolved[pair[role]] = {"folder": str(_folder(spec)), "fingerprint": model_keys[spec]}
        models = None
        for source in acc["datasets"]:
            dataset = dataset_name(source)
            prompts = read_prompts(Path(args.prompts) / pair["name"] / f"{dataset}.jsonl", acc["max_prompts"])
            for temperature in acc["temperatures"]:
                for gamma in acc["gammas"]:
                    key = fingerprint(
                        model_keys[target_spec],
                        model_keys[draft_spec],
                        prompts,
                        temperature,
                        gamma,
                        acc["batch_size"],
                        acc["max_new_tokens"],
                        acc["seed"],
                    )
                    point = points_dir / f"{pair['name']}_{dataset}_T{temperature}_g{gamma}_{key}.csv"
                    if not point.is_file():
                        if models is None:
                            models = (load_model(target_spec), load_model(draft_spec))
                        rounds = measure_rounds(
                            *models,
                            prompts,
                            temperature=temperature,
                            gamma=gamma,
                            batch_size=acc["batch_size"],
                            max_new_tokens=acc["max_new_tokens"],
                            seed=acc["seed"],
                        )
                        rounds = rounds.assign(
                            target=pair["target"], draft=pair["draft"], pair=pair["name"], dataset=dataset
                        )
                        write_csv(point, rounds)
                        print(f"measured {point.name}: {len(rounds)} rounds", flush=True)
                    frames.append(pd.read_csv(point))
    rounds = pd.concat(frames, ignore_index=True)
    summary = summarise(rounds)
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


def acceptance_verdicts(summary: pd.DataFrame, target_loss: float | None = None) -> list[str]:
    """The stage's headline: greedy alpha on HumanEval at the largest gamma, and whether sampling
    accepts less than greedy decoding (the paper's C10), per pair and dataset; when it does not,
    the reason the data give."""
    lines = []
    for (target, draft, dataset), group in summary.groupby(["target", "draft", "dataset"]):
        gamma = group["gamma"].max()
        at = group[group["gamma"] == gamma].set_index("temperature")["alpha"]
        greedy, sampled = at.get(0.0), at.get(1.0)
        line = f"{target} + {draft}, {dataset}, gamma {gamma}: greedy alpha {greedy:.3f}" if greedy is not None else ""
        if greedy is not None and sampled is not None:
            relation = "below" if sampled < greedy else "NOT below"
            line += f"; sampled (T=1) alpha {sampled:.3f} is {relation} greedy"
            if sampled >= greedy and target_loss is not None:
                line += (
                    f" (why: the trained target is a weak, high-entropy model, final training loss {target_loss:.2f} "
                    "nats/token; sampled acceptance is the overlap 1 - TV(p, q) of two flat distributions, which "
                    "distillation makes large, while greedy acceptance needs the argmax of a flat p to match, which "
                    "small differences flip. The paper's instruct models are peaked, where the order reverses.)"
                )
        if line:
            lines.append(line)
    return lines


# ---- routing -----------------------------------------------------------------------------------
def cmd_routing(args) -> int:
    from moesd.models import load_model
    from moesd.prompts import random_prompts
    from moesd.routing import engine_routing_stats, hf_routing_stats

    config = load_config(args.config)
    rt = config["routing"]
    run_dir = Path(args.run_dir)
    frames = []
    seen = set()
    longest = max(rt["sequence_tokens"]) + 16  # random ids: the longest routed run plus context
    for pair in config["pairs"]:
        spec = resolve_spec(pair["target"], run_dir)
        if spec in seen:
            continue
        seen.add(spec)
        model = load_model(spec)  # cuda when available (a hub MoE in fp32 would not fit a CPU node)
        if not model.cfg.is_moe:
            continue
        sources = {
            dataset_name(s): read_prompts(Path(args.prompts) / pair["name"] / f"{dataset_name(s)}.jsonl")
            for s in rt["datasets"]
        }
        sources["random"] = random_prompts(max(rt["batch_sizes"]), longest, model.cfg.vocab_size, 0)
        for source, prompts in sources.items():
            stats = engine_routing_stats(
                model, prompts, source, rt["batch_sizes"], rt["sequence_tokens"], rt["n_sequences"]
            )
            frames.append(stats.assign(model=pair["target"], implementation="engine"))
    for spec in rt["random_models"]:  # Eq. 8's setting: random weights, random ids
        model = load_model(spec)  # cuda when available (a hub MoE in fp32 would not fit a CPU node)
        if not model.cfg.is_moe:
            raise ValueError(f"routing.random_models: {spec!r} is not a MoE model")
        prompts = random_prompts(max(rt["batch_sizes"]), longest, model.cfg.vocab_size, 0)
        stats = engine_routing_stats(
            model, prompts, "random", rt["batch_sizes"], rt["sequence_tokens"], rt["n_sequences"]
        )
        frames.append(stats.assign(model=spec, implementation="engine, random weights"))
    for spec in rt["hf_models"]:
        from transformers import AutoModelForCausalLM

        folder = _folder(spec)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        prompts = random_prompts(max(rt["batch_sizes"]), longest, model.config.vocab_size, 0)
        stats = hf_routing_stats(model, prompts, "random", rt["batch_sizes"], rt["sequence_tokens"], rt["n_sequences"])
        frames.append(stats.assign(model=spec, implementation="transformers hooks"))
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    write_csv(args.out, table)
    if len(table):
        mean = table.groupby(["inputs", "mode", "tokens"])[["distinct_experts", "eq8"]].mean().reset_index()
        print(mean.to_string(index=False, float_format="%.2f"))
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("train", help="the models stage: train the tiny MoE target and distil the draft")
    p.add_argument("--config", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="folder for target/, draft/ and manifest.json")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("prompts", help="encode the prompt sets with each pair's tokenizer")
    p.add_argument("--config", required=True, type=Path)
    p.add_argument("--run-dir", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=cmd_prompts)

    p = sub.add_parser("acceptance", help="the acceptance stage: per-round accepted counts and alpha/sigma")
    p.add_argument("--config", required=True, type=Path)
    p.add_argument("--run-dir", required=True, type=Path)
    p.add_argument("--prompts", required=True, type=Path, help="the prompts stage's folder")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=cmd_acceptance)

    p = sub.add_parser("routing", help="distinct experts per layer against tokens per forward (Fig. 1)")
    p.add_argument("--config", required=True, type=Path)
    p.add_argument("--run-dir", required=True, type=Path)
    p.add_argument("--prompts", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="routing.csv")
    p.set_defaults(func=cmd_routing)


__all__ = ["add_parsers", "resolve_spec"]
