"""Batched autoregressive and speculative decoding on one loop skeleton.

    generate(stepper, prompts):  prefill -> first token; then step -> append -> stop, until every
                                 sequence has max_new_tokens tokens (or its EOS); or, with
                                 batching "continuous", until the batch has B * max_new_tokens

A stepper owns the caches and the last sampled token of each sequence:
    ARStepper: one target forward per step, one new token per sequence.
    SDStepper: one round per step:
        1. draft: gamma draft forwards propose d_1..d_gamma per sequence
        2. verify: one target forward scores [last, d_1..d_gamma] (gamma + 1 positions)
        3. accept: rejection sampling keeps a prefix d_1..d_n and adds one token
        4. roll back: each sequence's target and draft cache lengths move to what was kept
Invariant between steps: the target cache holds every token but `last`; the draft cache holds
one token fewer than the target's, and `anchor` is the target's final token (last accepted draft,
or the previous `last`). A round's first draft forward reads [anchor, last]: one fixed [B, 2]
shape whatever was accepted (re-reading anchor rewrites its cache entry with the same values), so
the draft catches up without a host synchronisation and a CUDA graph can replay it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from moesd.decode.sampling import sample, verify
from moesd.models import KVCache, Transformer
from moesd.timing import Timer

BATCHING = ("static", "continuous")


@dataclass
class GenerationConfig:
    max_new_tokens: int = 64
    temperature: float = 0.0
    gamma: int = 4
    acceptance: str = "target"  # "target" (rejection sampling) or "forced"
    alpha: float | None = None  # forced acceptance probability (drafts drawn uniformly: SDStepper._propose)
    stop_at_eos: bool = True
    # "static": each sequence stops at max_new_tokens and waits, frozen, for the batch's slowest
    # (under SD a batch runs as many rounds as its unluckiest sequence needs). "continuous": no
    # sequence waits; the batch stops once it holds B * max_new_tokens new tokens in all, as a
    # server whose finished slots are refilled at once (a sequence stops at its EOS or at
    # 1.5 * max_new_tokens, the room its cache has: only a far luckier sequence than the batch's
    # mean reaches it).
    batching: str = "static"
    timing: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.gamma < 1:
            raise ValueError(f"gamma must be >= 1, got {self.gamma}")
        if self.batching not in BATCHING:
            raise ValueError(f"batching must be one of {BATCHING}, got {self.batching!r}")
        if self.acceptance not in ("target", "forced"):
            raise ValueError(f"acceptance must be 'target' or 'forced', got {self.acceptance!r}")
        if self.acceptance == "forced" and not (self.alpha is not None and 0 <= self.alpha <= 1):
            raise ValueError(f"forced acceptance needs alpha in [0, 1], got {self.alpha}")


@dataclass
class StepRecord:
    """One step: AR (one token per sequence) or one SD round."""

    new_tokens: list[list[int]]
    accepted: list[int] | None = None  # SD: draft tokens kept per sequence
    t_draft: float | None = None  # T_D: all gamma draft forwards of the round
    t_target: float | None = None  # T_T(B, 1) for AR, T_T(B, gamma+1) for SD
    t_reject: float | None = None  # T_reject: the acceptance rule
    active: list[bool] = field(default_factory=list)


@dataclass
class GenerationResult:
    mode: str
    output_ids: list[list[int]]
    steps: list[StepRecord]
    prefill_seconds: float  # always timed: one synchronisation per generation
    target_outputs: bool  # False under forced acceptance: outputs are not the target's
    expert_impl: str

    @property
    def accepted_per_sequence(self) -> list[list[int]]:
        """Per sequence, the accepted count of every SD round it was active in."""
        out = [[] for _ in self.output_ids]
        for step in self.steps:
            for i, (n, active) in enumerate(zip(step.accepted or [], step.active, strict=False)):
                if active:
                    out[i].append(n)
        return out


def forward_ragged(model: Transformer, cache: KVCache, sequences: list[list[int]], pad: int = 0) -> torch.Tensor:
    """Feed each sequence its own number of new tokens (right-padded to the longest), commit
    exactly those, and return the logits at each sequence's last new token: [B, V]."""
    lengths = torch.tensor([len(s) for s in sequences], device=model.device)
    width = int(lengths.max())
    ids = torch.full((len(sequences), width), pad, dtype=torch.long, device=model.device)
    for i, seq in enumerate(sequences):
        ids[i, : len(seq)] = torch.as_tensor(seq, device=model.device)
    logits = model(ids, cache, last_only=lengths - 1)
    cache.advance(lengths)
    return logits


