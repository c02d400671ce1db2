"""The measuring stages fanned out: one cluster job per slice, each slice a part of a stage on one
platform, with its own resources, rerun alone when it fails (its finished neighbours kept).

- latency (our engine): one model at one K, T_reject, or one end-to-end pair, per platform;
- vLLM end to end: one pair at one K (a K sweep: one job per K), per platform;
- acceptance: our engine's, one job per pair (on the first platform whose one device holds it);
  vLLM's, one per platform and pair.

Slice ids are "<platform>/<part>" (our acceptance: "<pair>"), file-name safe in each part, so a
slice's folder is its id. `narrowed(config, stage, id)` is CONFIG cut down to one slice: what
the stage's command measures for it and what moesd.resources sizes its job by.
"""

from __future__ import annotations

import copy
import re

from moesd.config.errors import ConfigError
from moesd.config.platforms import (
    acceptance_vllm_platforms,
    e2e_platforms,
    holds,
    model_platforms,
    platform_names,
    platform_of,
    vllm_tensor_parallel,
    weight_bytes,
)
from moesd.config.queries import engine_pairs, ours_e2e_entries


def file_safe(name: str) -> str:
    """NAME with every run of characters a file or wildcard name should not hold replaced by _."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _k_part(name: str, k) -> str:
    return file_safe(name) + (f"-K{k}" if k is not None else "")


def latency_slices(config: dict) -> dict[str, dict]:
    """The latency stage's slices, in config order, on every platform: slice id
    "<platform>/<part>" -> {"platform": name, "local": part id, "part": ...}, the part one of
    {"part": "forward", "model": index in latency.models, "k": the K override or None} for every
    (model, K) of the sweep on each platform that times it; {"part": "reject"} for T_reject(B) on
    each of those platforms; {"part": "e2e", "entry": name} for each end-to-end pair our engine
    decodes there. Part ids: model-<name>[-K<k>], reject, e2e-<name>."""
    lat = config["latency"]
    parts = []
    for index, entry in enumerate(lat["models"]):
        for k in entry.get("k_values") or [None]:
            key = "model-" + _k_part(entry["name"], k)
            if key in {local for local, _, _ in parts}:
                raise ConfigError(
                    f"config error: latency.models.{index}.name: {entry['name']!r} repeats a model's slice {key}"
                )
            parts.append((key, {"part": "forward", "model": index, "k": k}, model_platforms(config, entry)))
    timed = {name for _, _, where in parts for name in where}  # T_reject composes with a target timed there
    parts.append(("reject", {"part": "reject"}, [name for name in platform_names(config) if name in timed]))
    for entry in ours_e2e_entries(config):
        where = e2e_platforms(config, entry, "ours")
        parts.append((f"e2e-{file_safe(entry['name'])}", {"part": "e2e", "entry": entry["name"]}, where))
    return _per_platform(config, parts)


def e2e_vllm_slices(config: dict) -> dict[str, dict]:
    """vLLM's end-to-end slices: "<platform>/<entry>[-K<k>]" -> {"platform", "local", "entry",
    "k"} for every real-acceptance e2e pair, each K of its sweep, on each of its platforms; none
    unless vllm is among latency.e2e.backends."""
    e2e = config["latency"]["e2e"]
    if "vllm" not in e2e["backends"]:
        return {}
    parts = [
        (_k_part(entry["name"], k), {"entry": entry["name"], "k": k}, e2e_platforms(config, entry, "vllm"))
        for entry in e2e["pairs"]
        if entry["acceptance"] == "real"
        for k in entry.get("k_values") or [None]
    ]
    return _per_platform(config, parts)


def acceptance_slices(config: dict) -> dict[str, dict]:
    """Our engine's acceptance, one job per pair: pair name -> {"pair", "platform"}, the platform the
    first in config order whose one device holds target and draft (validation refuses a pair none
    holds). EAGLE pairs are vLLM's only."""
    slices = {}
    for pair in engine_pairs(config):
        fits = [
            p["name"] for p in config["platforms"] if holds(p, [pair["target"], pair["draft"]], weight_bytes(config))[0]
        ]
        if not fits:
            raise ConfigError(
                f"config error: pairs.{config['pairs'].index(pair)}: {pair['name']!r} does not fit one device of any "
                "platform, and our engine measures acceptance on one device (add a platform that holds it)"
            )
        slices[file_safe(pair["name"])] = {"pair": pair["name"], "platform": fits[0], "local": file_safe(pair["name"])}
    return slices


