"""The `models` stage: train a tiny MoE target and distil a tiny dense draft from it, on CPU,
offline, from the standard library's source (moesd.corpus).

Target: Qwen2-MoE family (routed top-k experts plus the always-on shared expert with its sigmoid
gate). Draft: Qwen2 family (dense). Both share one byte-level BPE tokenizer and are trained with
transformers (the reference implementation) and saved in Hugging Face format (config.json,
model.safetensors, tokenizer.json), so `dir:` loads them like any hub model.

The draft is distilled: it minimises KL(p_target || q_draft) at every position of two kinds of
text: windows of the corpus, and continuations the target itself generates (greedy and sampled)
from corpus prefixes, which is the text speculative decoding asks the draft to predict.
Budgets are step counts (deterministic for a seed on one machine), not wall time.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from moesd.corpus import EOS, build_corpus, encode_corpus, train_tokenizer


def _lr(step: int, steps: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10 % of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def _windows(data: torch.Tensor, batch: int, length: int, gen: torch.Generator) -> torch.Tensor:
    starts = torch.randint(0, len(data) - length - 1, (batch,), generator=gen)
    return torch.stack([data[s : s + length] for s in starts.tolist()])


def target_config(spec: dict, vocab_size: int, eos_id: int, seq_len: int):
    from transformers import Qwen2MoeConfig

    return Qwen2MoeConfig(
        vocab_size=vocab_size,
        hidden_size=spec["hidden_size"],
        num_hidden_layers=spec["num_layers"],
        num_attention_heads=spec["num_heads"],
        num_key_value_heads=spec["num_kv_heads"],
        num_experts=spec["num_experts"],
        num_experts_per_tok=spec["top_k"],
        moe_intermediate_size=spec["moe_intermediate_size"],
        shared_expert_intermediate_size=spec["shared_expert_intermediate_size"],
        intermediate_size=spec["moe_intermediate_size"],  # unused: every layer is sparse
        norm_topk_prob=False,
        tie_word_embeddings=True,
        max_position_embeddings=4096,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        router_aux_loss_coef=spec.get("router_aux_loss_coef", 0.01),
        output_router_logits=True,  # the load-balancing loss keeps experts in use (the paper's premise)
    )


def draft_config(spec: dict, vocab_size: int, eos_id: int):
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=spec["hidden_size"],
        num_hidden_layers=spec["num_layers"],
        num_attention_heads=spec["num_heads"],
        num_key_value_heads=spec["num_kv_heads"],
        intermediate_size=spec["intermediate_size"],
        tie_word_embeddings=True,
        max_position_embeddings=4096,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
    )


def _save(model, tokenizer, folder: Path, extra: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.config.output_router_logits = False
    model.save_pretrained(folder)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": EOS, "pad_token": EOS}, indent=2)
    )
    (folder / "training.json").write_text(json.dumps(extra, indent=2))


def _loop(name, model, steps, lr, warmup, batch_fn, loss_fn, log_every=10):
    """The shared optimisation loop (AdamW, clipped gradients); returns the loss curve."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    curve = []
    bar = tqdm(range(steps), desc=f"train {name}", mininterval=5, ascii=True)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = _lr(step, steps, lr, warmup)
        loss = loss_fn(batch_fn())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % log_every == 0 or step == steps - 1:
            curve.append({"step": step, "loss": loss.item()})
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return curve