class PrefillMemo:
    """Prefills kept for reuse: a prompt batch is prefilled once per model and cache size, and
    every later generation of that batch starts from a copy of the prefilled cache and its logits
    (the values a recomputed prefill gives: the same weights, inputs and shapes). For timing many
    generations of one batch when only their decode counts (latency.e2e.prefill: once); such a
    generation's prefill_seconds is then the copy's time."""

    def __init__(self):
        self._kept = {}

    def __call__(self, model: Transformer, prompts: list[list[int]], max_len: int) -> tuple[KVCache, torch.Tensor]:
        key = (id(model), max_len, tuple(map(tuple, prompts)))
        if key not in self._kept:
            cache, logits = prefilled(model, prompts, max_len)
            self._kept[key] = (model, cache.clone(), logits.clone())  # the model kept: its id stays its own
            return cache, logits
        _, kept, logits = self._kept[key]
        cache = model.new_cache(len(prompts), max_len)
        cache.load(kept)
        return cache, logits.clone()


def prefilled(model: Transformer, prompts: list[list[int]], max_len: int, memo: PrefillMemo | None = None):
    """A new cache of MODEL holding PROMPTS, and the logits at each prompt's last token: computed,
    or copied from MEMO where it has them."""
    if memo is not None:
        return memo(model, prompts, max_len)
    cache = model.new_cache(len(prompts), max_len)
    return cache, forward_ragged(model, cache, prompts)


class ARStepper:
    mode = "ar"

    def __init__(self, target: Transformer, config: GenerationConfig, generator: torch.Generator, memo=None):
        self.target, self.config, self.generator, self.memo = target, config, generator, memo
        self.timer = Timer(target.device, config.timing)

    def prefill(self, prompts: list[list[int]], max_len: int) -> torch.Tensor:
        self.cache, logits = prefilled(self.target, prompts, max_len, self.memo)
        self.last = sample(logits, self.config.temperature, self.generator)  # [B]
        return self.last

    def step(self, active: torch.Tensor) -> StepRecord:
        start = self.timer.now()
        logits = self.target(self.last[:, None], self.cache)[:, 0]  # [B, V]
        self.cache.advance(active.long())  # finished sequences stay in the batch, frozen
        self.last = sample(logits, self.config.temperature, self.generator)
        end = self.timer.now()
        return StepRecord([[t] for t in self.last.tolist()], t_target=Timer.since(start, end))


class SDStepper:
    mode = "sd"

    def __init__(
        self, target: Transformer, draft: Transformer, config: GenerationConfig, generator: torch.Generator, memo=None
    ):
        if target.cfg.vocab_size != draft.cfg.vocab_size:
            raise ValueError(
                f"target and draft vocabularies differ ({target.cfg.vocab_size} vs {draft.cfg.vocab_size})"
            )
        self.target, self.draft, self.config, self.generator = target, draft, config, generator
        self.memo = memo
        self.timer = Timer(target.device, config.timing)
        self.forced = config.alpha if config.acceptance == "forced" else None

    def prefill(self, prompts: list[list[int]], max_len: int) -> torch.Tensor:
        self.cache, logits = prefilled(self.target, prompts, max_len, self.memo)
        self.draft_cache, _ = prefilled(self.draft, prompts, max_len, self.memo)
        self.draft_cache.set_lengths(self.draft_cache.lengths - 1)  # the invariant: re-read below
        self.anchor = torch.tensor([p[-1] for p in prompts], device=self.target.device)  # [B]
        self.last = sample(logits, self.config.temperature, self.generator)  # [B]
        return self.last

    def _propose(self) -> tuple[torch.Tensor, torch.Tensor]:
        """1. Draft: gamma tokens per sequence, and the logits they were drawn from.

        Under forced acceptance the draft still runs every forward, but its tokens are drawn
        uniformly from the vocabulary: a random-weight draft copies its input token (or repeats
        one), and gamma copies of one token route to one set of experts, so the verification
        forward would read far fewer expert weights than on text (Eq. 8's independent tokens)."""
        gamma, temp = self.config.gamma, self.config.temperature
        logits = self.draft(torch.stack([self.anchor, self.last], dim=1), self.draft_cache)[:, -1]  # [B, V]
        self.draft_cache.advance(2)
        drafts, draft_logits = [], []
        for i in range(gamma):
            if self.forced is None:
                token = sample(logits, temp, self.generator)
            else:
                token = torch.randint(
                    0, logits.shape[-1], logits.shape[:1], generator=self.generator, device=logits.device
                )
            drafts.append(token)
            draft_logits.append(logits)
            if i < gamma - 1:
                logits = self.draft(token[:, None], self.draft_cache)[:, 0]
                self.draft_cache.advance(1)
        return torch.stack(drafts, dim=1), torch.stack(draft_logits, dim=1)  # [B, gamma], [B, gamma, V]

    def step(self, active: torch.Tensor) -> StepRecord:
        t0 = self.timer.now()
        drafts, draft_logits = self._propose()
        t1 = self.timer.now()
        # 2. verify: the target scores last, d_1..d_gamma in one forward
        target_logits = self.target(torch.cat([self.last[:, None], drafts], dim=1), self.cache)  # [B, gamma+1, V]
        t2 = self.timer.now()
        # 3. accept
        verdict = verify(
            target_logits, draft_logits, drafts, self.config.temperature, self.generator, forced_alpha=self.forced
        )
        t3 = self.timer.now()
        # 4. roll back: keep last + d_1..d_n in the target, one token fewer in the draft (the
        # invariant). Finished sequences stay in the batch (fixed shapes) but keep nothing.
        n = verdict.accepted
        self.cache.advance((n + 1) * active.long())
        self.draft_cache.set_lengths(self.cache.lengths - 1)
        self.anchor = torch.cat([self.last[:, None], drafts], dim=1).gather(1, n[:, None])[:, 0]  # last or d_n
        self.last = verdict.next_token
        kept = [d[:k] + [t] for d, k, t in zip(drafts.tolist(), n.tolist(), self.last.tolist(), strict=True)]
        return StepRecord(
            kept,
            accepted=n.tolist(),
            t_draft=Timer.since(t0, t1),
            t_target=Timer.since(t1, t2),
            t_reject=Timer.since(t2, t3),
        )


