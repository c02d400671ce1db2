"""Questions asked of a validated config by the workflow and the stages: which pairs our engine
decodes, the sigma pair, each target's draft, the prompt sets to encode, the compared runs, the
lock file, a part of the config for one stage.
"""

from __future__ import annotations

import json
from pathlib import Path

from moesd.config.errors import ConfigError
from moesd.models.spec import ModelSpecError, parse_spec


def declared_drafts(models: list[dict]) -> dict[str, str]:
    """latency.models: each target's name -> the name of the draft it is composed with (its
    `draft` key; the one draft where the config times one)."""
    drafts = [entry["name"] for entry in models if entry["role"] == "draft"]
    pairing = {}
    for i, entry in enumerate(models):
        key = f"config error: latency.models.{i}.draft"
        if entry["role"] == "draft":
            if "draft" in entry:
                raise ConfigError(f"{key}: a draft entry takes no draft")
            continue
        name = entry.get("draft", drafts[0] if len(drafts) == 1 else None)
        if name is None:
            raise ConfigError(f"{key}: required: the config times {len(drafts)} drafts ({', '.join(drafts) or 'none'})")
        if name not in drafts:
            raise ConfigError(f"{key}: {name!r} is not the name of a draft entry ({', '.join(drafts)})")
        pairing[entry["name"]] = name
    return pairing


def spec_kind(text: str, key: str) -> str:
    """The kind of model spec TEXT (hf, dir, arch, trained), or a ConfigError naming KEY; an arch:
    spec's config is built too (no weights), so a shape no model can have (top-k above the
    experts, heads not dividing the width) stops here, before any job."""
    try:
        spec = parse_spec(text)
        if spec.kind == "arch":  # a shape no model can have
            spec.architecture_config()
        elif spec.kind == "dir":  # a folder with no model, or a config that is no JSON
            json.loads((spec.local_folder() / "config.json").read_text())
        return spec.kind
    except ModelSpecError as error:
        raise ConfigError(f"config error: {key}: {error}") from None


def uses_trained_pair(config: dict) -> bool:
    """Whether a pair names the models stage's trained: target or draft (then the run trains them)."""
    pairs = config["pairs"]
    return any(spec_kind(p[r], f"pairs.{i}.{r}") == "trained" for i, p in enumerate(pairs) for r in ("target", "draft"))


def compare_tables(config: dict) -> list[Path]:
    """The composed speedups of analysis.compare_runs (relative to the working directory)."""
    return [Path("data/runs") / name / "speedup/composed.csv" for name in config["analysis"]["compare_runs"]]


def lock_path(config: dict) -> Path:
    """download.lock: the lock file of resolved hub commits (auto: config/<experiment>.lock.json)."""
    lock = config["download"]["lock"]
    return Path(f"config/{config['experiment']}.lock.json" if lock == "auto" else lock)


def prompt_sources(config: dict) -> list[str]:
    """The prompt sets the prompts stage encodes for every pair: the acceptance and routing sets,
    the latency stage's context lengths (unless fixed) and the latency forwards' token ids."""
    context = config["latency"]["context"]  # validated: defaults filled
    lengths = [context["source"]] if context["source"] != "fixed" else []
    ids = [context["ids_dataset"]] if context["ids"] != "random" else []
    return list(dict.fromkeys(config["acceptance"]["datasets"] + config["routing"]["datasets"] + lengths + ids))


# Each stage's part of the validated config (config_part's keys), which its rules hand their
# commands as JSON: a stage's jobs rerun only when their part changes. Every part of every
# shipped config validates on its own (tests/test_config.py): a command validates what it reads.
# PAIRS_SECTIONS: the pairs and what validating them reads, the platforms and the device and dtype
# that size a model on one device (a part without them sized Qwen2-57B at fp32 on the login node).
PAIRS_SECTIONS = ["platforms", "pairs", "latency.device", "latency.dtype"]
STAGE_SECTIONS = {
    "theory": ["theory", "prediction", "fit"],
    "simulation": ["simulation", "fit"],
    "models": ["models", *PAIRS_SECTIONS, "acceptance"],  # acceptance: its prompt sets are checked before training
    "prompts": [*PAIRS_SECTIONS, "acceptance", "routing", "latency.context"],
    "acceptance": [*PAIRS_SECTIONS, "acceptance", "vllm"],  # platforms: vLLM's tensor-parallel size on each
    # routing: what makes an EAGLE pair valid (vLLM decodes it somewhere) travels with the pairs
    "routing": [*PAIRS_SECTIONS, "routing", "acceptance.vllm", "latency.e2e.backends"],
    "latency": ["platforms", "pairs", "latency", "vllm"],
    # latency: the declared target/draft pairs; acceptance: the settings the acceptance summary must hold
    "analysis": ["platforms", "pairs", "latency", "acceptance", "analysis", "fit"],
}


def config_part(config: dict, keys: list[str]) -> dict:
    """The part of CONFIG under KEYS, each a section ("pairs") or a dotted path into one
    ("latency.context"), nested as in the config."""
    part: dict = {}
    for key in keys:
        *parents, leaf = key.split(".")
        source, target = config, part
        for name in parents:
            source, target = source[name], target.setdefault(name, {})
        target[leaf] = source[leaf]
    return part


def engine_pairs(config: dict) -> list[dict]:
    """The pairs our engine decodes: a draft model's (an EAGLE head's pair runs through vLLM only)."""
    return [pair for pair in config["pairs"] if pair["speculative_method"] == "draft_model"]


def sigma_pair(config: dict) -> dict | None:
    """The pair whose measured sigma composes the run's speedups (None: the paper's Table 2)."""
    name = config["analysis"]["sigma_pair"]
    pairs = engine_pairs(config)
    if name is None:
        return pairs[0] if pairs else None
    return next(p for p in pairs if p["name"] == name)


def ours_e2e_entries(config: dict) -> list[dict]:
    """The latency.e2e.pairs our engine decodes: forced ones, and real ones of a draft-model pair
    (an EAGLE head's pair, and a checkpoint's K sweep through hf_overrides, are vLLM's only); none
    unless `ours` is among latency.e2e.backends."""
    e2e = config["latency"]["e2e"]
    if "ours" not in e2e["backends"]:
        return []
    ours = {pair["name"] for pair in engine_pairs(config)}
    real = [entry for entry in e2e["pairs"] if entry["acceptance"] == "real" and not entry.get("k_values")]
    return [
        entry for entry in e2e["pairs"] if entry["acceptance"] == "forced" or entry in real and entry["pair"] in ours
    ]


def common_rounds(lat: dict, device: str) -> bool:
    """Whether a model's batch sizes take turns in common rounds (latency.rounds.interleave:
    batch_sizes, or auto on a CPU, whose shared cores have slow spells that rounds of one batch
    size fall into whole; a GPU's memory holds one batch size's cache of a real model at a time)."""
    interleave = lat["rounds"]["interleave"]
    return interleave == "batch_sizes" or interleave == "auto" and not str(device).startswith("cuda")
