"""One measurement of the latency stage: T_T(B, s), T_D(B, 1), T_reject(B) of Eq. 2-4 of arXiv
2505.19645, and end-to-end T_AR / T_SD.

    T_T(B, s)     target forward of s new tokens for each of B sequences, over a KV cache that
                  already holds a context (lengths drawn from a prompt set, or fixed; ids from the
                  prompt set for trained models, random for random-weight ones)
    T_D(B, 1)     draft forward of one token per sequence (the same measurement, role "draft")
    T_reject(B)   the acceptance rule on [B, gamma+1, V] target and [B, gamma, V] draft logits
    T_AR, T_SD    whole generations of the same prompts, batch and output length

Protocol (the paper's: 10 runs, last 5 averaged; here every kept round is recorded and the
tables carry mean-of-last-5, median and spread): warm-up calls, then timed rounds, each call
bracketed by a device synchronisation; nothing else in the timed region; a fixed CPU thread
count. Every (B, s) of one model takes turns within each round (the s of one B at a time on a
GPU; latency.rounds.interleave), each call on fresh tokens, and so do an e2e point's AR and SD; a
disturbed round is measured again and rounds are added until the medians are precise
(latency.rounds, moesd.timing.RoundProtocol; docs/timing.md). The distinct
experts per MoE layer at each point come from extra, untimed, instrumented calls. Each point is
stored once by moesd.latency.store and laid out as tables by moesd.latency.tables.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from moesd.decode.engine import forward_ragged
from moesd.decode.sampling import verify
from moesd.timing import RoundProtocol, timed_interleaved, timed_rounds


def device_of(lat: dict) -> str:
    """latency.device resolved (auto: cuda when available); cuda without a CUDA device is an error."""
    if lat["device"] == "cuda" and not torch.cuda.is_available():
        raise ValueError("latency.device: cuda, but this torch sees no CUDA device")
    return ("cuda" if torch.cuda.is_available() else "cpu") if lat["device"] == "auto" else lat["device"]


def compiles(lat: dict, role: str, device: str) -> bool:
    """latency.compile_draft: a draft's forward compiled (moesd.models.compiled), on a CPU only."""
    return bool(lat["compile_draft"]) and role == "draft" and device == "cpu"


def round_protocol(lat: dict) -> RoundProtocol:
    """latency.rounds as a RoundProtocol (moesd.timing): adaptive, or the paper's fixed repeats."""
    rounds, repeats = lat["rounds"], lat["repeats"]
    if not rounds["adaptive"]:
        return RoundProtocol.fixed(repeats)
    cap = max(repeats, rounds["max_repeats"] or 3 * repeats)
    return RoundProtocol(repeats, cap, rounds["precision"], rounds["disturbed"], rounds["min_excess"])


def rounds_record(rounds) -> dict:
    """What a point keeps of its rounds besides the seconds (moesd.timing.Rounds)."""
    return {
        "switches": rounds.switches,
        "steal": rounds.steal,
        "remeasured": rounds.remeasured,
        "rounds_taken": rounds.taken,
    }


def context_lengths(batch: int, spec: dict, prompt_lengths: list[int] | None, seed: int) -> list[int]:
    """Context length per sequence: drawn from the prompt set's lengths, or the fixed length; each
    at most max_length (validation holds a fixed length within it)."""
    if spec["source"] == "fixed" or not prompt_lengths:
        return [min(spec["length"], spec["max_length"])] * batch
    rng = random.Random(seed)
    return [min(rng.choice(prompt_lengths), spec["max_length"]) for _ in range(batch)]


class TokenDraw:
    """Token ids for timed forwards: uniform over the vocabulary, or consecutive windows of a prompt
    set (its prompts concatenated in a seeded order and cycled), so that a trained router sees the
    inputs it was trained on rather than noise. Each call returns the next N ids."""

    def __init__(self, vocab: int, seed: int, prompts: list[list[int]] | None = None):
        self.vocab, self.gen = vocab, torch.Generator().manual_seed(seed)
        self.stream: list[int] = []
        if prompts:
            order = random.Random(seed).sample(range(len(prompts)), len(prompts))
            self.stream = [token for i in order for token in prompts[i]]
            if not self.stream or max(self.stream) >= vocab:
                raise ValueError(
                    f"prompt token ids reach {max(self.stream, default=-1)}, beyond the model's vocabulary {vocab}"
                )
        self.position = 0

    def __call__(self, n: int) -> list[int]:
        if not self.stream:
            return torch.randint(0, self.vocab, (n,), generator=self.gen).tolist()
        out = []
        while len(out) < n:
            take = self.stream[self.position : self.position + n - len(out)]
            out += take
            self.position = (self.position + len(take)) % len(self.stream)
        return out


