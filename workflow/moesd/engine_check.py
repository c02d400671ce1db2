"""The engine check (`moesd engine-check`): per-forward time of our decoder against transformers' on the same
weights, side by side in one process (same machine state), medians of repeated calls.

Each timed call is one forward of s new tokens for each of B sequences on top of a KV cache that
already holds `context` tokens; the cache is reset to the context outside the timed region.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import torch

from moesd.models import checkpoint
from moesd.models.loading import load_model
from moesd.models.spec import parse_spec
from moesd.timing import interleaved_medians


def ours_contender(model, batch: int, s: int, context: int, seed: int = 0):
    """(call, reset) for one forward of s tokens per sequence over a cache of CONTEXT tokens."""
    gen = torch.Generator().manual_seed(seed)
    vocab = model.cfg.vocab_size
    cache = model.new_cache(batch, context + s)
    model(torch.randint(0, vocab, (batch, context), generator=gen), cache)
    cache.advance(context)
    x = torch.randint(0, vocab, (batch, s), generator=gen)
    return (lambda: model(x, cache)), (lambda: None)  # lengths never advance: same slots each call


def hf_contender(model, batch: int, s: int, context: int, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    vocab = model.config.vocab_size
    with torch.inference_mode():
        out = model(torch.randint(0, vocab, (batch, context), generator=gen), use_cache=True)
    cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
    x = torch.randint(0, vocab, (batch, s), generator=gen)

    def call():
        with torch.inference_mode():
            model(x, cache=cache, use_cache=True)

    return call, (lambda: cache.crop(-s))


def reference_folder(spec_text: str, workdir: Path) -> Path:
    """A folder with the spec's weights in Hugging Face format: the model's own for hf:/dir:,
    a transformers-initialised random model saved to WORKDIR for arch:."""
    spec = parse_spec(spec_text)
    if spec.kind != "arch":
        return checkpoint.folder(spec)
    from transformers import AutoConfig, AutoModelForCausalLM

    raw = dict(checkpoint.hf_config(spec))
    model_type = raw.pop("model_type")
    for key in ("architectures", "auto_map", "transformers_version", "torch_dtype", "dtype"):
        raw.pop(key, None)
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):  # overridden vocabularies may exclude them
        if isinstance(raw.get(key), int) and raw[key] >= raw["vocab_size"]:
            raw[key] = None
    config = AutoConfig.for_model(model_type, **raw)
    torch.manual_seed(spec.seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(workdir)
    return workdir


def engine_check(spec_text: str, batch_sizes, token_counts, context: int, repeats: int, warmup: int) -> pd.DataFrame:
    from transformers import AutoModelForCausalLM

    with tempfile.TemporaryDirectory() as tmp:
        folder = reference_folder(spec_text, Path(tmp))
        ours = load_model(f"dir:{folder}", device="cpu", dtype=torch.float32)
        hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    rows = []
    for batch in batch_sizes:
        for s in token_counts:
            contenders = {"ours": ours_contender(ours, batch, s, context), "hf": hf_contender(hf, batch, s, context)}
            medians = interleaved_medians(contenders, repeats, warmup)
            ours_ms, hf_ms = medians["ours"], medians["hf"]
            rows.append(
                {
                    "model": spec_text,
                    "B": batch,
                    "s": s,
                    "context": context,
                    "ours_ms": ours_ms,
                    "transformers_ms": hf_ms,
                    "speedup_vs_transformers": hf_ms / ours_ms,
                    "expert_impl": ours.expert_impl,
                    "threads": torch.get_num_threads(),
                }
            )
    return pd.DataFrame(rows)
