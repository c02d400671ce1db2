"""The latency stage's sweeps: every model (and K of the sparsity sweep) at every batch size
timing T_T(B, s) and T_D(B, 1), T_reject(B) per temperature, and the end-to-end AR and SD runs
per pair, setting and batch size (moesd.latency.e2e); each point stored once
(moesd.latency.store.PointStore)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from moesd.config import common_rounds, latency_slices
from moesd.devices import timing_dtype
from moesd.latency.e2e import sweep_e2e
from moesd.latency.measure import (
    compiles,
    context_lengths,
    device_of,
    forward_point,
    forward_points,
    per_s_records,
    reject_point,
    round_protocol,
)
from moesd.latency.store import Fingerprints, PointStore, measured_together, run_point
from moesd.latency.tables import long_table
from moesd.models import checkpoint
from moesd.models.spec import parse_spec
from moesd.prompt_sets import dataset_name
from moesd.prompts import read_token_ids


def _describe(model, spec, name, role, k) -> dict:
    return {
        "model": name,
        "spec": spec,
        "role": role,
        "K": model.cfg.top_k if model.cfg.is_moe else 1,
        "E": model.cfg.num_experts if model.cfg.is_moe else 1,
        "expert_impl": model.expert_impl,
        "attention_impl": model.attention_impl,
        "linear_impl": model.linear_impl,
        "dtype": str(model.dtype).removeprefix("torch."),
        "device": str(model.device),
        "threads": torch.get_num_threads(),
        "cuda_graphs": bool(model.cuda_graphs and model.device.type == "cuda"),
        "compiled": bool(model.compiled),
        "k_override": k,
    }


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


def interleaved_points(model, pending: dict, tokens: list[int], lat: dict, device: str, protocol, prompts) -> dict:
    """The PENDING batch sizes of one model (B -> contexts) timed in common rounds
    (latency.rounds.interleave, moesd.config.common_rounds; moesd.latency.measure.forward_points),
    B -> its point; nothing when they are timed one batch size at a time (interleave tokens, a
    GPU under auto, or a single B). Where the common rounds fail (one batch size out of memory,
    say), nothing either: each point is then measured alone, and a failing one records its own
    error (run_point)."""
    if not common_rounds(lat, device) or len(pending) < 2:
        return {}
    return measured_together(lambda: forward_points(model, pending, tokens, lat["warmup"], protocol, prompts))


def sweep_forward(
    lat: dict, store: PointStore, prompt_lengths, run_dir: Path, pairs: list[dict], prompts_dir: Path, only=None
) -> tuple[list, list]:
    """Every model (and K) at every batch size: one point per (model, B) timing all its s; ONLY,
    a set of (model index, K), keeps those (one slice of the stage)."""
    from moesd.models.loading import load_model

    forward, draft = [], []
    device = device_of(lat)
    dtype = timing_dtype(lat["dtype"], device)
    jobs = [(i, m, k) for i, m in enumerate(lat["models"]) for k in (m.get("k_values") or [None])]
    jobs = [(i, m, k) for i, m, k in jobs if only is None or (i, k) in only]
    sources = [token_source(entry, lat["context"], pairs, prompts_dir) for entry in lat["models"]]  # read once
    fingerprints = Fingerprints()
    protocol = round_protocol(lat)
    for i, entry, k in tqdm(jobs, desc="latency models", ascii=True, mininterval=5):
        spec = parse_spec(entry["spec"]).resolve(run_dir).with_k(k).text
        ids, prompts = sources[i]
        model = None
        compiled = compiles(lat, entry["role"], device)
        tokens = [1] if entry["role"] == "draft" else entry.get("tokens") or list(range(1, lat["gamma_max"] + 2))
        points = []
        for batch in entry.get("batch_sizes") or lat["batch_sizes"]:
            contexts = context_lengths(batch, lat["context"], prompt_lengths, seed=batch)
            key = (
                fingerprints[spec],
                batch,
                tokens,
                contexts,
                lat["warmup"],
                protocol,
                common_rounds(lat, device),
                lat["threads"],
                str(dtype),
                device,
                lat["cuda_graphs"] and device.startswith("cuda"),
                ids,
                *(("compiled",) if compiled else ()),
            )
            points.append((batch, contexts, key))
        pending = {batch: contexts for batch, contexts, key in points if not store.ok("forward", key)}
        if pending:
            model = load_model(spec, device=device, dtype=dtype, cuda_graphs=lat["cuda_graphs"], compile=compiled)
        together = interleaved_points(model, pending, tokens, lat, device, protocol, prompts)
        for batch, contexts, key in points:
            describe = {"B": batch, "context_len": float(sum(contexts) / batch), "token_ids": ids}
            if model is not None:
                describe |= _describe(model, spec, entry["name"], entry["role"], k)
            record = run_point(
                store,
                "forward",
                key,
                lambda b=batch, c=contexts, m=model, t=tokens, p=prompts, j=together: (
                    j.pop(b, None) or forward_point(m, b, t, c, lat["warmup"], protocol, seed=b, prompts=p)
                ),
                describe,
            )
            (draft if entry["role"] == "draft" else forward).extend(per_s_records(record, tokens))
    return forward, draft


def sweep_reject(lat: dict, store: PointStore, vocab: int, device) -> list:
    records, protocol = [], round_protocol(lat)
    for temperature in lat["reject_temperatures"]:
        for batch in lat["batch_sizes"]:
            key = (batch, lat["gamma_max"], vocab, temperature, lat["warmup"], protocol, str(device))
            describe = {
                "B": batch,
                "gamma": lat["gamma_max"],
                "vocab": vocab,
                "temperature": temperature,
                "device": str(device),
            }
            measure = lambda b=batch, t=temperature: reject_point(  # noqa: E731
                b, lat["gamma_max"], vocab, t, device, lat["warmup"], protocol, seed=b
            )
            records.append(run_point(store, "reject", key, measure, describe))
    return records


def prompt_lengths(prompts_dir: Path, dataset: str) -> list[int]:
    """Token counts of DATASET's encoded prompts (the first pair's file), the context lengths the
    forward sweep draws from; none when the run has no encoded prompts."""
    files = sorted(prompts_dir.glob(f"*/{dataset}.jsonl"))
    return [len(ids) for ids in read_token_ids(files[0])] if files else []


def run_sweeps(
    config: dict,
    run_dir: Path,
    prompts_dir: Path,
    summary: pd.DataFrame | None,
    store: PointStore,
    slice_id: str | None = None,
) -> dict:
    """The sweeps of the latency section: tables forward, draft, reject and e2e (long format);
    all of them, or one slice's (moesd.config.latency_slices: one model at one K, the rejection
    rule, or the end-to-end points), the other tables then empty."""
    lat = config["latency"]
    part = latency_slices(config)[slice_id] if slice_id is not None else None
    forward, draft, reject, e2e = [], [], [], []
    if part is None or part["part"] == "forward":
        only = {(part["model"], part["k"])} if part else None
        lengths = prompt_lengths(prompts_dir, lat["context"]["source"])
        forward, draft = sweep_forward(lat, store, lengths, run_dir, config["pairs"], prompts_dir, only)
    if part is None or part["part"] == "reject":
        vocab = checkpoint.hf_config(parse_spec(lat["models"][0]["spec"]).resolve(run_dir))["vocab_size"]
        reject = sweep_reject(lat, store, vocab, device_of(lat))
    if part is None or part["part"] == "e2e":
        e2e = sweep_e2e(config, store, run_dir, prompts_dir, summary, {part["entry"]} if part else None)
    return {
        "forward": long_table(forward),
        "draft": long_table(draft),
        "reject": long_table(reject),
        "e2e": long_table(e2e),
    }