def train_target(data, spec, tokenizer, seq_len, seed, folder: Path) -> dict:
    from transformers import Qwen2MoeForCausalLM

    torch.manual_seed(seed)
    model = Qwen2MoeForCausalLM(target_config(spec, tokenizer.get_vocab_size(), tokenizer.token_to_id(EOS), seq_len))
    model.train()
    gen = torch.Generator().manual_seed(seed + 1)
    start = time.perf_counter()
    curve = _loop(
        "target",
        model,
        spec["steps"],
        spec["lr"],
        max(1, spec["steps"] // 20),
        lambda: _windows(data, spec["batch_size"], seq_len, gen),
        lambda x: model(x, labels=x).loss,  # includes the router's load-balancing loss
    )
    info = {
        "role": "target",
        "steps": spec["steps"],
        "seconds": time.perf_counter() - start,
        "loss_curve": curve,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    _save(model.eval(), tokenizer, folder, info)
    return info


@torch.no_grad()
def generate_from_target(target_folder: Path, data, n: int, prefix: int, length: int, seed: int, batch: int = 64):
    """Target continuations (half greedy, half sampled at T = 1) of N corpus prefixes, with our
    engine: the text a draft meets during speculative decoding."""
    from moesd.decode import GenerationConfig, decode
    from moesd.models import load_model

    model = load_model(f"dir:{target_folder}", device="cpu")
    gen = torch.Generator().manual_seed(seed)
    sequences = []
    for start in range(0, n, batch):
        prompts = _windows(data, min(batch, n - start), prefix, gen).tolist()
        temperature = 0.0 if (start // batch) % 2 == 0 else 1.0
        config = GenerationConfig(max_new_tokens=length, temperature=temperature, stop_at_eos=False, seed=seed + start)
        result = decode(model, prompts, config)
        sequences += [p + o for p, o in zip(prompts, result.output_ids, strict=True)]
    return torch.tensor(sequences)


def distill_draft(data, spec, tokenizer, seq_len, seed, target_folder: Path, folder: Path) -> dict:
    from transformers import Qwen2ForCausalLM, Qwen2MoeForCausalLM

    torch.manual_seed(seed)
    teacher = Qwen2MoeForCausalLM.from_pretrained(target_folder).eval()
    teacher.config.output_router_logits = False
    student = Qwen2ForCausalLM(draft_config(spec, tokenizer.get_vocab_size(), tokenizer.token_to_id(EOS)))
    student.train()
    start = time.perf_counter()
    n_generated = spec["generated_sequences"]
    generated = (
        generate_from_target(target_folder, data, n_generated, 32, seq_len - 32, seed + 2) if n_generated else None
    )
    gen = torch.Generator().manual_seed(seed + 3)
    half = spec["batch_size"] // 2

    def batch():
        corpus = _windows(data, spec["batch_size"] - (half if generated is not None else 0), seq_len, gen)
        if generated is None:
            return corpus
        rows = torch.randint(0, len(generated), (half,), generator=gen)
        return torch.cat([corpus, generated[rows, :seq_len]])

    def kl_loss(x):
        with torch.no_grad():
            p_log = F.log_softmax(teacher(x).logits.float(), dim=-1)
        q_log = F.log_softmax(student(x).logits.float(), dim=-1)
        return F.kl_div(q_log, p_log, log_target=True, reduction="none").sum(-1).mean()  # KL(p || q)

    curve = _loop("draft", student, spec["steps"], spec["lr"], max(1, spec["steps"] // 20), batch, kl_loss)
    info = {
        "role": "draft",
        "steps": spec["steps"],
        "seconds": time.perf_counter() - start,
        "loss": "KL(target || draft)",
        "generated_sequences": n_generated,
        "loss_curve": curve,
        "parameters": sum(p.numel() for p in student.parameters()),
    }
    _save(student.eval(), tokenizer, folder, info)
    return info


def build_models(spec: dict, out: Path) -> dict:
    """The whole stage: corpus, tokenizer, target, draft; returns the manifest it writes."""
    torch.set_num_threads(spec.get("threads", 2))
    corpus = build_corpus(spec["corpus_chars"])
    tokenizer = train_tokenizer(corpus.text, spec["vocab_size"])
    data = torch.tensor(encode_corpus(tokenizer, corpus))
    print(
        f"corpus: {len(corpus.files)} files, {len(corpus.text):,} chars, {len(data):,} tokens, sha256 {corpus.sha256[:12]}"
    )
    target_info = train_target(data, spec["target"], tokenizer, spec["seq_len"], spec["seed"], out / "target")
    draft_info = distill_draft(
        data, spec["draft"], tokenizer, spec["seq_len"], spec["seed"], out / "target", out / "draft"
    )
    manifest = {
        "corpus": corpus.manifest() | {"n_tokens": len(data)},
        "target": target_info,
        "draft": draft_info,
        "vocab_size": tokenizer.get_vocab_size(),
        "seed": spec["seed"],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest
