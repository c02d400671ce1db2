"""End-to-end T_AR and T_SD through vLLM, the paper's engine (`latency.e2e.backends: [..., vllm]`):
the e2e pairs whose acceptance is real (vLLM decodes with the target's own rule; it cannot force
an alpha), each setting, batch size and mode, on the same prompts in the same order as our
engine's (moesd.latency.e2e), in the e2e table's schema with backend vllm.

One vLLM engine per pair, K and mode, built for the largest batch size; each batch size B and
temperature is a pass of it whose scheduler admits at most B sequences at a time and refills a
finished slot from the waiting prompts (continuous batching, vLLM's own; the worker records the
most sequences it ran at once, `peak_running`). A pair's K sweep (`k_values`) overrides the
target's num_experts_per_tok through vLLM's hf_overrides, as the paper edited config.json
(Sec. 4.3). Each timed repeat decodes the point's prompts, then the same prompts for one new
token (`prefill_seconds`, the prefill's share). One point per (pair, K, mode, B, temperature) in
the latency stage's point store; a failed engine records its root error at every point it would
have measured, and the next run measures them again.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np

from moesd.devices import timing_dtype
from moesd.latency.e2e import batches_of, describe, native_k, settings
from moesd.latency.measure import device_of
from moesd.latency.store import Fingerprints, PointStore, run_point
from moesd.models import checkpoint
from moesd.models.spec import parse_spec
from moesd.prompts import read_token_ids


def vllm_pairs(config: dict, run_dir: Path) -> list[tuple[dict, dict, dict]]:
    """(e2e entry, pair, {role: checkpoint folder}) of every real-acceptance e2e pair; a pair vLLM
    cannot load (an arch: spec has no files), or a K sweep beyond the target's experts, is a
    one-line error."""
    from moesd.architectures import expert_count
    from moesd.backends.vllm import VllmError, hf_config

    pairs = {p["name"]: p for p in config["pairs"]}
    out = []
    for i, entry in enumerate(config["latency"]["e2e"]["pairs"]):
        if entry["acceptance"] != "real":
            continue
        pair = pairs[entry["pair"]]
        folders = {role: checkpoint.folder(parse_spec(pair[role]).resolve(run_dir)) for role in ("target", "draft")}
        for role, folder in folders.items():
            if folder is None:
                raise VllmError(f"latency.e2e.pairs.{i}: vLLM loads checkpoint folders; {role} is {pair[role]}")
        experts = expert_count(hf_config(folders["target"], "target"))
        for k in entry.get("k_values") or []:
            if not experts or k > experts:
                what = f"{experts} experts" if experts else "a dense model"
                raise VllmError(f"latency.e2e.pairs.{i}.k_values: K={k}, but the target {pair['target']} has {what}")
        out.append((entry, pair, folders))
    return out


def _record(result, mode: str) -> dict:
    """A vLLM pass as an e2e point's results (the columns our engine's points have)."""
    sigma = result.acceptance()["sigma"] if mode == "sd" else np.nan
    return {
        "seconds": result.seconds,
        "prefill_seconds": result.prefill_seconds,
        "tokens": sum(len(ids) for ids in result.outputs),
        "sigma": sigma,
        "peak_running": result.peak_running,
        "expert_impl": "vllm",
        "distinct_experts": [],
    }


class Point(NamedTuple):
    key: tuple  # the point store's key parts
    spec: dict  # the worker's pass: prompts, temperature, seed, max_new_tokens, slots, prefill
    row: dict  # the e2e row's describing columns
    setting: dict


def _points(entry: dict, models: tuple[str, str], prompts: list, config: dict, mode: str, k, fingerprints) -> list:
    """The points of one engine (pair, K, mode): every setting (temperature) and batch size."""
    lat, e2e = config["latency"], config["latency"]["e2e"]
    device = device_of(lat)
    dtype = str(timing_dtype(lat["dtype"], device)).removeprefix("torch.")
    pair = next(p for p in config["pairs"] if p["name"] == entry["pair"])
    tp, method, sampling = pair["tensor_parallel_size"], pair["speculative_method"], pair["draft_sampling"]
    target, draft = models
    native = native_k(checkpoint.hf_config(parse_spec(target)))
    points = []
    for setting in settings(e2e):
        for batch in setting["batch_sizes"]:
            key = (
                "vllm", fingerprints[target], fingerprints[draft], mode, batch, setting, k, tp, method, sampling,
                dtype, lat["seed"], device,
            )  # fmt: skip
            flat = [ids for b in batches_of(prompts, setting["sequences"], batch) for ids in b]
            spec = {
                "prompts": flat,
                "temperature": setting["temperature"],
                "seed": lat["seed"],
                "max_new_tokens": setting["max_new_tokens"],
                "slots": batch,
                "prefill": True,
            }
            row = describe(
                entry, setting, target, draft, B=batch, mode=mode, acceptance_source="real", sequences=len(flat),
                dtype=dtype, device=device, backend="vllm", K=k or native, K_native=native, tensor_parallel_size=tp,
                batching="continuous",  # vLLM's scheduler refills slots whatever latency.e2e.batching says
            )  # fmt: skip
            points.append(Point(key, spec, row, setting))
    return points


def _measure(points: list[Point], folders: dict, pair: dict, mode: str, k, config: dict) -> list:
    """One engine decoding every point's pass; per point its results, or the engine's error."""
    from moesd.backends.vllm import VllmRequest, run_passes

    setting = points[0].setting  # the points differ in temperature and B only
    request = VllmRequest(
        target=folders["target"],
        draft=folders["draft"],
        prompts=points[0].spec["prompts"],
        mode=mode,
        method=pair["speculative_method"],
        draft_sampling=pair["draft_sampling"],
        gamma=setting["gamma"],
        tensor_parallel_size=pair["tensor_parallel_size"],
        dtype=points[0].row["dtype"],
        batch_size=max(p.spec["slots"] for p in points),
        max_new_tokens=setting["max_new_tokens"],
        device=points[0].row["device"],
        warmup=setting["warmup"],
        repeats=setting["repeats"],
        seed=config["latency"]["seed"],
        hf_overrides={"num_experts_per_tok": k} if k is not None else {},
        enforce_eager=config["vllm"]["enforce_eager"],
        in_process=config["vllm"]["in_process"],
    )
    try:
        results = run_passes(request, [p.spec for p in points])
    except (RuntimeError, ValueError) as error:
        return [error] * len(points)
    return [_record(result, mode) for result in results]


def _outcome(found):
    if isinstance(found, Exception):
        raise found
    return found


def sweep_e2e_vllm(config: dict, store: PointStore, run_dir: Path, prompts_dir: Path, log=print) -> list[dict]:
    """vLLM's e2e points (see the module's docstring): the stored ones read, the missing and
    failed ones measured, one engine start per pair, K and mode that has any."""
    fingerprints, records = Fingerprints(), []
    for entry, pair, folders in vllm_pairs(config, run_dir):
        models = tuple(parse_spec(pair[role]).resolve(run_dir).text for role in ("target", "draft"))
        prompts = read_token_ids(prompts_dir / pair["name"] / f"{config['latency']['e2e']['dataset']}.jsonl")
        for k in entry.get("k_values") or [None]:
            for mode in ("ar", "sd"):
                points = _points(entry, models, prompts, config, mode, k, fingerprints)
                missing = [p for p in points if not store.ok("e2e", p.key)]
                outcomes = {}
                if missing:
                    measured = _measure(missing, folders, pair, mode, k, config)
                    outcomes = dict(zip(map(id, missing), measured, strict=True))
                    failed = sum(isinstance(o, Exception) for o in measured)
                    log(f"vLLM {entry['name']} K={k or 'native'} {mode}: {len(missing)} points, {failed} failed")
                for point in points:
                    measure = partial(_outcome, outcomes.get(id(point)))
                    records.append(run_point(store, "e2e", point.key, measure, point.row))
    return records