def per_sequence_tokens(config: GenerationConfig) -> int:
    """The most new tokens one sequence may take (continuous batching: half as many again)."""
    return config.max_new_tokens + (config.max_new_tokens // 2 if config.batching == "continuous" else 0)


def cache_length(prompts: list[list[int]], config: GenerationConfig) -> int:
    """The cache slots a generation of PROMPTS needs: a sequence can finish mid-round with up to
    gamma tokens past its budget, and a finished sequence's slots are still written (not kept)
    for one more round of gamma + 1."""
    return max(len(p) for p in prompts) + per_sequence_tokens(config) + 2 * config.gamma + 2


def generate(stepper, prompts: list[list[int]], config: GenerationConfig, eos_ids=()) -> GenerationResult:
    """The shared loop: prefill, then step / append / stop until every sequence is done."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    continuous = config.batching == "continuous"
    per_sequence = per_sequence_tokens(config)
    batch_budget = len(prompts) * config.max_new_tokens if continuous else float("inf")
    max_len = cache_length(prompts, config)
    clock = Timer(stepper.target.device, enabled=True)  # prefill ends in a host read anyway
    start = clock.now()
    first = stepper.prefill(prompts, max_len).tolist()
    prefill_seconds = Timer.since(start, clock.now())
    eos = set(eos_ids) if config.stop_at_eos else set()
    outputs = [[t] for t in first]
    done = [t in eos or per_sequence <= 1 for t in first]
    steps = []
    while not all(done) and sum(map(len, outputs)) < batch_budget:
        record = stepper.step(torch.tensor([not d for d in done], device=stepper.target.device))
        record.active = [not d for d in done]
        for i, tokens in enumerate(record.new_tokens):
            if done[i]:
                continue
            for t in tokens:
                outputs[i].append(t)
                if t in eos or len(outputs[i]) >= per_sequence:
                    done[i] = True
                    break
        steps.append(record)
    impl = stepper.target.expert_impl
    return GenerationResult(stepper.mode, outputs, steps, prefill_seconds, config.acceptance == "target", impl)


def decode(
    target: Transformer,
    prompts: list[list[int]],
    config: GenerationConfig,
    draft: Transformer | None = None,
    mode: str = "ar",
    prefill_memo: PrefillMemo | None = None,
) -> GenerationResult:
    """Autoregressive (mode "ar") or speculative ("sd", needs a draft) decoding of PROMPTS; their
    prefill taken from PREFILL_MEMO where it holds it (PrefillMemo)."""
    return generate(stepper_for(target, config, draft, mode, prefill_memo), prompts, config, target.cfg.eos_token_id)


def stepper_for(target, config: GenerationConfig, draft=None, mode: str = "ar", prefill_memo=None):
    """The stepper of MODE, seeded by CONFIG, its prefills from PREFILL_MEMO where given."""
    generator = torch.Generator(device=target.device).manual_seed(config.seed)
    if mode == "ar":
        return ARStepper(target, config, generator, prefill_memo)
    if mode == "sd":
        if draft is None:
            raise ValueError("speculative decoding needs a draft model")
        return SDStepper(target, draft, config, generator, prefill_memo)
    raise ValueError(f"mode must be 'ar' or 'sd', got {mode!r}")
