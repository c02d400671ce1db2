"""The memory a job needs beyond its weights (an estimate from the known architectures): the KV
cache of the tokens it holds and the logits and activations of the tokens one forward computes.
The config's checks read it for one GPU (moesd.config.platforms), moesd.resources for a CPU job's
host memory. Nothing here imports torch.
"""

from __future__ import annotations

from moesd.config.queries import common_rounds
from moesd.models.spec import parse_spec

PROMPT_TOKENS = 1024  # a long HumanEval or MT-bench prompt with its chat template


def longest_context(context: dict) -> int:
    """The longest context a latency.context section times: its fixed length, else the cap of the
    drawn lengths (max_length caps every length; validation holds a fixed one within it)."""
    return context["length"] if context["source"] == "fixed" else context["max_length"]


def _token_bytes(spec_text: str, bytes_per_value: int) -> tuple[float, float]:
    """(a cached token's KV bytes, a computed token's fp32 logits and activations: a few hidden
    widths and the MLP's) of SPEC_TEXT, from its known config; zeros where unknown."""
    from moesd.models.spec import ModelSpecError

    try:
        config = parse_spec(spec_text).known_config()
    except (ModelSpecError, ValueError, KeyError, OSError):
        config = None
    if not config:
        return 0.0, 0.0
    heads = config.get("num_attention_heads") or 1
    hidden = config.get("hidden_size") or 0
    head_dim = config.get("head_dim") or hidden // heads
    kv = 2 * config.get("num_hidden_layers", 0) * (config.get("num_key_value_heads") or heads) * head_dim
    width = max(config.get("intermediate_size") or 0, config.get("ffn_dim") or 0, 4 * hidden)
    return kv * bytes_per_value, (8 * hidden + 2 * width) * bytes_per_value + 4 * config.get("vocab_size", 0)


def working_gb(config: dict, stage: str, specs: list[str], bytes_per_value: float, part: str | None = None) -> float:
    """Memory beyond the weights a job of STAGE needs at its largest batch: the KV cache of the
    tokens it holds and the logits and activations of the tokens one forward computes (a
    prefill's whole prompt), for the largest of SPECS (an estimate, like the rest). The latency
    stage's PART: "timing" (the component grid) or "e2e" (our engine's end-to-end grid); None both.
    On a CPU it is host memory (job_resources); on a GPU, the device's (moesd.config.platforms)."""
    lat, acc = config["latency"], config["acceptance"]
    if stage == "latency":
        e2e, batch = lat["e2e"], max(lat["batch_sizes"])
        grids = []
        if part in (None, "timing"):
            # common rounds (latency.rounds.interleave) hold every batch size's cache at once
            held = sum(lat["batch_sizes"]) if common_rounds(lat, lat["device"]) else batch
            grids.append(
                (held * (longest_context(lat["context"]) + lat["gamma_max"] + 1), batch * (lat["gamma_max"] + 1))
            )
        if e2e["pairs"] and part in (None, "e2e"):
            batch = max(e2e["batch_sizes"])
            held = e2e["context_length"] + e2e["max_new_tokens"] + e2e["gamma"] + 1
            grids.append((batch * held, batch * e2e["context_length"]))
    elif stage in ("acceptance", "acceptance_vllm"):
        held = PROMPT_TOKENS + acc["max_new_tokens"] + max(acc["gammas"]) + 1
        grids = [(acc["batch_size"] * held, acc["batch_size"] * PROMPT_TOKENS)]
    elif stage == "routing":
        tokens = max(config["routing"]["batch_sizes"]) * max(config["routing"]["sequence_tokens"])
        grids = [(tokens, tokens)]
    else:
        return 0.0
    per_token = [_token_bytes(s, bytes_per_value) for s in specs]
    return max((held * kv + step * work for kv, work in per_token for held, step in grids), default=0.0) / 1e9
