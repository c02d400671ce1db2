"""Our decoder against transformers' implementation of the same weights."""

import json

import pytest
import torch
import torch.nn.functional as F
from moesd.models import ModelSpecError, load_model, parse_spec
from moesd.models.cache import KVCache
from moesd.models.linear import Linear, packed_supported
from moesd.models.moe import GROUPED_MIN_ROWS, grouped_mm_available

from .tiny_models import FAMILIES, VOCAB


def hf_logits(folder, ids):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_logits_match_transformers_prefill_and_ragged_cached_decode(family, tiny_dirs):
    folder = tiny_dirs[family]
    ours = load_model(f"dir:{folder}", device="cpu")
    gen = torch.Generator().manual_seed(1)
    prompt_lens, s = [5, 11, 1, 8], 3
    seqs = [torch.randint(0, VOCAB, (n + s,), generator=gen).tolist() for n in prompt_lens]
    cache = ours.new_cache(len(seqs), 32)
    # batched prefill of prompts of different lengths (right-padded)
    width = max(prompt_lens)
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, n in enumerate(prompt_lens):
        ids[i, :n] = torch.tensor(seqs[i][:n])
    prefill = ours(ids, cache)
    cache.advance(torch.tensor(prompt_lens))
    # cached multi-token decode: s new tokens per sequence at each sequence's own length
    step = ours(torch.tensor([seq[n : n + s] for seq, n in zip(seqs, prompt_lens, strict=True)]), cache)
    for i, (seq, n) in enumerate(zip(seqs, prompt_lens, strict=True)):
        ref = hf_logits(folder, seq)  # [n + s, V], unbatched, no padding
        assert ref.abs().max() > 0.3  # the comparison is not between near-zero numbers
        assert (prefill[i, :n] - ref[:n]).abs().max() < 1e-4
        assert (step[i] - ref[n : n + s]).abs().max() < 1e-4


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("heads, kv_heads, s", [(4, 4, 1), (4, 2, 1), (6, 2, 5), (4, 1, 3)])
def test_the_attention_kernels_agree(dtype, tolerance, heads, kv_heads, s):
    """The math path (a CPU's default) and torch's sdpa give one attention: grouped-query heads,
    a ragged causal mask (each sequence at its own length), a decode step and an SD verification."""
    from moesd.models.attention import attend, resolve

    gen = torch.Generator().manual_seed(heads * 10 + kv_heads + s)
    b, d, slots = 3, 16, 12
    q = torch.randn(b, heads, s, d, generator=gen).to(dtype)
    k, v = (torch.randn(b, kv_heads, slots, d, generator=gen).to(dtype) for _ in range(2))
    lengths = torch.tensor([2, 7, 12 - s])  # tokens already cached per sequence
    positions = lengths[:, None] + torch.arange(s)
    mask = (torch.arange(slots)[None, None, :] <= positions[:, :, None])[:, None]  # [B, 1, s, T]
    math, sdpa, by_shape = (attend(q, k, v, mask, impl).float() for impl in ("math", "sdpa", "by_shape"))
    assert math.shape == (b, heads, s, d) and (math - sdpa).abs().max() < tolerance
    assert (by_shape - (sdpa if s == 1 else math)).abs().max() == 0
    assert resolve("auto", torch.device("cpu")) == "math" and resolve("auto", torch.device("meta")) == "sdpa"
    assert resolve("auto", torch.device("cpu"), torch.float32) == "by_shape"
    with pytest.raises(ValueError, match="attention implementation must be one of"):
        resolve("flash", torch.device("cpu"))


def test_a_model_gives_one_set_of_logits_with_either_attention_kernel(tiny_dirs):
    ids = torch.randint(0, VOCAB, (2, 9), generator=torch.Generator().manual_seed(3))
    logits = {}
    for impl in ("math", "sdpa"):
        model = load_model(f"dir:{tiny_dirs['qwen2']}", device="cpu", dtype=torch.float32, attention_impl=impl)
        assert model.attention_impl == impl
        cache = model.new_cache(2, 16)
        prefill = model(ids[:, :6], cache)
        cache.advance(6)
        logits[impl] = torch.cat([prefill, model(ids[:, 6:], cache)], dim=1)  # a prefill, then a 3-token step
    assert (logits["math"] - logits["sdpa"]).abs().max() < 1e-4


