"""Routing statistics for the paper's Fig. 1: distinct experts activated per MoE layer against
the number of tokens in a forward, measured, next to Eq. 8's i.i.d. prediction.

Two ways to put t tokens through the routers, both after a real context is in the KV cache:
    batch:    1 token from each of t sequences (an AR decode step at batch size t)
    sequence: t consecutive tokens of one sequence (a verification forward of t positions)
Engine models are instrumented with Transformer.router_recording; hub models of families the
engine does not implement (DeepSeek-V2 in the paper) run in transformers with forward hooks on
their routers (`hf_routing_stats`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from moesd.models import checkpoint
from moesd.theory import expected_active_experts


def _distinct(counts: torch.Tensor) -> list[int]:
    """counts [layers, E] tokens per expert -> distinct experts per layer."""
    return (counts > 0).sum(dim=1).tolist()


def _rows(source, mode, tokens, per_layer, n_experts, top_k, sample, layers=None):
    predicted = float(expected_active_experts(n_experts, top_k, tokens))
    layers = layers if layers is not None else range(len(per_layer))
    return [
        {
            "inputs": source,
            "mode": mode,
            "tokens": tokens,
            "sample": sample,
            "layer": layer,
            "distinct_experts": n,
            "E": n_experts,
            "K": top_k,
            "eq8": predicted,
        }
        for layer, n in zip(layers, per_layer, strict=True)
    ]


def decode_position(prompt: list[int], index: int) -> int:
    """A deterministic position in the second half of PROMPT (at least 1), varying with INDEX."""
    low = max(1, len(prompt) // 2)
    return low + (index * 7919) % (len(prompt) - low)


@torch.no_grad()
def engine_routing_stats(model, prompts, source: str, batch_sizes, sequence_tokens, n_sequences: int) -> pd.DataFrame:
    """Distinct experts per layer for engine MODEL on PROMPTS (lists of token ids)."""
    from moesd.decode.engine import forward_ragged

    cfg = model.cfg
    rows = []
    long_enough = [p for p in prompts if len(p) >= 2]
    for b in batch_sizes:
        if b > len(long_enough):
            continue
        # each sequence's routed token sits at its own point of the text (prompts of one set often
        # end alike, e.g. every HumanEval prompt closes its docstring), after a real context
        cuts = [decode_position(p, i) for i, p in enumerate(long_enough[:b])]
        batch = [p[:c] for p, c in zip(long_enough[:b], cuts, strict=True)]
        cache = model.new_cache(b, max(cuts) + 1)
        forward_ragged(model, cache, batch)  # the context
        tokens = [[p[c]] for p, c in zip(long_enough[:b], cuts, strict=True)]
        with model.router_recording() as calls:
            model(torch.tensor(tokens, device=model.device), cache)  # 1 token from each of b
        rows += _rows(source, "batch", b, _distinct(calls[0]), cfg.num_experts, cfg.top_k, 0)
    for s in sequence_tokens:
        candidates = [p for p in prompts if len(p) > s][:n_sequences]
        for sample, prompt in enumerate(candidates):
            cache = model.new_cache(1, len(prompt) + 1)
            forward_ragged(model, cache, [prompt[: len(prompt) - s]])
            with model.router_recording() as calls:
                model(torch.tensor([prompt[len(prompt) - s :]], device=model.device), cache)  # s tokens of one
            rows += _rows(source, "sequence", s, _distinct(calls[0]), cfg.num_experts, cfg.top_k, sample)
    return pd.DataFrame(rows)


def _router_modules(model):
    """(layer index, router module) of a transformers MoE model: modules named *.mlp.gate."""
    found = []
    for name, module in model.named_modules():
        parts = name.split(".")
        if len(parts) >= 2 and parts[-1] == "gate" and parts[-2] == "mlp" and "layers" in parts:
            found.append((int(parts[parts.index("layers") + 1]), module))
    return found


def _indices_from_router_output(output, top_k: int) -> torch.Tensor:
    """Top-k expert indices from a router's output: (logits, weights, indices) in transformers
    5.x, or plain logits (top-k taken here)."""
    if isinstance(output, tuple):
        for item in reversed(output):
            if torch.is_tensor(item) and not item.is_floating_point():
                return item
        output = output[0]
    return torch.topk(output, top_k, dim=-1).indices


@torch.no_grad()
def hf_routing_stats(model, prompts, source: str, batch_sizes, sequence_tokens, n_sequences: int) -> pd.DataFrame:
    """The same measurement for a transformers model, with forward hooks on its routers."""
    config = model.config
    n_experts = (
        getattr(config, "n_routed_experts", None) or getattr(config, "num_experts", None) or config.num_local_experts
    )
    top_k = config.num_experts_per_tok
    routers = _router_modules(model)
    if not routers:
        raise ValueError(f"{type(model).__name__}: no MoE routers (modules named layers.N.mlp.gate) found")
    seen: dict[int, torch.Tensor] = {}
    active = {"on": False}

    def hook(index):
        def record(_module, _inputs, output):
            if active["on"]:
                idx = _indices_from_router_output(output, top_k).reshape(-1)
                seen[index] = torch.bincount(idx.cpu(), minlength=n_experts)

        return record

    handles = [module.register_forward_hook(hook(i)) for i, module in routers]
    layer_ids = [i for i, _ in routers]

    def counts():
        return torch.stack([seen[i] for i, _ in routers])

    rows = []
    try:
        for b in batch_sizes:
            batch = [p for p in prompts if len(p) >= 2][:b]
            if len(batch) < b:
                continue
            # contexts of different lengths, left-padded (with attention masks) so the last tokens align
            width = max(len(p) for p in batch)
            ids = torch.zeros(b, width, dtype=torch.long)
            mask = torch.zeros(b, width, dtype=torch.long)
            for i, p in enumerate(batch):
                ids[i, width - len(p) :] = torch.tensor(p)
                mask[i, width - len(p) :] = 1
            out = model(ids[:, :-1], attention_mask=mask[:, :-1], use_cache=True)
            cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
            active["on"] = True
            model(ids[:, -1:], attention_mask=mask, cache=cache, use_cache=True)
            active["on"] = False
            rows += _rows(source, "batch", b, _distinct(counts()), n_experts, top_k, 0, layer_ids)
        for s in sequence_tokens:
            for sample, prompt in enumerate([p for p in prompts if len(p) > s][:n_sequences]):
                out = model(torch.tensor([prompt[: len(prompt) - s]]), use_cache=True)
                cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
                active["on"] = True
                model(torch.tensor([prompt[len(prompt) - s :]]), cache=cache, use_cache=True)
                active["on"] = False
                rows += _rows(source, "sequence", s, _distinct(counts()), n_experts, top_k, sample, layer_ids)
    finally:
        for handle in handles:
            handle.remove()
    return pd.DataFrame(rows)


def routing_table(config: dict, run_dir: Path, prompts_dir: Path) -> pd.DataFrame:
    """The routing section's measurements: every pair's MoE target on the dataset prompts and on
    random ids (engine), the random-weight models on random ids (Eq. 8's own setting), and hub
    models run through transformers' hooks; one table."""
    from moesd.models.loading import load_model
    from moesd.models.spec import parse_spec
    from moesd.prompt_sets import dataset_name
    from moesd.prompts import random_prompts, read_token_ids

    rt = config["routing"]
    frames, seen = [], set()
    longest = max(rt["sequence_tokens"]) + 16  # random ids: the longest routed run plus context
    stats = lambda model, prompts, source: engine_routing_stats(  # noqa: E731
        model, prompts, source, rt["batch_sizes"], rt["sequence_tokens"], rt["n_sequences"]
    )
    for pair in config["pairs"]:
        spec = parse_spec(pair["target"]).resolve(run_dir)
        if spec.text in seen:
            continue
        seen.add(spec.text)
        model = load_model(spec.text)  # cuda when available (a hub MoE in fp32 would not fit a CPU node)
        if not model.cfg.is_moe:
            continue
        sources = {
            dataset_name(s): read_token_ids(prompts_dir / pair["name"] / f"{dataset_name(s)}.jsonl")
            for s in rt["datasets"]
        }
        sources["random"] = random_prompts(max(rt["batch_sizes"]), longest, model.cfg.vocab_size, 0)
        label = "engine, random weights" if spec.kind == "arch" else "engine"  # an arch: pair has no trained router
        for source, prompts in sources.items():
            frames.append(stats(model, prompts, source).assign(model=pair["target"], implementation=label))
    for spec in rt["random_models"]:  # Eq. 8's setting: random weights, random ids
        model = load_model(spec)  # cuda when available (a hub MoE in fp32 would not fit a CPU node)
        if not model.cfg.is_moe:
            raise ValueError(f"routing.random_models: {spec!r} is not a MoE model")
        prompts = random_prompts(max(rt["batch_sizes"]), longest, model.cfg.vocab_size, 0)
        frames.append(stats(model, prompts, "random").assign(model=spec, implementation="engine, random weights"))
    for spec in rt["hf_models"]:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(checkpoint.folder(parse_spec(spec)), dtype=torch.float32).eval()
        prompts = random_prompts(max(rt["batch_sizes"]), longest, model.config.vocab_size, 0)
        table = hf_routing_stats(model, prompts, "random", rt["batch_sizes"], rt["sequence_tokens"], rt["n_sequences"])
        frames.append(table.assign(model=spec, implementation="transformers hooks"))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
