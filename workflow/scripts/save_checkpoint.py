"""Save an arch: spec (a config of data/architectures with its overrides) as a Hugging Face
checkpoint folder with random bf16 weights (seeded by the spec's seed), for an engine that loads
folders, vLLM (workflow/scripts/gpu_check.sh):

    python workflow/scripts/save_checkpoint.py "arch:qwen2-57b-a14b:num_hidden_layers=2" FOLDER
"""

import sys

import torch
from moesd.models import checkpoint
from moesd.models.spec import parse_spec
from transformers import AutoConfig, AutoModelForCausalLM


def main(text: str, folder: str) -> None:
    spec = parse_spec(text)
    if spec.kind != "arch":
        raise SystemExit(f"save_checkpoint: {text} is no arch: spec")
    config = dict(checkpoint.hf_config(spec))
    config = AutoConfig.for_model(config.pop("model_type"), **config)
    torch.manual_seed(spec.seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    print(f"{text}: {sum(p.numel() for p in model.parameters()) / 1e9:.2f} B parameters -> {folder}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