def routing_platform(config: dict) -> str | None:
    """The platform of the routing job (one job, our engine, one model at a time): the first whose
    one device holds the largest model it loads (the pairs' targets, routing.hf_models); None where
    there is no pair. A ConfigError where none holds it."""
    specs = [p["target"] for p in config["pairs"]] + list(config["routing"]["hf_models"])
    if not config["pairs"]:
        return None
    for platform in config["platforms"]:
        if all(holds(platform, [spec], weight_bytes(config))[0] for spec in specs):
            return platform["name"]
    raise ConfigError(
        "config error: routing.hf_models: no platform's one device holds every model the routing job loads "
        "(the pairs' targets and routing.hf_models; add a platform that does)"
    )


def acceptance_vllm_slices(config: dict) -> dict[str, dict]:
    """vLLM's acceptance, one job per platform and pair: "<platform>/<pair>" -> {"platform",
    "local", "pair"}, on its platforms (acceptance_vllm_platforms); none unless acceptance.vllm."""
    parts = [
        (file_safe(pair["name"]), {"pair": pair["name"]}, acceptance_vllm_platforms(config, pair))
        for pair in config["pairs"]
    ]
    return _per_platform(config, parts)


def _per_platform(config: dict, parts: list[tuple[str, dict, list[str]]]) -> dict[str, dict]:
    """Slice id "<platform>/<local>" -> {"platform", "local", **part} for every part on each of its
    platforms, platforms in config order."""
    return {
        f"{platform}/{local}": {"platform": platform, "local": local} | part
        for platform in platform_names(config)
        for local, part, where in parts
        if platform in where
    }


STAGE_SLICES = {
    "latency": latency_slices,
    "e2e_vllm": e2e_vllm_slices,
    "acceptance": acceptance_slices,
    "acceptance_vllm": acceptance_vllm_slices,
}


def narrowed(config: dict, stage: str, slice_id: str) -> tuple[dict, dict]:
    """CONFIG cut down to slice SLICE_ID of STAGE (a copy), and the slice: the stage's command
    measures the narrowed config's whole grid. A vLLM slice's pair carries its platform's
    tensor-parallel size."""
    slices = STAGE_SLICES[stage](config)
    if slice_id not in slices:
        raise ValueError(f"--slice {slice_id}: not a {stage} slice of this config ({', '.join(slices) or 'none'})")
    part = slices[slice_id]
    narrow = copy.deepcopy(config)
    platform = platform_of(config, part["platform"])
    if stage in ("acceptance", "acceptance_vllm"):
        narrow["pairs"] = [p for p in narrow["pairs"] if p["name"] == part["pair"]]
    if stage == "e2e_vllm":
        e2e = narrow["latency"]["e2e"]
        e2e["pairs"] = [
            dict(e, k_values=[part["k"]]) if part["k"] is not None else e
            for e in e2e["pairs"]
            if e["name"] == part["entry"]
        ]
        e2e["backends"] = ["vllm"]
        narrow["pairs"] = [p for p in narrow["pairs"] if p["name"] == e2e["pairs"][0]["pair"]]
    if stage in ("e2e_vllm", "acceptance_vllm"):
        for pair in narrow["pairs"]:
            pair["tensor_parallel_size"] = vllm_tensor_parallel(pair, platform)
    if stage == "latency":
        lat = narrow["latency"]
        lat["e2e"]["pairs"] = [e for e in lat["e2e"]["pairs"] if e["name"] == part.get("entry")]  # one pair's slice
        if part["part"] != "e2e":
            lat["e2e"]["backends"] = [b for b in lat["e2e"]["backends"] if b != "ours"]
        if part["part"] != "reject":
            lat["reject_temperatures"] = []
        lat["models"] = []
        if part["part"] == "forward":
            k = part["k"]
            lat["models"] = [dict(config["latency"]["models"][part["model"]], k_values=[k] if k else None)]
    narrow["platforms"] = [platform]
    return narrow, part
