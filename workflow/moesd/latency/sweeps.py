"""The latency stage's sweeps: every model (and K of the sparsity sweep) at every batch size
timing T_T(B, s) and T_D(B, 1), T_reject(B) per temperature, and the end-to-end AR and SD runs
per pair, setting and batch size; each point stored once (moesd.latency.points.PointStore)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from moesd.latency.points import (
    PointStore,
    context_lengths,
    e2e_point,
    forward_point,
    long_table,
    per_s_records,
    reject_point,
    run_point,
)
from moesd.models.loading import timing_dtype
from moesd.models.spec import parse_spec
from moesd.prompts import dataset_name, read_token_ids


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


def token_source(entry: dict, context: dict, pairs: list[dict], prompts_dir: Path) -> tuple[str, list | None]:
    """Where a latency model's timed token ids come from (latency.context.ids): ("random", None)
    or ("<pair>/<dataset>", that pair's encoded prompts, in the tokenizer of the pair holding the
    model's spec)."""
    mode = context["ids"]
    if mode == "random" or (mode == "auto" and parse_spec(entry["spec"]).kind == "arch"):
        return "random", None
    pair = next((p for p in pairs if entry["spec"] in (p["target"], p["draft"])), None)
    path = prompts_dir / pair["name"] / f"{dataset_name(context['ids_dataset'])}.jsonl" if pair else None
    if path is None or not path.is_file():
        if mode == "prompts":
            where = f"no prompt file {path}" if pair else "the model is in no pair of `pairs`"
            raise ValueError(f"latency.context.ids: prompts for latency model {entry['name']!r}, but {where}")
        return "random", None
    return f"{pair['name']}/{dataset_name(context['ids_dataset'])}", read_token_ids(path)


def sweep_forward(
    lat: dict, store: PointStore, prompt_lengths, run_dir: Path, pairs: list[dict], prompts_dir: Path
) -> tuple[list, list]:
    """Every model (and K) at every batch size: one point per (model, B) timing all its s."""
    from moesd.models.loading import load_model

    forward, draft = [], []
    device = device_of(lat)
    dtype = timing_dtype(lat["dtype"], device)
    jobs = [(i, m, k) for i, m in enumerate(lat["models"]) for k in (m.get("k_values") or [None])]
    sources = [token_source(entry, lat["context"], pairs, prompts_dir) for entry in lat["models"]]  # read once
    for i, entry, k in tqdm(jobs, desc="latency models", ascii=True, mininterval=5):
        spec = parse_spec(entry["spec"]).resolve(run_dir).with_k(k).text
        ids, prompts = sources[i]
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
                device,
                lat["cuda_graphs"] and device.startswith("cuda"),
                ids,
            )
            if model is None and not store.has("forward", key):
                model = load_model(spec, device=device, dtype=dtype, cuda_graphs=lat["cuda_graphs"])
            describe = {"B": batch, "context_len": float(sum(contexts) / batch), "token_ids": ids}
            if model is not None:
                describe |= _describe(model, spec, entry["name"], entry["role"], k)
            record = run_point(
                store,
                "forward",
                key,
                lambda b=batch, c=contexts, m=model, t=tokens, p=prompts: forward_point(
                    m, b, t, c, lat["warmup"], lat["repeats"], seed=b, prompts=p
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
    """The alpha that realises the sigma the acceptance stage measured for PAIR at the e2e setting
    (dataset, temperature, gamma): Eq. 5 inverted (`alpha_eq5`), so that forcing each draft token
    with it gives the measured tokens per round. The maximum-likelihood alpha does not: with
    per-position rates 0.95, 0.6, 0.6, 0.6 the measured sigma is 0.614 and forcing the MLE gives 0.579."""
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
    return float(rows["alpha_eq5"].iloc[0])


def _e2e_pair(entry: dict, setting: dict, pairs: dict, summary, run_dir: Path, prompts_dir: Path):
    """(target spec, draft spec, forced alpha or None, acceptance label, prompts or None)."""
    if entry["acceptance"] == "real":
        pair = pairs[entry["pair"]]
        prompts = read_token_ids(prompts_dir / pair["name"] / f"{setting['dataset']}.jsonl")
        target, draft = (parse_spec(pair[role]).resolve(run_dir).text for role in ("target", "draft"))
        return target, draft, None, "real", prompts
    if "alpha" in entry:
        alpha, note = entry["alpha"], entry.get("alpha_note", "given in the config")
    else:
        alpha = forced_alpha(summary, pairs[entry["alpha_from"]], setting)
        note = (
            f"Eq. 5 of the measured sigma: {entry['alpha_from']}, {setting['dataset']}, "
            f"T={setting['temperature']}, gamma={setting['gamma']}"
        )
    return entry["target"], entry["draft"], alpha, f"forced alpha={alpha:.4f} ({note})", None


def sweep_e2e(config: dict, store: PointStore, run_dir: Path, prompts_dir: Path, summary) -> list:
    from moesd.models.loading import load_model
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
                    config["latency"]["seed"],
                    device,
                    config["latency"]["cuda_graphs"] and device.startswith("cuda"),
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


def prompt_lengths(prompts_dir: Path, dataset: str) -> list[int]:
    """Token counts of DATASET's encoded prompts (the first pair's file), the context lengths the
    forward sweep draws from; none when the run has no encoded prompts."""
    files = sorted(prompts_dir.glob(f"*/{dataset}.jsonl"))
    return [len(ids) for ids in read_token_ids(files[0])] if files else []


def run_sweeps(config: dict, run_dir: Path, prompts_dir: Path, summary: pd.DataFrame | None, store: PointStore) -> dict:
    """Every sweep of the latency section: tables forward, draft, reject and e2e (long format)."""
    lat = config["latency"]
    lengths = prompt_lengths(prompts_dir, lat["context"]["source"])
    forward, draft = sweep_forward(lat, store, lengths, run_dir, config["pairs"], prompts_dir)
    vocab = parse_spec(lat["models"][0]["spec"]).resolve(run_dir).hf_config()["vocab_size"]
    reject = sweep_reject(lat, store, vocab, device_of(lat))
    e2e = sweep_e2e(config, store, run_dir, prompts_dir, summary)
    return {
        "forward": long_table(forward),
        "draft": long_table(draft),
        "reject": long_table(reject),
        "e2e": long_table(e2e),
    }