@torch.no_grad()
def forward_point(
    model,
    batch: int,
    tokens: list[int],
    contexts: list[int],
    warmup: int,
    protocol: RoundProtocol,
    seed: int,
    prompts: list[list[int]] | None = None,
):
    """T(B, s) for every s in TOKENS over one cache holding CONTEXTS, the s taking turns within
    each round (their ratios, the target efficiency, are measured side by side), and the distinct
    experts per layer at each s: `forward_points` for one batch size, its ids drawn with SEED."""
    return forward_points(model, {batch: contexts}, tokens, warmup, protocol, prompts, seeds={batch: seed})[batch]


@torch.no_grad()
def forward_points(
    model,
    contexts: dict[int, list[int]],
    tokens: list[int],
    warmup: int,
    protocol: RoundProtocol,
    prompts: list[list[int]] | None = None,
    seeds: dict[int, int] | None = None,
) -> dict[int, dict]:
    """T(B, s) for every batch size B of CONTEXTS (B -> its sequences' context lengths, one cache
    each) and every s in TOKENS, all of them taking turns within each round: a round times every
    (B, s) once, so a point's rounds are spread over the whole sweep of the model and a slow spell
    of a shared machine (tens of seconds, docs/timing.md) hits every point alike instead of all the
    rounds of one. The rounds follow PROTOCOL (moesd.timing.RoundProtocol): disturbed rounds
    measured again, rounds added until the medians are precise. Returns, per B, one part per s
    (its seconds and the distinct experts per layer, the mean over up to three of its inputs in
    extra untimed calls) and the rounds' record, `rounds_with` naming the batch sizes that shared
    them (a resample draws those together, moesd.bootstrap). Ids come from PROMPTS (a prompt set
    in the model's tokenizer) where given, else uniformly random (`TokenDraw`), seeded per B
    (SEEDS, else B).

    Every call feeds fresh tokens, as every decoding step does: repeating one input would route
    every repeat to the same experts and time them from a warm cache (a CPU's L3 holds a sizeable
    share of a small MoE's active experts). On the default MoE that made T_T(1, 1) 13.7 ms
    against 20.8 ms with fresh tokens; a generation's AR steps took 23 ms."""
    caches, new, calls = {}, {}, {}
    for batch, lengths in contexts.items():
        draw = TokenDraw(model.cfg.vocab_size, (seeds or {}).get(batch, batch), prompts)
        caches[batch] = model.new_cache(batch, max(lengths) + max(tokens))
        forward_ragged(model, caches[batch], [draw(n) for n in lengths])
        for s in tokens:
            shape = (warmup + protocol.max_rounds, batch, s)
            new[batch, s] = torch.tensor(draw(int(np.prod(shape)))).view(shape).to(model.device)
            # each call a fresh input over the same cache: its lengths never advance
            turns, cache = iter(new[batch, s]), caches[batch]
            calls[batch, s] = lambda turns=turns, cache=cache: model(next(turns), cache)
    rounds = timed_rounds(calls, model.device, warmup, protocol)
    # the batch sizes that shared these rounds: a resample draws them together (moesd.bootstrap)
    turns = {"rounds_with": f"B={','.join(map(str, sorted(caches)))}"} if len(caches) > 1 else {}
    points = {}
    for batch, cache in caches.items():
        parts = []
        for s in tokens:
            distinct = []
            if model.cfg.is_moe:
                with model.router_recording() as recorded:
                    for ids in new[batch, s][:3]:
                        model(ids, cache)
                distinct = torch.stack(recorded).gt(0).sum(dim=2).float().mean(dim=0).tolist()
            parts.append({"s": s, "seconds": rounds.seconds[batch, s], "distinct_experts": distinct})
        points[batch] = {"per_s": parts} | rounds_record(rounds) | turns
    return points


def per_s_records(record: dict, tokens: list[int]) -> list[dict]:
    """One record per s from a forward point (a failed point: one failed record per s)."""
    base = {k: v for k, v in record.items() if k != "per_s"}
    parts = record.get("per_s") or [{"s": s} for s in tokens]
    return [base | part for part in parts]


@torch.no_grad()
def reject_point(
    batch: int, gamma: int, vocab: int, temperature: float, device, warmup: int, protocol: RoundProtocol, seed: int
):
    gen = torch.Generator(device=device).manual_seed(seed)
    target = torch.randn(batch, gamma + 1, vocab, generator=gen, device=device)
    draft = torch.randn(batch, gamma, vocab, generator=gen, device=device)
    drafts = torch.randint(0, vocab, (batch, gamma), generator=gen, device=device)
    rounds = timed_rounds({None: lambda: verify(target, draft, drafts, temperature, gen)}, device, warmup, protocol)
    return {"seconds": rounds.seconds[None]} | rounds_record(rounds)