ALIGNED_MOE = (  # widths the grouped product takes (16-byte rows)
    "arch:qwen2-57b-a14b:num_hidden_layers=1,hidden_size=64,num_attention_heads=2,num_key_value_heads=1,"
    "moe_intermediate_size=32,shared_expert_intermediate_size=64,vocab_size=512"
)


NATIVE_BF16 = pytest.mark.skipif(
    not packed_supported(torch.zeros(1, dtype=torch.bfloat16)), reason="no native bf16 oneDNN product on this CPU"
)
PACKED_DTYPES = [pytest.param(torch.bfloat16, marks=NATIVE_BF16), torch.float32]  # fp32 packs on every CPU


@pytest.mark.parametrize("dtype", PACKED_DTYPES)
def test_a_model_gives_one_set_of_logits_with_packed_or_plain_linears(tiny_dirs, dtype):
    """The packed product (oneDNN's, on a copy of each weight in its blocked layout; the MoE's
    experts looped over) is the unpacked forms' twin: the same logits, prefill (many rows), one-
    and three-row cached steps, MoE and dense; in bf16 the same sums, in fp32 to its rounding."""
    ids = torch.randint(0, VOCAB, (2, 10), generator=torch.Generator().manual_seed(3))
    for family in ("qwen2_moe", "opt"):
        logits = {}
        for impl in ("packed", "plain"):
            model = load_model(f"dir:{tiny_dirs[family]}", device="cpu", dtype=dtype, linear_impl=impl)
            assert model.linear_impl == impl
            assert all((moe.packed_experts is not None) == (impl == "packed") for moe in model.moe_layers)
            with torch.inference_mode():
                cache = model.new_cache(1, 16)  # one sequence: its steps take one row
                prefill = model(ids[:1, :6], cache)
                cache.advance(6)
                one = model(ids[:1, 6:7], cache)
                cache.advance(1)
                logits[impl] = torch.cat([prefill, one, model(ids[:1, 7:], cache)], dim=1).float()
        if dtype == torch.bfloat16:
            assert torch.equal(logits["packed"], logits["plain"]), family
        else:
            assert (logits["packed"] - logits["plain"]).abs().max() < 1e-4, family


