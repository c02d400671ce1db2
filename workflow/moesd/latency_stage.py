"""`moesd latency`: the stage's sweeps over models, K, B and s, and the end-to-end runs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from moesd.config import load_config
from moesd.latency import (
    PointStore,
    context_lengths,
    e2e_point,
    forward_point,
    long_table,
    per_s_records,
    reject_point,
    run_point,
    write_tables,
)
from moesd.models.loading import timing_dtype


def with_k(spec: str, k: int | None) -> str:
    """An arch: spec with num_experts_per_tok overridden (the paper's sparsity sweep)."""
    if k is None:
        return spec
    if not spec.startswith("arch:"):
        raise ValueError(f"latency model {spec!r}: a K sweep needs an arch: spec")
    separator = "," if spec.count(":") >= 2 else ":"
    return f"{spec}{separator}num_experts_per_tok={k}"


def _prompt_lengths(prompts_dir: Path, dataset: str) -> list[int]:
    files = sorted(prompts_dir.glob(f"*/{dataset}.jsonl"))
    if not files:
        return []
    return [len(json.loads(line)["input_ids"]) for line in files[0].read_text().splitlines() if line.strip()]


def _describe(model, spec, name, role, k) -> dict:
    return {
        "model": name,
        "spec": spec,
        "role": role,
        "K": model.cfg.top_k if model.cfg.is_moe else 1,
        "E": model.cfg.num_experts if model.cfg.is_moe else 1,
        "expert_impl": model.expert_impl,
        "dtype": str(model.dtype).removeprefix("torch."),
        "device": str(model.device),
        "threads": torch.get_num_threads(),
        "cuda_graphs": bool(model.cuda_graphs and model.device.type == "cuda"),
        "k_override": k,
    }


def device_of(lat: dict) -> str:
    """latency.device resolved (auto: cuda when available); cuda without a CUDA device is an error."""
    if lat["device"] == "cuda" and not torch.cuda.is_available():
        raise ValueError("latency.device: cuda, but this torch sees no CUDA device")
    return ("cuda" if torch.cuda.is_available() else "cpu") if lat["device"] == "auto" else lat["device"]


def sweep_forward(lat: dict, store: PointStore, prompt_lengths, run_dir: Path) -> tuple[list, list]:
    """Every model (and K) at every batch size: one point per (model, B) timing all its s."""
    from moesd.models import load_model
    from moesd.stages import resolve_spec

    forward, draft = [], []
    device = device_of(lat)
    dtype = timing_dtype(lat["dtype"], device)
    jobs = [(m, k) for m in lat["models"] for k in (m.get("k_values") or [None])]
    for entry, k in tqdm(jobs, desc="latency models", ascii=True, mininterval=5):
        spec = with_k(resolve_spec(entry["spec"], run_dir), k)
        model = None
        tokens = [1] if entry["role"] == "draft" else entry.get("tokens") or list(range(1, lat["gamma_max"] + 2))
        for batch in entry.get("batch_sizes") or lat["batch_sizes"]:
            contexts = context_lengths(batch, lat["context"], prompt_lengths, seed=batch)
            key = (
                spec,
                batch,
                tokens,
                contexts,
                lat["warmup"],
                lat["repeats"],
                lat["threads"],
                str(dtype),
            )
            if model is None and not store.has("forward", key):
                model = load_model(spec, device=device, dtype=dtype, cuda_graphs=lat["cuda_graphs"])
            describe = {"B": batch, "context_len": float(sum(contexts) / batch)}
            if model is not None:
                describe |= _describe(model, spec, entry["name"], entry["role"], k)
            record = run_point(
                store,
                "forward",
                key,
                lambda b=batch, c=contexts, m=model, t=tokens: forward_point(
                    m, b, t, c, lat["warmup"], lat["repeats"], seed=b
                ),
                describe,
            )
            (draft if entry["role"] == "draft" else forward).extend(per_s_records(record, tokens))
    return forward, draft


def sweep_reject(lat: dict, store: PointStore, vocab: int, device) -> list:
    records = []
    for temperature in lat["reject_temperatures"]:
        for batch in lat["batch_sizes"]:
            key = (batch, lat["gamma_max"], vocab, temperature, lat["warmup"], lat["repeats"], str(device))
            describe = {
                "B": batch,
                "gamma": lat["gamma_max"],
                "vocab": vocab,
                "temperature": temperature,
                "device": str(device),
            }
            measure = lambda b=batch, t=temperature: reject_point(  # noqa: E731
                b, lat["gamma_max"], vocab, t, device, lat["warmup"], lat["repeats"], seed=b
            )
            records.append(run_point(store, "reject", key, measure, describe))
    return records


def forced_alpha(summary: pd.DataFrame | None, pair: dict, e2e: dict) -> float:
    """The alpha the acceptance stage measured for PAIR at the e2e setting (dataset, temperature, gamma)."""
    if summary is None:
        raise ValueError("forced acceptance needs the acceptance stage's summary.csv")
    rows = summary[
        (summary["target"] == pair["target"])
        & (summary["draft"] == pair["draft"])
        & (summary["dataset"] == e2e["dataset"])
        & (summary["temperature"] == e2e["temperature"])
        & (summary["gamma"] == e2e["gamma"])
    ]
    if rows.empty:
        raise ValueError(
            f"no measured alpha for pair {pair['name']}, {e2e['dataset']}, T={e2e['temperature']}, gamma={e2e['gamma']}"
        )
    return float(rows["alpha"].iloc[0])


def _e2e_pair(entry: dict, setting: dict, pairs: dict, summary, run_dir: Path, prompts_dir: Path):
    """(target spec, draft spec, forced alpha or None, acceptance label, prompts or None)."""
    from moesd.stages import read_prompts, resolve_spec

    if entry["acceptance"] == "real":
        pair = pairs[entry["pair"]]
        prompts = read_prompts(prompts_dir / pair["name"] / f"{setting['dataset']}.jsonl")
        return resolve_spec(pair["target"], run_dir), resolve_spec(pair["draft"], run_dir), None, "real", prompts
    if "alpha" in entry:
        alpha, note = entry["alpha"], entry.get("alpha_note", "given in the config")
    else:
        alpha = forced_alpha(summary, pairs[entry["alpha_from"]], setting)
        note = f"measured: {entry['alpha_from']}, {setting['dataset']}, T={setting['temperature']}, gamma={setting['gamma']}"
    return entry["target"], entry["draft"], alpha, f"forced alpha={alpha:.4f} ({note})", None


def sweep_e2e(config: dict, store: PointStore, run_dir: Path, prompts_dir: Path, summary) -> list:
    from moesd.models import load_model
    from moesd.prompts import random_prompts

    e2e = config["latency"]["e2e"]
    device = device_of(config["latency"])
    dtype = timing_dtype(config["latency"]["dtype"], device)
    pairs = {p["name"]: p for p in config["pairs"]}
    records = []
    jobs = [
        (entry, {k: v for k, v in e2e.items() if k not in ("pairs", "temperatures")} | {"temperature": t})
        for entry in e2e["pairs"]
        for t in e2e["temperatures"]
    ]
    models, loaded = None, None
    for entry, setting in jobs:
        target_spec, draft_spec, alpha, source, prompts = _e2e_pair(
            entry, setting, pairs, summary, run_dir, prompts_dir
        )
        for batch in setting["batch_sizes"]:
            for mode in ("ar", "sd"):
                key = (
                    target_spec,
                    draft_spec,
                    mode,
                    batch,
                    setting,
                    alpha,
                    config["latency"]["threads"],
                    str(dtype),
                )
                if loaded != (target_spec, draft_spec) and not store.has("e2e", key):
                    graphs = config["latency"]["cuda_graphs"]
                    models = loaded = measure = None  # free the previous pair: two 57B pairs do not fit one GPU
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
                    models = tuple(
                        load_model(x, device=device, dtype=dtype, cuda_graphs=graphs) for x in (target_spec, draft_spec)
                    )
                    loaded = (target_spec, draft_spec)
                n_batches = -(-setting["sequences"] // batch)  # ceil: every B decodes >= `sequences` prompts
                if prompts is None and loaded == (target_spec, draft_spec):  # synthetic: random ids
                    n_prompts = max(max(setting["batch_sizes"]), setting["sequences"])
                    prompts = random_prompts(n_prompts, setting["context_length"], models[0].cfg.vocab_size, 0)
                order = [prompts[i % len(prompts)] for i in range(n_batches * batch)] if prompts else []
                batches = [order[j * batch : (j + 1) * batch] for j in range(n_batches)]
                describe = {
                    "name": entry["name"],
                    "target": target_spec,
                    "draft": draft_spec,
                    "dataset": setting["dataset"],
                    "temperature": setting["temperature"],
                    "gamma": setting["gamma"],
                    "B": batch,
                    "mode": mode,
                    "acceptance_source": source,
                    "max_new_tokens": setting["max_new_tokens"],
                    "batching": setting["batching"],
                    "sequences": n_batches * batch,
                    "dtype": str(dtype).removeprefix("torch."),
                    "device": device,
                }
                measure = lambda m=mode, p=batches, pair_models=models, a=alpha, s=setting: e2e_point(  # noqa: E731
                    *pair_models,
                    p,
                    mode=m,
                    gamma=s["gamma"],
                    temperature=s["temperature"],
                    max_new_tokens=s["max_new_tokens"],
                    batching=s["batching"],
                    acceptance="forced" if a is not None else "target",
                    alpha=a,
                    warmup=s["warmup"],
                    repeats=s["repeats"],
                    seed=config["latency"]["seed"],
                )
                records.append(run_point(store, "e2e", key, measure, describe))
    return records


def cmd_latency(args) -> int:
    config = load_config(args.config)
    lat = config["latency"]
    device_of(lat)  # a missing GPU stops here, before any work
    torch.set_num_threads(lat["threads"])
    out, run_dir, prompts_dir = Path(args.out), Path(args.run_dir), Path(args.prompts)
    store = PointStore(out / "points")
    prompt_lengths = _prompt_lengths(prompts_dir, lat["context"]["source"])
    forward, draft = sweep_forward(lat, store, prompt_lengths, run_dir)
    from moesd.models.loading import hf_config, parse_spec
    from moesd.stages import resolve_spec

    vocab = hf_config(parse_spec(resolve_spec(lat["models"][0]["spec"], run_dir)))["vocab_size"]
    reject = sweep_reject(lat, store, vocab, device_of(lat))
    summary_path = Path(args.acceptance) if args.acceptance else None
    summary = pd.read_csv(summary_path) if summary_path and summary_path.is_file() else None
    e2e = sweep_e2e(config, store, run_dir, prompts_dir, summary)
    tables = {
        "forward": long_table(forward),
        "draft": long_table(draft),
        "reject": long_table(reject),
        "e2e": long_table(e2e),
    }
    write_tables(out, tables)
    failed = sum((t["status"] != "ok").sum() for t in tables.values() if len(t))
    print(f"latency: {sum(len(t) for t in tables.values())} rows, {failed} failed rows -> {out}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("latency", help="T_T(B,s), T_D(B,1), T_reject(B) sweeps and end-to-end T_AR/T_SD")
    p.add_argument("--config", required=True, type=Path)
    p.add_argument("--run-dir", required=True, type=Path)
    p.add_argument("--prompts", required=True, type=Path, help="the prompts stage's folder")
    p.add_argument("--acceptance", type=Path, help="the acceptance stage's summary.csv (forced alpha)")
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=cmd_latency)