def sequence_acceptance(sequences: list[list[int]]) -> dict:
    """Each decoded sequence's accepted tokens (accepted drafts + 1 per round) and rounds, ';'-joined,
    so that sigma can be resampled over the sequences (the prompts) of an end-to-end point."""
    return {
        "accepted_sums": ";".join(str(sum(n + 1 for n in seq)) for seq in sequences),
        "accepted_rounds": ";".join(str(len(seq)) for seq in sequences),
    }


def e2e_point(target, draft, batches, *, mode, **settings):
    """Wall time of whole generations of BATCHES in one MODE (ar or sd): `e2e_points` of one mode."""
    return e2e_points(target, draft, batches, modes=(mode,), **settings)[mode]


def e2e_points(
    target,
    draft,
    batches,
    *,
    modes,
    gamma,
    temperature,
    max_new_tokens,
    batching,
    acceptance,
    alpha,
    warmup,
    repeats,
    seed,
    prefill="each",
):
    """Wall time of whole generations of BATCHES (lists of prompts of B sequences) one after
    another, prefill included, as a serving system sees a prompt set, in each of MODES (ar, sd);
    batch j samples with seed + j. The modes' repeats take turns (AR, SD, AR, SD, ...), so that a
    slow spell of a shared machine hits both alike and their ratio, the end-to-end speedup, is
    measured side by side. A warm-up decodes the first batch only in each mode (every batch
    under a compiled draft). Returns one record per mode.

    PREFILL "once" (latency.e2e.prefill) prefills each batch once, before the timed repeats, and
    every generation starts from a copy of that cache (moesd.decode.PrefillMemo): the same tokens,
    and the decode timed as before, but the prefill's share of `seconds` is then only the copy's
    (`prefill_seconds`), so only the decode time (analysis.e2e_time: decode) reads true."""
    from dataclasses import replace

    from moesd.decode import GenerationConfig, PrefillMemo, decode
    from moesd.decode.engine import cache_length, stepper_for

    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        gamma=gamma,
        acceptance=acceptance,
        alpha=alpha,
        stop_at_eos=False,  # the same output length for AR and SD
        batching=batching,
        seed=seed,
    )
    configs = [replace(config, seed=seed + j) for j in range(len(batches))]
    results = {mode: [] for mode in modes}
    memo = PrefillMemo() if prefill == "once" else None
    for batch in batches if memo is not None else []:  # every batch prefilled before anything is timed
        for mode in modes:  # by the mode's own stepper: a draft the target cannot verify fails here
            stepper_for(target, config, draft, mode, memo).prefill(batch, cache_length(batch, config))

    def run(mode, batch, config):
        return decode(target, batch, config, draft=draft if mode == "sd" else None, mode=mode, prefill_memo=memo)

    for mode in modes:
        # a compiled draft compiles once per cache size (moesd.models.compiled): every batch warms up
        warm = len(batches) if mode == "sd" and getattr(draft, "compiled", False) else 1
        for _ in range(warmup):
            for job in zip(batches[:warm], configs[:warm], strict=True):
                run(mode, *job)
    calls = {
        mode: lambda mode=mode: results[mode].append([run(mode, *job) for job in zip(batches, configs, strict=True)])
        for mode in modes
    }
    seconds = timed_interleaved(calls, target.device, 0, repeats)
    turns = {"rounds_with": f"mode={','.join(modes)}"} if len(modes) > 1 else {}  # resampled together
    return {
        mode: _e2e_record(results[mode], seconds[mode], mode, gamma) | turns | {"prefill": prefill} for mode in modes
    }


def _e2e_record(results: list, seconds: list[float], mode: str, gamma: int) -> dict:
    """One mode's e2e point from its timed repeats' decode results."""
    prefill = [sum(r.prefill_seconds for r in call) for call in results]  # inside each timed repeat
    last = results[-1]
    tokens = sum(len(o) for r in last for o in r.output_ids)
    sequences = [seq for r in last for seq in r.accepted_per_sequence] if mode == "sd" else []
    accepted = [n for seq in sequences for n in seq]
    sigma = float(np.mean(np.asarray(accepted) + 1) / (gamma + 1)) if accepted else np.nan
    return {
        "seconds": seconds,
        "prefill_seconds": prefill,
        "tokens": tokens,
        "sigma": sigma,
        **sequence_acceptance(sequences),
        "target_outputs": last[0].target_outputs,
        "expert_impl": last[0].expert_impl,
        "distinct_experts": [],
    }