@pytest.mark.parametrize("dtype", PACKED_DTYPES)
def test_a_packed_linear_falls_back_to_the_weight_when_it_changes_or_grads_flow(dtype):
    layer = Linear(64, 96, bias=True).to(dtype)
    x = torch.randn(3, 5, 64).to(dtype)
    other = torch.float64 if dtype == torch.float32 else torch.float32
    close = torch.equal if dtype == torch.bfloat16 else lambda a, b: torch.allclose(a, b, atol=1e-5)
    assert layer.pack("packed")
    with torch.no_grad():
        assert close(layer(x), F.linear(x, layer.weight, layer.bias))
        layer.weight.mul_(2)  # an in-place change after packing: the plain product on the new weight
        assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
    layer.pack("packed")
    layer.to(other)  # moved to another dtype: the plain product on the moved weight
    with torch.no_grad():
        assert torch.equal(layer(x.to(other)), F.linear(x.to(other), layer.weight, layer.bias))
    layer.to(dtype)
    assert layer.pack("plain") is False and layer.packed is None
    layer.pack("packed")
    assert layer(x).requires_grad  # training: autograd through the plain product
    with pytest.raises(ValueError, match="linear implementation must be one of"):
        layer.pack("fast")
    with pytest.raises(RuntimeError, match="no packed product for torch.float16"):
        Linear(4, 4).half().pack("packed")


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN in this torch")
def test_auto_packs_a_weight_by_its_size_and_the_experts_by_theirs():
    """linear_impl auto packs an fp32 weight of PACK_MIN_BYTES or more (a packed call's fixed
    cost outweighs its faster read below); packed packs every one; plain none. An MoE's experts follow
    their own size: small ones take the grouped product (or the loop where it does not run), or,
    with the rows kernel, the loop while their rows fit it (by_rows)."""
    from moesd.models import rows_kernel
    from moesd.models.linear import PACK_MIN_BYTES, packs
    from moesd.models.moe import MoE

    big, small = torch.empty(PACK_MIN_BYTES // 4 // 256, 256), torch.empty(PACK_MIN_BYTES // 4 // 256 - 1, 256)
    assert (packs(big, "auto"), packs(small, "auto")) == (True, False)
    assert (packs(small, "packed"), packs(big, "plain")) == (True, False)
    assert not packs(big.double(), "auto")  # no packed product for fp64: unpacked, without an error
    if packed_supported(small.bfloat16()):  # bf16 is packed at every size (measured faster so)
        assert packs(small.bfloat16(), "auto")
    with pytest.raises(RuntimeError, match="no packed product for torch.float64"):
        packs(big.double(), "packed")
    assert Linear(256, 1024).pack() and not Linear(256, 1023).pack() and Linear(256, 1023).pack("packed")
    for hidden, width, packed in ((256, 512, True), (64, 32, False)):  # gate_up [H, 2I] fp32: 1 MiB, 16 KiB
        moe = MoE(hidden, width, 4, 2, norm_topk_prob=True)
        impl = moe.resolve_impl("auto")
        assert (moe.packed_experts is not None) == packed
        grouped = grouped_mm_available(hidden, width, torch.float32, torch.device("cpu"))
        small_impl = "by_rows" if rows_kernel.available() else "grouped_mm"
        assert impl == ("loop" if packed or not grouped else small_impl)
        assert moe.rows == rows_kernel.available()
        assert moe.resolve_impl("plain") == ("by_rows" if grouped else "loop")  # the unpacked twin as before
        assert moe.resolve_impl("packed") == "loop" and moe.packed_experts is not None


@pytest.mark.parametrize("dtype", PACKED_DTYPES)
def test_packed_experts_give_way_to_the_weights_when_they_change(dtype):
    """An MoE's packed experts serve the weights they were packed from: after an in-place change
    or a move the loop reads the parameters themselves (the plain twin's result)."""
    packed = load_model(ALIGNED_MOE, device="cpu", dtype=dtype, linear_impl="packed")
    moe = packed.moe_layers[0]
    assert moe.packed_experts is not None
    x = torch.randn(4, moe.gate_up.shape[1]).to(dtype)
    with torch.inference_mode():
        before = moe(x)
    with torch.no_grad():
        moe.down.mul_(2)  # the output doubles: every expert's down projection, nothing else
    with torch.inference_mode():
        after = moe(x)
    shared = torch.sigmoid(moe.shared_gate(x)) * moe.shared(x)
    assert torch.allclose(
        (after - shared).float(), 2 * (before - shared).float(), atol=2e-2 if dtype == torch.bfloat16 else 1e-5
    )
    moe.to(torch.float64)  # a move: a new storage, no packed product for fp64
    with torch.inference_mode():
        assert moe(x.double()).dtype == torch.float64


@pytest.mark.parametrize("which", ["trained", "aligned"])
def test_moe_loop_and_grouped_mm_agree(tiny_dirs, which):
    """The expert paths give one result. On a CPU in fp32 without packed weights, auto picks per
    call (by_rows): the loop over experts laid out [out, in] in memory (weight-major products) for
    few tokens per expert, the grouped product over the parameters as loaded (same shapes) for
    many. The others (packed by default) loop over packed experts or take the grouped product."""
    spec = f"dir:{tiny_dirs['qwen2_moe']}" if which == "trained" else ALIGNED_MOE
    auto = load_model(spec, device="cpu", dtype=torch.float32, expert_impl="auto", linear_impl="plain")
    moe = auto.moe_layers[0]
    grouped = grouped_mm_available(moe.gate_up.shape[1], moe.width, torch.float32, torch.device("cpu"))
    assert auto.expert_impl == ("by_rows" if grouped else "loop")
    assert moe.gate_up.shape == (moe.n_experts, moe.gate_up.shape[1], 2 * moe.width)
    gate_up, down = moe.loop_weights
    assert gate_up[0].t().is_contiguous() and down[0].t().is_contiguous()
    few, many = (GROUPED_MIN_ROWS * moe.n_experts // moe.top_k - 1, GROUPED_MIN_ROWS * moe.n_experts // moe.top_k)
    assert (moe.impl_for(few), moe.impl_for(many)) == (("loop", "grouped_mm") if grouped else ("loop", "loop"))
    # fp64 (the loop over row-major experts) where the weights come from files: a random init
    # draws other values in another dtype
    others = [("loop", torch.float64)] if which == "trained" else []
    others += [("loop", torch.float32)] + ([("grouped_mm", torch.float32)] if grouped else [])
    for length in (3, many):  # a decode step's few tokens, a prefill's many
        ids = torch.randint(0, min(VOCAB, auto.cfg.vocab_size), (1, length))
        reference = auto(ids, auto.new_cache(1, length + 1))
        for impl, dtype in others:
            model = load_model(spec, device="cpu", dtype=dtype, expert_impl=impl)
            assert model.expert_impl == impl
            assert (model(ids, model.new_cache(1, length + 1)).float() - reference).abs().max() < 1e-5


def test_weight_major_linear_matches_f_linear():
    """moesd.models.linear: (W x^T)^T for 2 to 64 rows of fp32 CPU inference (unpacked), F.linear
    otherwise; the same values, shapes and gradients either way."""
    from moesd.models.linear import Linear, linear, weight_major

    torch.manual_seed(0)
    weight, bias = torch.randn(24, 16), torch.randn(24)
    for shape in ((1, 16), (5, 16), (2, 3, 16), (16,)):
        x = torch.randn(*shape)
        for b in (None, bias):
            expected = torch.nn.functional.linear(x, weight, b)
            got = linear(x, weight, b)
            assert got.shape == expected.shape and got.is_contiguous()
            assert (got - expected).abs().max() < 1e-5
    rows = torch.randn(5, 16)
    assert weight_major(rows, weight) and not weight_major(rows[:1], weight)
    assert not weight_major(torch.randn(65, 16), weight)
    assert not weight_major(rows.double(), weight.double()) and not weight_major(rows.bfloat16(), weight.bfloat16())
    layer = Linear(16, 24)
    assert not weight_major(rows, layer.weight)  # training: autograd's own path
    layer(rows).sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.shape == (24, 16)
    with torch.no_grad():
        assert weight_major(rows, layer.weight)


def test_router_recording_counts_tokens_per_expert(tiny_dirs):
    model = load_model(f"dir:{tiny_dirs['mixtral']}", device="cpu")
    ids = torch.randint(0, VOCAB, (4, 5))
    with model.router_recording() as calls:
        model(ids, model.new_cache(4, 8))
    assert len(calls) == 1
    counts = calls[0]  # [moe layers, E]
    assert counts.shape == (2, 4)
    assert torch.all(counts.sum(dim=1) == 4 * 5 * 2)  # every token goes to top_k = 2 experts
    assert all(moe.record is None for moe in model.moe_layers)  # off again


def test_router_recording_runs_eagerly_under_cuda_graphs(tiny_dirs, monkeypatch):
    """A graph replay skips the Python that records routes: while recording, a graphed model
    (the graph path faked on the CPU) must take the eager forward."""
    import moesd.models.graphs as graphs

    replays = []
    monkeypatch.setattr(graphs, "graphs_supported", lambda model: True)
    monkeypatch.setattr(
        graphs, "run_graphed", lambda model, ids, cache: replays.append(ids) or model.forward_static(ids, cache)
    )
    model = load_model(f"dir:{tiny_dirs['mixtral']}", device="cpu")
    model.cuda_graphs = True
    ids = torch.randint(0, VOCAB, (4, 5))
    cache = model.new_cache(4, 8)
    model(ids, cache)
    assert len(replays) == 1  # the faked graph path is taken when not recording
    with model.router_recording() as calls:
        model(ids, cache)
    assert len(replays) == 1 and len(calls) == 1 and not model.recording


def test_cache_rollback_is_a_length_change(tiny_dirs):
    model = load_model(f"dir:{tiny_dirs['qwen2']}", device="cpu")
    ids = torch.randint(0, VOCAB, (2, 6))
    cache = model.new_cache(2, 16)
    full = model(ids, cache)
    cache.advance(6)
    cache.set_lengths(torch.tensor([3, 3]))  # roll back three tokens, then re-feed them
    again = model(ids[:, 3:], cache)
    assert (again - full[:, 3:]).abs().max() < 1e-5


def test_cache_overflow_is_an_error(tiny_dirs):
    model = load_model(f"dir:{tiny_dirs['qwen2']}", device="cpu")
    with pytest.raises(ValueError, match="KV cache overflow"):
        model(torch.zeros(1, 9, dtype=torch.long), KVCache(2, 1, 2, 8, 8, dtype=torch.float32, device="cpu"))


def test_arch_specs_build_random_models_with_overrides():
    model = load_model(
        "arch:qwen2-57b-a14b:num_hidden_layers=1,hidden_size=64,num_attention_heads=4,"
        "num_key_value_heads=2,moe_intermediate_size=32,shared_expert_intermediate_size=64,"
        "vocab_size=128,num_experts_per_tok=2,seed=3",
        device="cpu",
    )
    assert model.cfg.top_k == 2 and model.cfg.num_experts == 64 and model.cfg.num_layers == 1
    again = load_model(
        "arch:qwen2-57b-a14b:num_hidden_layers=1,hidden_size=64,num_attention_heads=4,"
        "num_key_value_heads=2,moe_intermediate_size=32,shared_expert_intermediate_size=64,"
        "vocab_size=128,num_experts_per_tok=2,seed=3",
        device="cpu",
    )
    assert torch.equal(model.embed.weight, again.embed.weight)  # seeded


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("qwen2", "expected hf:ORG/NAME@REVISION"),
        ("hf:Qwen/Qwen2-0.5B", "pinned revision"),
        ("dir:/nonexistent/model", "no config.json"),
        ("arch:gpt-9", "unknown architecture"),
        ("arch:qwen2-0.5b:num_layers=2", "no key 'num_layers'"),
        ("arch:deepseek-v2-lite", "not supported by the engine"),
    ],
)
def test_bad_specs_fail_with_the_spec_named(spec, message):
    with pytest.raises(ModelSpecError, match=message):
        load_model(spec, device="cpu")


