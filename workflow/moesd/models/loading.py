"""Weight loading: the lean decoder built from a model spec (moesd.models.spec), with the
checkpoint's weights or seeded random ones. Remote code is never trusted: only the families
moesd implements load.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from moesd.devices import default_device, default_dtype
from moesd.models import checkpoint
from moesd.models.folder_check import check_folder
from moesd.models.model_config import ModelConfigError, from_hf
from moesd.models.moe import MoE
from moesd.models.spec import ModelSpecError, parse_spec
from moesd.models.transformer import Transformer


def load_model(
    spec_text: str,
    *,
    device=None,
    dtype=None,
    expert_impl: str = "auto",
    attention_impl: str = "auto",
    linear_impl: str = "auto",
    cuda_graphs: bool = False,
    compile: bool = False,
) -> Transformer:
    """Build the lean decoder for SPEC_TEXT with its weights (or seeded random ones for arch:).
    cuda_graphs: capture fixed-shape forwards on CUDA (ignored elsewhere). expert_impl,
    attention_impl and linear_impl choose the kernels (auto: per device, moesd.models.moe,
    .attention and .linear). compile: torch.compile the fixed-shape forward (a dense model on a
    CPU, weights unpacked; moesd.models.compiled), refused in one line where it cannot."""
    spec = parse_spec(spec_text)
    device = device or default_device()
    dtype = dtype or default_dtype(device)
    raw = checkpoint.hf_config(spec)
    try:
        cfg = from_hf(raw)
    except ModelConfigError as error:
        raise ModelSpecError(f"model spec {spec}: {error}") from None
    except KeyError as error:
        raise ModelSpecError(f"model spec {spec}: its config lacks {error.args[0]!r}") from None
    if compile:
        from moesd.models.compiled import compile_problem

        problem = compile_problem(cfg, device, linear_impl)
        if problem:
            raise ModelSpecError(f"model spec {spec}: cannot compile it: {problem}")
        linear_impl = "plain"
    if spec.kind != "arch":
        check_folder(checkpoint.folder(spec))  # the files, before any tensor is made
    with torch.device("meta"):
        model = Transformer(
            cfg,
            dtype=dtype,
            device="meta",
            expert_impl=expert_impl,
            attention_impl=attention_impl,
            linear_impl=linear_impl,
        )
    model = model.to_empty(device=device)
    if spec.kind == "arch":
        init_random(model, spec.seed, raw.get("initializer_range", 0.02))
    else:
        load_checkpoint(model, checkpoint.folder(spec))
    model.spec = spec_text
    model.cuda_graphs = cuda_graphs
    model.compiled = compile
    return model.finalize()


@torch.no_grad()
def init_random(model: Transformer, seed: int, std: float = 0.02, embed_std: float = 1.0) -> None:
    """Seeded random weights: normal(0, std) matrices, unit norms, zero biases, and token
    embeddings at normal(0, embed_std).

    Unit-scale embeddings keep each token's identity in the residual stream. Random attention
    averages the context almost uniformly; at std 0.02 that average outweighs a token's own
    embedding about four to one, so the new tokens of one sequence all route to the same few
    experts (at B = 1, five tokens of a top-8-of-64 MoE reached 17-20 distinct experts, not
    Eq. 8's 31) and a verification forward reads fewer expert weights than a trained model's
    would. At unit scale they reach 27. (A model with tied embeddings then predicts its own input
    token; forced-acceptance drafts are drawn uniformly for that reason, SDStepper._propose.)"""
    gen = torch.Generator(device=model.device).manual_seed(seed)
    for name, param in model.named_parameters():
        if name.endswith("bias"):
            param.zero_()
        elif "norm" in name:
            param.fill_(1.0)
        else:
            param.normal_(0.0, embed_std if name == "embed.weight" else std, generator=gen)


# ---- Hugging Face checkpoint names -> ours --------------------------------------------------------
_LAYER = r"(?:model\.)?(?:decoder\.)?layers\.(\d+)\."
_RULES = [
    (r"(?:model\.)?(?:decoder\.)?embed_tokens\.weight", "embed.weight"),
    (r"(?:model\.)?decoder\.embed_positions\.weight", "pos_embed.weight"),
    (r"(?:model\.)?decoder\.project_in\.weight", "project_in.weight"),
    (r"(?:model\.)?decoder\.project_out\.weight", "project_out.weight"),
    (r"(?:model\.)?(?:decoder\.final_layer_norm|norm)\.(weight|bias)", r"norm.\1"),
    (r"lm_head\.weight", "lm_head.weight"),
    (_LAYER + r"self_attn\.(q|k|v|o)_proj\.(weight|bias)", r"layers.\1.attn.\2.\3"),
    (_LAYER + r"self_attn\.out_proj\.(weight|bias)", r"layers.\1.attn.o.\2"),
    (_LAYER + r"(?:input_layernorm|self_attn_layer_norm)\.(weight|bias)", r"layers.\1.norm1.\2"),
    (_LAYER + r"(?:post_attention_layernorm|final_layer_norm)\.(weight|bias)", r"layers.\1.norm2.\2"),
    (_LAYER + r"(fc1|fc2)\.(weight|bias)", r"layers.\1.mlp.\2.\3"),
    (_LAYER + r"mlp\.(gate|up|down)_proj\.weight", r"layers.\1.mlp.\2.weight"),
    (_LAYER + r"(?:mlp|block_sparse_moe)\.gate\.weight", r"layers.\1.mlp.router.weight"),
    (_LAYER + r"mlp\.shared_expert\.(gate|up|down)_proj\.weight", r"layers.\1.mlp.shared.\2.weight"),
    (_LAYER + r"mlp\.shared_expert_gate\.weight", r"layers.\1.mlp.shared_gate.weight"),
]
_EXPERT = re.compile(
    _LAYER + r"(?:mlp|block_sparse_moe)\.experts\.(\d+)\.(gate_proj|up_proj|down_proj|w1|w3|w2)\.weight"
)
_FUSED = re.compile(_LAYER + r"mlp\.experts\.(gate_up_proj|down_proj)")
_PART = {"gate_proj": "gate", "w1": "gate", "up_proj": "up", "w3": "up", "down_proj": "down", "w2": "down"}


def checkpoint_tensors(folder: Path):
    """(name, tensor) of every weight in FOLDER's checkpoint, shard by shard: safetensors, or
    pytorch_model*.bin (single or indexed) read with torch.load(weights_only=True), which
    unpickles tensors and plain containers only (no code from the file runs)."""
    from safetensors import safe_open

    from moesd.models.files import CheckpointFilesError, weight_files

    try:
        files = weight_files(folder)
    except CheckpointFilesError as error:
        raise ModelSpecError(str(error)) from None
    for file in files:
        if file.suffix == ".safetensors":
            with safe_open(str(file), framework="pt", device="cpu") as f:
                for key in f.keys():
                    yield key, f.get_tensor(key)
            continue
        try:
            state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
        except Exception as error:  # a pickle with code in it, or not a checkpoint at all
            raise ModelSpecError(f"{file}: not a weights-only PyTorch checkpoint ({type(error).__name__})") from None
        if not isinstance(state, dict):
            raise ModelSpecError(f"{file}: holds a {type(state).__name__}, not a state dict")
        yield from state.items()
        del state


@torch.no_grad()
def load_checkpoint(model: Transformer, folder: Path) -> None:
    """Copy a Hugging Face checkpoint (either format; per-expert or fused expert tensors) into MODEL."""
    params = dict(model.named_parameters())
    filled: set[str] = set()
    for key, tensor in checkpoint_tensors(folder):
        _copy(model, params, key, tensor, filled)
    expected = set(params)
    missing = sorted(expected - filled)
    if missing:
        raise ModelSpecError(f"checkpoint in {folder} lacks {len(missing)} weight(s), e.g. {missing[:3]}")


def _copy(model, params, key, tensor, filled):
    if m := _EXPERT.fullmatch(key):
        layer, expert, part = int(m[1]), int(m[2]), _PART[m[3]]
        moe: MoE = model.layers[layer].mlp
        if part == "down":
            moe.down[expert].copy_(tensor.T)
        else:
            offset = 0 if part == "gate" else moe.width
            moe.gate_up[expert, :, offset : offset + moe.width].copy_(tensor.T)
        filled.update({f"layers.{layer}.mlp.gate_up", f"layers.{layer}.mlp.down"})
        return
    if m := _FUSED.fullmatch(key):
        layer, name = int(m[1]), m[2]
        moe = model.layers[layer].mlp
        (moe.gate_up if name == "gate_up_proj" else moe.down).copy_(tensor.transpose(1, 2))
        filled.add(f"layers.{layer}.mlp.{'gate_up' if name == 'gate_up_proj' else 'down'}")
        return
    for pattern, target in _RULES:
        if re.fullmatch(pattern, key):
            ours = re.sub(pattern, target, key)
            if ours in params:
                params[ours].copy_(tensor)
                filled.add(ours)
                return
            if ours == "lm_head.weight" and model.lm_head is None:
                return  # tied checkpoints may still carry the (equal) head
            raise ModelSpecError(f"checkpoint weight {key!r} has no place in the {model.cfg.family} model")
    if key.endswith(("rotary_emb.inv_freq", "masked_bias", ".bias")) and not key.endswith(("proj.bias", "norm.bias")):
        return  # buffers some old checkpoints carry
    raise ModelSpecError(f"unknown checkpoint weight {key!r}")
