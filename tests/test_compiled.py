"""The compiled forward (moesd.models.compiled) against its eager twin, and where it is refused."""

import pytest
import torch
from moesd.decode import GenerationConfig, decode
from moesd.models import ModelSpecError, load_model
from moesd.models.compiled import CACHE_BUCKET
from torch._dynamo.utils import counters


@pytest.mark.slow  # two compiles of a tiny model (about 25 s on 2 cores)
def test_the_compiled_forward_is_its_eager_twin(tiny_dirs):
    """The same logits and the same cache, step by step (a [B, 2] catch-up, then [B, 1] steps), and
    greedy SD through the compiled draft (the same two shapes) keeps the target's greedy output
    token for token. fp64 throughout; the compiled logits still differ from eager by about 2e-7
    (in fp32 too: inductor's kernels, not fp64 rounding; a draft's logits decide only acceptance)."""
    spec, f64 = f"dir:{tiny_dirs['qwen2']}", torch.float64
    eager = load_model(spec, device="cpu", dtype=f64)
    compiled = load_model(spec, device="cpu", dtype=f64, compile=True)
    assert compiled.compiled and compiled.linear_impl == "plain"
    generator = torch.Generator().manual_seed(0)
    caches = [m.new_cache(2, 40) for m in (eager, compiled)]
    assert caches[1].max_len == CACHE_BUCKET and caches[0].max_len == 40
    prompt = torch.randint(0, 96, (2, 7), generator=generator)
    for model, cache in zip((eager, compiled), caches, strict=True):
        model(prompt, cache, last_only=torch.full((2,), 6))  # the ragged prefill: eager in both
        cache.advance(7)
    for width in (2, 1, 1):
        ids = torch.randint(0, 96, (2, width), generator=generator)
        outs = [m(ids, c) for m, c in zip((eager, compiled), caches, strict=True)]
        assert torch.allclose(outs[0], outs[1], rtol=0, atol=1e-5), width
        for cache in caches:
            cache.advance(width)
        for a, b in zip(caches[0].k + caches[0].v, caches[1].k + caches[1].v, strict=True):
            assert torch.allclose(a, b[:, :, :40], rtol=0, atol=1e-5) and not b[:, :, 40:].any()
    target = load_model(f"dir:{tiny_dirs['qwen2_moe']}", device="cpu", dtype=f64)
    prompts = [[5, 17, 3, 9], [44, 2, 71, 8, 30, 1]]
    config = GenerationConfig(max_new_tokens=12, temperature=0.0, gamma=3, stop_at_eos=False)
    ar = decode(target, prompts, config)
    counters.clear()
    sd = decode(target, prompts, config, draft=compiled, mode="sd")
    assert sd.output_ids == ar.output_ids and not counters["stats"]["unique_graphs"]  # both shapes compiled above


@pytest.mark.parametrize(
    ("family", "kwargs", "message"),
    [
        ("qwen2_moe", {}, "only dense models are compiled"),
        ("qwen2", {"linear_impl": "packed"}, "a compiled model's weights stay unpacked"),
        ("qwen2", {"no_compiler": True}, "torch.compile on a CPU needs a C\\+\\+ compiler"),
    ],
)
def test_compiling_what_cannot_be_compiled_stops_at_load(tiny_dirs, monkeypatch, family, kwargs, message):
    if kwargs.pop("no_compiler", False):
        monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(ModelSpecError, match=f"model spec dir:.*: cannot compile it: {message}"):
        load_model(f"dir:{tiny_dirs[family]}", device="cpu", dtype=torch.float32, compile=True, **kwargs)
