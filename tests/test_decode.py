"""Speculative decoding is lossless: greedy output equals greedy autoregressive output, and
sampled output follows the target distribution."""

import random

import numpy as np
import pytest
import torch
from moesd.decode import GenerationConfig, decode
from moesd.decode import sampling as sampling_module
from moesd.models import load_model
from scipy.stats import chi2

from .tiny_models import FAMILIES, VOCAB, save_tiny


@pytest.fixture(scope="module")
def fp64_models(tiny_dirs):
    """Every family in float64, so that greedy ties between batched and unbatched arithmetic are
    vanishingly rare, plus a perturbed copy of each (a draft that agrees often, not always)."""
    models = {f: load_model(f"dir:{d}", device="cpu", dtype=torch.float64) for f, d in tiny_dirs.items()}
    perturbed = {}
    for family, folder in tiny_dirs.items():
        model = load_model(f"dir:{folder}", device="cpu", dtype=torch.float64)
        gen = torch.Generator().manual_seed(7)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.2 * p.std().nan_to_num(0.1))
        perturbed[family] = model
    return models, perturbed


GREEDY_CASES = 200  # every case under `slow`; the first 30 in the edit-test loop


@pytest.mark.parametrize(
    "cases",
    [
        pytest.param(range(30), id="first-30"),
        pytest.param(range(30, GREEDY_CASES), id="other-170", marks=pytest.mark.slow),
    ],
)
def test_greedy_sd_equals_greedy_ar(fp64_models, cases):
    """200 random cases (families, drafts, gamma, batch, prompt and output lengths), drawn from one
    seeded stream so that each case is the same whichever part runs."""
    models, perturbed = fp64_models
    families = sorted(FAMILIES)
    rng = random.Random(2024)
    seen_accepts = set()
    for case in range(cases.stop):
        target_family = families[case % len(families)]
        target = models[target_family]
        kind = case % 3
        if kind == 0:  # a draft of another family sharing the vocabulary
            draft = models[families[(case // len(families) + 1 + families.index(target_family)) % len(families)]]
            if draft is target:
                draft = models[families[(families.index(target_family) + 1) % len(families)]]
        elif kind == 1:  # a perturbed copy: partial acceptance
            draft = perturbed[target_family]
        else:  # the target itself: every draft accepted, exercising the draft's catch-up
            draft = target
        gamma = rng.randint(1, 6)
        batch = rng.randint(1, 16)
        prompts = [[rng.randrange(VOCAB) for _ in range(rng.randint(1, 14))] for _ in range(batch)]
        config = GenerationConfig(max_new_tokens=rng.randint(2, 24), gamma=gamma, stop_at_eos=False)
        if case not in cases:  # drawn all the same, so that the stream stays in step
            continue
        ar = decode(target, prompts, config, mode="ar")
        sd = decode(target, prompts, config, draft=draft, mode="sd")
        assert sd.output_ids == ar.output_ids, f"case {case}: {target_family} gamma={gamma} B={batch}"
        if draft is target:  # a draft whose cache is right proposes exactly the target's tokens
            assert all(n == gamma for counts in sd.accepted_per_sequence for n in counts), f"case {case}"
        for counts in sd.accepted_per_sequence:
            seen_accepts.update((gamma, n) for n in counts)
    # every acceptance length was exercised, including full runs (0 < n < gamma and n = gamma)
    assert any(n == 0 for _, n in seen_accepts) and any(0 < n < g for g, n in seen_accepts)
    assert any(n == g for g, n in seen_accepts)


def test_sd_through_the_static_forward_equals_ar(fp64_models, monkeypatch):
    """The CUDA-graph path's CPU twin: every fixed-shape forward (the draft's [B, 2] catch-up and
    single steps, the target's verification and AR steps) through forward_static, as graphs replay it."""
    from moesd.models import Transformer

    dynamic = Transformer.forward

    def static_when_fixed(self, input_ids, cache, last_only=None):
        if last_only is None:
            return self.forward_static(input_ids, cache)
        return dynamic(self, input_ids, cache, last_only)

    monkeypatch.setattr(Transformer, "forward", static_when_fixed)
    models, perturbed = fp64_models
    rng = random.Random(7)
    for family in sorted(FAMILIES):
        for draft in (perturbed[family], models[family]):  # partial and full acceptance
            prompts = [[rng.randrange(VOCAB) for _ in range(rng.randint(1, 9))] for _ in range(5)]
            config = GenerationConfig(max_new_tokens=12, gamma=3, stop_at_eos=False)
            ar = decode(models[family], prompts, config, mode="ar")
            sd = decode(models[family], prompts, config, draft=draft, mode="sd")
            assert sd.output_ids == ar.output_ids, family
            if draft is models[family]:
                assert all(n == 3 for counts in sd.accepted_per_sequence for n in counts), family


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_a_prefill_from_the_memo_decodes_the_same_tokens(fp64_models, monkeypatch, temperature):
    """latency.e2e.prefill once: a batch prefilled once (PrefillMemo), every later generation of it
    from a copy of that cache, gives the tokens a recomputed prefill gives, greedy and sampled, AR
    and SD; a generation's writes never reach the kept copy; each model is prefilled once."""
    from moesd.decode import PrefillMemo, engine

    models, perturbed = fp64_models
    family = sorted(FAMILIES)[0]
    target, draft = models[family], perturbed[family]
    rng = random.Random(3)
    prompts = [[rng.randrange(VOCAB) for _ in range(rng.randint(2, 9))] for _ in range(4)]
    config = GenerationConfig(max_new_tokens=10, gamma=3, temperature=temperature, stop_at_eos=False, seed=5)
    fresh = {mode: decode(target, prompts, config, draft=draft, mode=mode).output_ids for mode in ("ar", "sd")}
    calls = []
    real = engine.forward_ragged
    monkeypatch.setattr(engine, "forward_ragged", lambda model, *a: calls.append(model) or real(model, *a))
    memo = PrefillMemo()
    for _ in range(3):  # the first fills the memo, the others copy it
        for mode in ("ar", "sd"):
            result = decode(target, prompts, config, draft=draft, mode=mode, prefill_memo=memo)
            assert result.output_ids == fresh[mode], mode
    assert sorted(map(id, calls)) == sorted([id(target), id(draft)])  # one prefill per model, shared by AR and SD


def test_stop_at_eos_and_max_new_tokens(fp64_models):
    models, _ = fp64_models
    target = models["qwen2"]
    prompts = [[1, 2, 3], [4, 5]]
    ar = decode(target, prompts, GenerationConfig(max_new_tokens=10, stop_at_eos=False))
    assert [len(o) for o in ar.output_ids] == [10, 10]
    eos = ar.output_ids[0][3]
    from moesd.decode.engine import ARStepper, generate

    config = GenerationConfig(max_new_tokens=10)
    gen = torch.Generator().manual_seed(0)
    stopped = generate(ARStepper(target, config, gen), prompts, config, eos_ids=(eos,))
    assert stopped.output_ids[0] == ar.output_ids[0][: ar.output_ids[0].index(eos) + 1]


def test_continuous_batching_stops_on_the_batch_total_and_stays_lossless(fp64_models):
    """No sequence waits for the batch's slowest: every round keeps every sequence active, the
    batch stops at the first round that brings B * max_new_tokens, and each greedy output is
    still the prefix of the target's own greedy continuation."""
    models, perturbed = fp64_models
    target, draft = models["qwen2"], perturbed["qwen2"]
    prompts = [[1, 2, 3], [4, 5], [6], [7, 8, 9, 10]]
    n, gamma = 12, 3
    reference = decode(target, prompts, GenerationConfig(max_new_tokens=2 * n, stop_at_eos=False))
    config = GenerationConfig(max_new_tokens=n, gamma=gamma, stop_at_eos=False, batching="continuous")
    sd = decode(target, prompts, config, draft=draft, mode="sd")
    lengths = [len(o) for o in sd.output_ids]
    assert sum(lengths) >= len(prompts) * n > sum(lengths) - len(prompts) * (gamma + 1)
    assert len(set(lengths)) > 1 and max(lengths) > n  # a luckier sequence went on past n
    assert all(all(step.active) for step in sd.steps)
    for out, ref in zip(sd.output_ids, reference.output_ids, strict=True):
        assert out == ref[: len(out)]
    ar = decode(target, prompts, config, mode="ar")  # one token per sequence per step: as static
    assert ar.output_ids == [ref[:n] for ref in reference.output_ids]
    with pytest.raises(ValueError, match="batching"):
        GenerationConfig(batching="dynamic")


def _joint_counts(outputs, n_tokens):
    counts = {}
    for out in outputs:
        key = tuple(out[:n_tokens])
        counts[key] = counts.get(key, 0) + 1
    return counts


def _exact_joint(model, prompt, n_tokens, temperature):
    """Exact target probability of every continuation of length n_tokens (small vocab)."""
    probs = {(): 1.0}
    for _ in range(n_tokens):
        nxt = {}
        for prefix, pr in probs.items():
            ids = torch.tensor([prompt + list(prefix)])
            logits = model(ids, model.new_cache(1, ids.shape[1] + 1))[0, -1]
            p = torch.softmax(logits.double() / temperature, -1)
            for t in range(p.shape[0]):
                nxt[prefix + (t,)] = pr * float(p[t])
        probs = nxt
    return probs


def _chi_square_p_value(counts, exact, n):
    """Pearson chi-square with cells of expected count < 5 pooled into one."""
    stat, pooled_obs, pooled_exp, cells = 0.0, 0, 0.0, 0
    for key, pr in exact.items():
        expected = pr * n
        observed = counts.get(key, 0)
        if expected < 5:
            pooled_obs, pooled_exp = pooled_obs + observed, pooled_exp + expected
            continue
        stat += (observed - expected) ** 2 / expected
        cells += 1
    if pooled_exp > 0:
        stat += (pooled_obs - pooled_exp) ** 2 / pooled_exp
        cells += 1
    return float(chi2.sf(stat, cells - 1))


@pytest.fixture(scope="module")
def small_vocab_pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("v6")
    target = load_model(f"dir:{save_tiny('qwen2_moe', root / 't', vocab=6, std=0.6, seed=11)}", device="cpu")
    draft = load_model(f"dir:{save_tiny('llama', root / 'd', vocab=6, std=0.6, seed=12)}", device="cpu")
    return target, draft


GAMMA = 2
N_TOKENS = GAMMA + 2  # the prefill's token, gamma drafts, and the correction or bonus token after them


def _sampled_outputs(target, draft, n, temperature=1.0, seed=0):
    prompt = [1, 4, 2]
    config = GenerationConfig(
        max_new_tokens=N_TOKENS, temperature=temperature, gamma=GAMMA, stop_at_eos=False, seed=seed
    )
    return prompt, decode(target, [prompt] * n, config, draft=draft, mode="sd").output_ids


# Threshold: the test fails when the chi-square p-value of the first gamma + 2 generated tokens
# (the prefill's token, then one whole speculative round: tokens 2 and 3 from the drafts, token 4
# the correction or, after a fully accepted round, the bonus) against the target's exact
# distribution is below 1e-4; a correct sampler fails it one time in 10,000.
P_THRESHOLD = 1e-4


@pytest.mark.parametrize("temperature", [1.0, pytest.param(0.7, marks=pytest.mark.slow)])
def test_sampled_sd_follows_target_distribution(small_vocab_pair, temperature):
    target, draft = small_vocab_pair
    n = 12000
    prompt, outputs = _sampled_outputs(target, draft, n, temperature)
    exact = _exact_joint(target, prompt, N_TOKENS, temperature)
    assert _chi_square_p_value(_joint_counts(outputs, N_TOKENS), exact, n) > P_THRESHOLD
    # the draft really differs from the target, so acceptance is non-trivial
    draft_exact = _exact_joint(draft, prompt, 1, 1.0)
    target_first = _exact_joint(target, prompt, 1, 1.0)
    assert sum(abs(draft_exact[k] - target_first[k]) for k in target_first) > 0.2


def test_broken_acceptance_rules_are_detected(small_vocab_pair, monkeypatch):
    target, draft = small_vocab_pair
    n = 4000  # each broken rule's p-value is below 1e-25 here (below 1e-12 at 3000)
    exact = _exact_joint(target, [1, 4, 2], N_TOKENS, 1.0)
    original = sampling_module.verify

    def accept_everything(target_logits, draft_logits, drafts, temperature, generator, *, forced_alpha=None):
        return original(target_logits, draft_logits, drafts, temperature, generator, forced_alpha=1.0)

    def resample_from_p(target_logits, draft_logits, drafts, temperature, generator, *, forced_alpha=None):
        # accepts correctly but draws the replacement from p instead of the residual max(p - q, 0)
        p = sampling_module.probabilities(target_logits, temperature)
        q = sampling_module.probabilities(draft_logits, temperature)
        g = drafts.shape[1]
        ratio = (p[:, :g].gather(-1, drafts[..., None]) / q.gather(-1, drafts[..., None]))[..., 0]
        draws = torch.rand(drafts.shape, generator=generator)
        accepted = torch.cumprod((draws < ratio.clamp(max=1)).long(), 1).sum(1)
        rows = torch.arange(drafts.shape[0])
        token = torch.multinomial(p[rows, accepted], 1, generator=generator)[:, 0]
        return sampling_module.Verdict(accepted, token)

    def uniform_bonus(target_logits, draft_logits, drafts, temperature, generator, *, forced_alpha=None):
        # correct except the bonus token after a fully accepted round, drawn uniformly instead of from p
        verdict = original(target_logits, draft_logits, drafts, temperature, generator)
        uniform = torch.randint(target_logits.shape[-1], verdict.next_token.shape, generator=generator)
        full = verdict.accepted == drafts.shape[1]
        return sampling_module.Verdict(verdict.accepted, torch.where(full, uniform, verdict.next_token))

    for broken in (accept_everything, resample_from_p, uniform_bonus):
        monkeypatch.setattr("moesd.decode.engine.verify", broken)
        prompt, outputs = _sampled_outputs(target, draft, n, seed=1)
        assert _chi_square_p_value(_joint_counts(outputs, N_TOKENS), exact, n) < P_THRESHOLD, broken.__name__


@pytest.mark.parametrize("alpha", [0.3, 0.8])
def test_forced_acceptance_realises_alpha(small_vocab_pair, alpha):
    target, draft = small_vocab_pair
    gamma = 4
    config = GenerationConfig(max_new_tokens=40, gamma=gamma, acceptance="forced", alpha=alpha, stop_at_eos=False)
    result = decode(target, [[1, 2]] * 64, config, draft=draft, mode="sd")
    assert not result.target_outputs
    counts = np.array([n for seq in result.accepted_per_sequence for n in seq])
    # maximum likelihood under i.i.d. acceptance truncated at gamma: accepted / (trials)
    trials = counts.sum() + np.sum(counts < gamma)
    estimate = counts.sum() / trials
    stderr = np.sqrt(alpha * (1 - alpha) / trials)
    assert abs(estimate - alpha) < 4 * stderr


def test_forced_acceptance_drafts_tokens_uniformly():
    """A random-weight draft with tied embeddings copies its input; under forced acceptance its
    tokens are drawn uniformly, so the verified tokens are not runs of one token."""
    target = load_model("arch:qwen2-57b-a14b:num_hidden_layers=1,hidden_size=64,num_attention_heads=4,moe_intermediate_size=16,"
                        "shared_expert_intermediate_size=32,vocab_size=512", device="cpu")  # fmt: skip
    draft = load_model("arch:qwen2-0.5b:num_hidden_layers=1,hidden_size=64,num_attention_heads=2,"
                       "num_key_value_heads=1,intermediate_size=128,vocab_size=512", device="cpu")  # fmt: skip
    assert draft.lm_head is None  # tied: the copying draft this guards against
    config = GenerationConfig(max_new_tokens=41, gamma=4, acceptance="forced", alpha=1.0, stop_at_eos=False)
    output = decode(target, [[1, 2, 3]] * 4, config, draft=draft, mode="sd").output_ids
    repeats = np.mean([a == b for seq in output for a, b in zip(seq, seq[1:], strict=False)])
    assert repeats < 0.1, output[0]


def test_stage_times_recorded_when_timing(small_vocab_pair):
    target, draft = small_vocab_pair
    config = GenerationConfig(max_new_tokens=6, gamma=3, timing=True, stop_at_eos=False)
    sd = decode(target, [[1, 2]] * 3, config, draft=draft, mode="sd")
    assert all(s.t_draft > 0 and s.t_target > 0 and s.t_reject >= 0 for s in sd.steps)
    ar = decode(target, [[1, 2]] * 3, config, mode="ar")
    assert all(s.t_target > 0 and s.t_draft is None for s in ar.steps)
    untimed = decode(target, [[1, 2]], GenerationConfig(max_new_tokens=4), draft=draft, mode="sd")
    assert all(s.t_target is None for s in untimed.steps)