def test_hf_spec_offline_gives_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelSpecError, match="model spec hf:Qwen/Qwen2-0.5B-Instruct@main: cannot download"):
        load_model("hf:Qwen/Qwen2-0.5B-Instruct@main", device="cpu")
    assert parse_spec("hf:Qwen/Qwen2-0.5B-Instruct@abc123").revision == "abc123"


def test_dir_without_weights(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    with pytest.raises(ModelSpecError, match="no \\*.safetensors or pytorch_model"):
        load_model(f"dir:{tmp_path}", device="cpu")


@pytest.mark.parametrize("family", ["qwen2_moe", "opt"])
def test_static_forward_is_the_dynamic_one(family, tiny_dirs):
    """The fixed-shape forward that CUDA graphs capture, on the CPU: attention over the whole
    cache masked by slot must give the dynamic forward's logits."""
    model = load_model(f"dir:{tiny_dirs[family]}", device="cpu")
    cache = model.new_cache(3, 40)
    from moesd.decode.engine import forward_ragged

    forward_ragged(model, cache, [[1, 2, 3], [4] * 11, [5, 6]])
    ids = torch.randint(0, VOCAB, (3, 4))
    assert (model.forward_static(ids, cache) - model(ids, cache)).abs().max() < 1e-5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graphs_replay_matches_eager(tiny_dirs):
    from moesd.decode import GenerationConfig, decode

    eager = load_model(f"dir:{tiny_dirs['qwen2_moe']}", device="cuda", dtype=torch.float32, expert_impl="grouped_mm")
    graphed = load_model(f"dir:{tiny_dirs['qwen2_moe']}", device="cuda", dtype=torch.float32, expert_impl="grouped_mm")
    graphed.cuda_graphs = True
    draft = load_model(f"dir:{tiny_dirs['qwen2']}", device="cuda", dtype=torch.float32)
    prompts = [[1, 2, 3], [4, 5, 6, 7, 8]]
    config = GenerationConfig(max_new_tokens=12, gamma=3, stop_at_eos=False)
    assert (
        decode(graphed, prompts, config, draft=draft, mode="sd").output_ids
        == decode(eager, prompts, config, draft=draft, mode="sd").output_ids
    )
