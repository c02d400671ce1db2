"""End-to-end T_AR and T_SD of the latency stage (latency.e2e): every e2e pair, setting, batch
size and mode decoded whole, prefill included, by our engine (this module) and through vLLM, the
paper's engine (moesd.latency.e2e_vllm, `latency.e2e.backends`): the same prompts in the same
order, batch sizes and output length, one point per (pair, K, setting, B, mode) in the stage's
point store, one table with a `backend` column."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from moesd.config import ours_e2e_entries
from moesd.devices import timing_dtype
from moesd.latency.measure import compiles, device_of, e2e_point, e2e_points
from moesd.latency.store import Fingerprints, PointStore, measured_together, run_point
from moesd.models import checkpoint
from moesd.models.spec import parse_spec
from moesd.prompts import read_token_ids

# e2e keys that change no single measurement (prefill: our engine's alone, added to its keys below)
NOT_SETTINGS = ("pairs", "temperatures", "backends", "prefill")
MODES = ("ar", "sd")


def settings(e2e: dict) -> list[dict]:
    """One setting per temperature: the e2e section's shared keys with that temperature."""
    base = {key: value for key, value in e2e.items() if key not in NOT_SETTINGS}
    return [base | {"temperature": t} for t in e2e["temperatures"]]


def batches_of(prompts: list[list[int]], sequences: int, batch: int) -> list[list[list[int]]]:
    """The batches one point decodes: ceil(sequences / B) batches of B prompts (the prompt set
    cycled), so that every B decodes at least `sequences` prompts."""
    n_batches = -(-sequences // batch)
    order = [prompts[i % len(prompts)] for i in range(n_batches * batch)]
    return [order[j * batch : (j + 1) * batch] for j in range(n_batches)]


def native_k(hf_config: dict) -> int:
    """Experts per token of a Hugging Face config (1 for a dense model)."""
    return int(hf_config.get("num_experts_per_tok") or 1)


def describe(entry: dict, setting: dict, target: str, draft: str, **extra) -> dict:
    """The columns of an e2e row that name what was measured (the point's own results aside)."""
    return {
        "name": entry["name"],
        "target": target,
        "draft": draft,
        "dataset": setting["dataset"],
        "temperature": setting["temperature"],
        "gamma": setting["gamma"],
        "max_new_tokens": setting["max_new_tokens"],
        "batching": setting["batching"],
    } | extra


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


def _side_by_side(models, batches, pending: list[str], decoding: dict) -> dict:
    """Both modes of an e2e point pending, their repeats taking turns (moesd.latency.measure.
    e2e_points), mode -> its point; nothing where only one is pending or where the pair fails
    (a draft the target cannot verify, say): each mode is then measured alone and a failing one
    records its own error (run_point)."""
    if len(pending) < 2:
        return {}
    return measured_together(lambda: e2e_points(*models, batches, modes=tuple(pending), **decoding))


def sweep_e2e(config: dict, store: PointStore, run_dir: Path, prompts_dir: Path, summary, only=None) -> list:
    """Our engine's e2e points (nothing unless `ours` is among latency.e2e.backends); ONLY, a set
    of e2e pair names, keeps those (one slice each)."""
    from moesd.models.loading import load_model
    from moesd.prompts import random_prompts

    lat, e2e = config["latency"], config["latency"]["e2e"]
    if "ours" not in e2e["backends"]:
        return []
    device = device_of(lat)
    dtype = timing_dtype(lat["dtype"], device)
    graphs = lat["cuda_graphs"] and device.startswith("cuda")
    compiled = compiles(lat, "draft", device)
    pairs = {p["name"]: p for p in config["pairs"]}
    fingerprints, records = Fingerprints(), []
    models, loaded = None, None
    for entry in (e for e in ours_e2e_entries(config) if only is None or e["name"] in only):
        for setting in settings(e2e):
            target_spec, draft_spec, alpha, source, prompts = _e2e_pair(
                entry, setting, pairs, summary, run_dir, prompts_dir
            )
            k = native_k(checkpoint.hf_config(parse_spec(target_spec)))
            for batch in setting["batch_sizes"]:
                keys = {
                    mode: (
                        fingerprints[target_spec],
                        fingerprints[draft_spec],
                        mode,
                        batch,
                        setting,
                        alpha,
                        lat["threads"],
                        str(dtype),
                        lat["seed"],
                        device,
                        graphs,
                        *(("compiled",) if compiled else ()),
                        *(("prefill once",) if e2e["prefill"] == "once" else ()),
                    )
                    for mode in MODES
                }
                pending = [mode for mode in MODES if not store.ok("e2e", keys[mode])]
                if pending and loaded != (target_spec, draft_spec):
                    models = loaded = None  # free the previous pair: two 57B pairs do not fit one GPU
                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
                    models = tuple(
                        load_model(x, device=device, dtype=dtype, cuda_graphs=lat["cuda_graphs"], compile=c)
                        for x, c in ((target_spec, False), (draft_spec, compiled))
                    )
                    loaded = (target_spec, draft_spec)
                if prompts is None and loaded == (target_spec, draft_spec):  # synthetic: random ids
                    n_prompts = max(max(setting["batch_sizes"]), setting["sequences"])
                    prompts = random_prompts(n_prompts, setting["context_length"], models[0].cfg.vocab_size, 0)
                batches = batches_of(prompts, setting["sequences"], batch) if prompts else []
                decoding = {
                    "gamma": setting["gamma"],
                    "temperature": setting["temperature"],
                    "max_new_tokens": setting["max_new_tokens"],
                    "batching": setting["batching"],
                    "acceptance": "forced" if alpha is not None else "target",
                    "alpha": alpha,
                    "warmup": setting["warmup"],
                    "repeats": setting["repeats"],
                    "seed": lat["seed"],
                    "prefill": e2e["prefill"],
                }
                together = _side_by_side(models, batches, pending, decoding)
                for mode in MODES:
                    row = describe(
                        entry, setting, target_spec, draft_spec, B=batch, mode=mode, acceptance_source=source,
                        sequences=-(-setting["sequences"] // batch) * batch, dtype=str(dtype).removeprefix("torch."), device=device,
                        backend="ours", K=k, K_native=k, tensor_parallel_size=1,
                    )  # fmt: skip
                    measure = lambda m=mode, p=batches, pair=models, j=together, d=decoding: (  # noqa: E731
                        j.pop(m, None) or e2e_point(*pair, p, mode=m, **d)
                    )
                    records.append(run_point(store, "e2e", keys[mode], measure, row))
    return records
