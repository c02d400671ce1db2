"""EAGLE-1's head of a Mixtral target for vLLM (config/paper.yaml's mixtral-eagle pair:
yuhuili/EAGLE-mixtral-instruct-8x7B, arXiv 2505.19645 Sec. 3).

vLLM names an EAGLE head's class after its config's architecture (EAGLEConfig: "Eagle" +
MixtralForCausalLM) and has no EagleMixtralForCausalLM, so it built the head as a Mixtral model
and refused its weights ("no module or parameter named 'layers.0.mlp'"; found by the rehearsal,
docs/rehearsal.md). An EAGLE-1 head is one Llama decoder layer whatever its target (EAGLE's
eagle/model/cnets.py: fc over [token embedding, target feature], the layer without its input
norm, a dense SiLU MLP), which vLLM has as EagleLlamaForCausalLM; EAGLE-1's fc has a bias
(cnets.Model's default, bias=True, unless the head's config says `"bias": false`), which vLLM's
fc lacks. This class is that head with the bias kept, registered by moesd_vllm_plugin.
"""

from __future__ import annotations

from vllm.model_executor.layers.linear import ReplicatedLinear
from vllm.model_executor.models.llama_eagle import EagleLlamaForCausalLM
from vllm.model_executor.models.utils import get_draft_quant_config, maybe_prefix


class EagleMixtralForCausalLM(EagleLlamaForCausalLM):
    def __init__(self, *, vllm_config, prefix: str = ""):
        super().__init__(vllm_config=vllm_config, prefix=prefix)
        if getattr(self.config, "bias", True):
            width = self.config.hidden_size
            self.model.fc = ReplicatedLinear(
                input_size=width * 2,
                output_size=width,
                bias=True,
                params_dtype=vllm_config.model_config.dtype,
                quant_config=get_draft_quant_config(vllm_config),
                prefix=maybe_prefix(maybe_prefix(prefix, "model"), "fc"),
                return_bias=False,
            )
