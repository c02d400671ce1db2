"""Sampling and the acceptance rule of speculative decoding.

Lossless rejection sampling (Leviathan et al. 2023; Chen et al. 2023): draft token d_i drawn
from q_i is accepted with probability min(1, p_i(d_i) / q_i(d_i)); at the first rejection the
replacement is drawn from norm(max(p_i - q_i, 0)); when all gamma drafts are accepted a bonus
token is drawn from p_(gamma+1). The output then follows the target distribution exactly.
Greedy decoding is the temperature-0 limit: p and q are one-hot at their argmax.

Forced acceptance (latency-only runs on random weights): each draft token is kept with
probability alpha, independently; the token after the accepted run comes from p. Outputs are
then not the target's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def probabilities(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(logits / T) in fp32 (T > 0)."""
    return torch.softmax(logits.float() / temperature, dim=-1)


def sample(logits: torch.Tensor, temperature: float, generator: torch.Generator) -> torch.Tensor:
    """One token per row of logits [..., V]: argmax at T = 0, else a draw from softmax(logits/T)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = probabilities(logits, temperature)
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).view(probs.shape[:-1])


@dataclass
class Verdict:
    accepted: torch.Tensor  # [B] number of leading draft tokens kept, 0..gamma
    next_token: torch.Tensor  # [B] the correction (or bonus) token that follows them


def _leading_run(accept: torch.Tensor) -> torch.Tensor:
    """Length of the run of True at the start of each row of accept [B, gamma]."""
    return torch.cumprod(accept.to(torch.long), dim=1).sum(dim=1)


def verify(
    target_logits: torch.Tensor,
    draft_logits: torch.Tensor,
    drafts: torch.Tensor,
    temperature: float,
    generator: torch.Generator,
    *,
    forced_alpha: float | None = None,
) -> Verdict:
    """target_logits [B, gamma+1, V] (position i scores draft i+1; the last is the bonus),
    draft_logits [B, gamma, V] (the distributions the drafts were drawn from), drafts [B, gamma]."""
    b, gamma = drafts.shape
    rows = torch.arange(b, device=drafts.device)
    if forced_alpha is not None:
        draws = torch.rand(b, gamma, generator=generator, device=drafts.device)
        accepted = _leading_run(draws < forced_alpha)
        return Verdict(accepted, sample(target_logits[rows, accepted], temperature, generator))
    if temperature == 0:
        choice = target_logits.argmax(dim=-1)  # [B, gamma+1]
        accepted = _leading_run(drafts == choice[:, :gamma])
        return Verdict(accepted, choice[rows, accepted])
    p = probabilities(target_logits, temperature)  # [B, gamma+1, V]
    q = probabilities(draft_logits, temperature)  # [B, gamma, V]
    p_d = p[:, :gamma].gather(-1, drafts[..., None])[..., 0]  # [B, gamma] p_i(d_i)
    q_d = q.gather(-1, drafts[..., None])[..., 0]  # q_i(d_i) > 0: d_i was drawn from q_i
    draws = torch.rand(b, gamma, generator=generator, device=drafts.device)
    accepted = _leading_run(draws < (p_d / q_d).clamp(max=1.0))
    # residual max(p - q, 0) at the first rejection; p itself after a full run (the bonus)
    q_pad = torch.cat([q, torch.zeros_like(q[:, :1])], dim=1)  # [B, gamma+1, V]
    residual = (p - q_pad).clamp(min=0.0)[rows, accepted]  # [B, V]
    mass = residual.sum(dim=-1, keepdim=True)
    fallback = p[rows, accepted]  # p == q exactly leaves no residual; any draw from p is then exact
    dist = torch.where(mass > 0, residual / mass.clamp(min=1e-30), fallback)
    return Verdict(accepted, torch.multinomial(dist, 1, generator=generator)[:, 0])
