"""Miniatures of every checkpoint config/paper.yaml names, for the dress rehearsal of the paper's
campaign on a CPU (tests/test_rehearsal.py; docs/rehearsal.md):

    python workflow/scripts/miniatures.py OUT

writes OUT/<organisation>/<name>/ with the files the hub holds for that repository, and
OUT/repos.json listing each folder's repository and revision (a branch, or Mixtral's pinned
commit). Each miniature keeps its model's config.json (data/architectures: every key, the
architecture class, the real vocabulary size, head counts where a tensor-parallel split depends
on them) and shrinks only widths, expert widths and layer counts; its weights are random,
seeded, and laid out as on the hub: sharded safetensors with an index, OPT's pytorch_model.bin
(sharded with an index for OPT-30B) without the `model.` prefix and with a slow tokenizer, the
EAGLE head as one pytorch_model.bin of an EAGLE-1 head. Tokenizers are byte-level BPEs trained on
the standard library's source (moesd.corpus) with each family's special tokens at their real ids.
What a miniature cannot keep is listed in MINIATURES' notes. Deterministic: the same bytes on
every run (tests/test_rehearsal.py checks two builds).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

ARCHITECTURES = Path(__file__).resolve().parents[2] / "data/architectures"
MIXTRAL_COMMIT = "eba92302a2861cdc0098cc54bc9f17cb2c47eb61"  # config/paper.yaml's pinned revision
TOKENIZER_VOCAB = 1024  # trained BPE entries; the model's vocab_size stays the real one
STD = 0.15  # weights' spread: logits that differ between tokens

QWEN_CHAT = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
MIXTRAL_CHAT = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}{{ message['content'] + eos_token }}"
    "{% endif %}{% endfor %}"
)
DEEPSEEK_CHAT = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ 'User: ' + message['content'] + '\n\n' }}{% else %}{{ 'Assistant: ' + message['content'] + eos_token }}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
TOKENIZERS = {  # family: special tokens at their real ids, tokenizer_config.json, files
    "qwen2": {
        "special": {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645},
        "config": {
            "tokenizer_class": "Qwen2Tokenizer",
            "bos_token": None,
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
            "unk_token": None,
            "model_max_length": 32768,
            "chat_template": QWEN_CHAT,
        },  # fmt: skip
        "files": ("tokenizer.json", "vocab.json", "merges.txt"),
    },
    "opt": {  # GPT-2's BPE; OPT prepends </s> (its bos) to every text
        "special": {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3},
        "config": {
            "tokenizer_class": "GPT2Tokenizer",
            "add_bos_token": True,
            "bos_token": "</s>",
            "eos_token": "</s>",
            "pad_token": "<pad>",
            "unk_token": "</s>",
            "errors": "replace",
        },  # fmt: skip
        "files": ("vocab.json", "merges.txt"),  # the slow tokenizer only, as facebook/opt-* ship it
        "special_tokens_map": {"bos_token": "</s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "</s>"},
    },
    "mixtral": {
        "special": {"<unk>": 0, "<s>": 1, "</s>": 2},
        "config": {
            "tokenizer_class": "LlamaTokenizer",
            "add_bos_token": True,
            "add_eos_token": False,
            "bos_token": "<s>",
            "eos_token": "</s>",
            "unk_token": "<unk>",
            "pad_token": None,
            "chat_template": MIXTRAL_CHAT,
        },  # fmt: skip
        "files": ("tokenizer.json",),  # the hub's sentencepiece tokenizer.model is not built (no sentencepiece)
    },
    "deepseek": {
        "special": {"<｜begin▁of▁sentence｜>": 100000, "<｜end▁of▁sentence｜>": 100001},
        "config": {
            "tokenizer_class": "LlamaTokenizerFast",
            "add_bos_token": True,
            "add_eos_token": False,
            "bos_token": "<｜begin▁of▁sentence｜>",
            "eos_token": "<｜end▁of▁sentence｜>",
            "pad_token": "<｜end▁of▁sentence｜>",
            "chat_template": DEEPSEEK_CHAT,
        },  # fmt: skip
        "files": ("tokenizer.json",),
    },
}

# Each miniature: its repository and revision, the architecture file, what shrinks, the weights'
# layout (format, shards) and tokenizer family. Head counts stay the real ones where a tensor-
# parallel split of 2 or 4 tests them (Qwen2-0.5B's 14 heads do not split in 4); where the real
# count times vLLM's smallest CPU head size (32) would make the width too costly, the count is
# cut to one that splits the same way (divisible by 4).
MINIATURES = [
    {
        "repo": "Qwen/Qwen2-57B-A14B-Instruct", "revision": "main", "arch": "qwen2-57b-a14b.json",
        "shrink": {"hidden_size": 256, "num_attention_heads": 8, "num_hidden_layers": 2, "intermediate_size": 128,
                   "moe_intermediate_size": 64, "shared_expert_intermediate_size": 512, "max_window_layers": 2},
        "format": "safetensors", "shards": 3, "tokenizer": "qwen2", "seed": 1,
        "notes": "28 heads cut to 8 (4 KV heads kept); 64 experts top-8 and the shared expert kept",
    },
    {
        "repo": "Qwen/Qwen2-0.5B-Instruct", "revision": "main", "arch": "qwen2-0.5b.json",
        "shrink": {"hidden_size": 448, "num_hidden_layers": 2, "intermediate_size": 128, "max_window_layers": 2},
        "format": "safetensors", "shards": 1, "tokenizer": "qwen2", "seed": 2,
        "notes": "14 heads and 2 KV heads kept (head size 32): the split that does not divide by 4",
    },
    {
        "repo": "facebook/opt-30b", "revision": "main", "arch": "opt-30b.json",
        "shrink": {"hidden_size": 256, "num_attention_heads": 8, "num_hidden_layers": 2, "ffn_dim": 1024,
                   "word_embed_proj_dim": 256},
        "format": "bin", "shards": 2, "tokenizer": "opt", "seed": 3,
        "notes": "56 heads cut to 8; pre-LN, tied embeddings",
    },
    {
        "repo": "facebook/opt-350m", "revision": "main", "arch": "opt-350m.json",
        "shrink": {"hidden_size": 128, "num_attention_heads": 4, "num_hidden_layers": 2, "ffn_dim": 512,
                   "word_embed_proj_dim": 64},
        "format": "bin", "shards": 1, "tokenizer": "opt", "seed": 4,
        "notes": "16 heads cut to 4; post-LN with project_in/out (word_embed_proj_dim half the width, as 512 of 1024)",
    },
    {
        "repo": "mistralai/Mixtral-8x7B-Instruct-v0.1", "revision": MIXTRAL_COMMIT, "arch": "mixtral-8x7b.json",
        "shrink": {"hidden_size": 256, "num_attention_heads": 8, "num_key_value_heads": 2, "num_hidden_layers": 2,
                   "intermediate_size": 128},
        "format": "safetensors", "shards": 3, "tokenizer": "mixtral", "seed": 5,
        "notes": "32 heads and 8 KV heads cut to 8 and 2 (the 4:1 grouping kept); 8 experts top-2 kept",
    },
    {
        "repo": "yuhuili/EAGLE-mixtral-instruct-8x7B", "revision": "main", "arch": "eagle-mixtral-8x7b.partial.json",
        "shrink": {"hidden_size": 256, "num_attention_heads": 8, "num_key_value_heads": 8, "intermediate_size": 128},
        "format": "eagle", "shards": 1, "tokenizer": None, "seed": 6, "target": "mistralai/Mixtral-8x7B-Instruct-v0.1",
        "notes": "an EAGLE-1 head (fc over [embedding, feature], one decoder layer without its input norm, full MHA) "
        "of the Mixtral miniature's width; the hub's config.json is not known (data/architectures/SOURCES.md): "
        "the partial file's keys plus the target's architectures entry",
    },
    {
        "repo": "deepseek-ai/DeepSeek-V2-Lite-Chat", "revision": "main", "arch": "deepseek-v2-lite.json",
        "shrink": {"hidden_size": 128, "num_attention_heads": 4, "num_key_value_heads": 4, "num_hidden_layers": 3,
                   "intermediate_size": 256, "moe_intermediate_size": 32, "kv_lora_rank": 32, "qk_nope_head_dim": 32,
                   "qk_rope_head_dim": 16, "v_head_dim": 32},
        "format": "safetensors", "shards": 2, "tokenizer": "deepseek", "seed": 7,
        "notes": "16 heads cut to 4, MLA ranks cut; 64 routed experts top-6, 2 shared, the first layer dense kept",
    },
]  # fmt: skip


def folder_of(out: Path, repo: str) -> Path:
    return out / repo


def build_tokenizers(corpus_chars: int = 400_000) -> dict:
    """Each family's tokenizer files: name -> bytes (one trained BPE, specials at the real ids)."""
    from moesd.corpus import build_corpus, train_tokenizer

    base = json.loads(train_tokenizer(build_corpus(corpus_chars).text, TOKENIZER_VOCAB).to_str())
    eos = base["added_tokens"][0]["content"]  # the training's own separator: not a token of these families
    del base["model"]["vocab"][eos]
    vocab = {token: i - 1 for token, i in base["model"]["vocab"].items()}
    files = {}
    for family, spec in TOKENIZERS.items():
        special = spec["special"]
        low = [token for token, i in special.items() if i < len(special)]  # OPT's and Mixtral's specials come first
        shift = len(low)
        model_vocab = {token: i + shift for token, i in vocab.items()} | {t: special[t] for t in low}
        tok = json.loads(json.dumps(base))
        tok["model"]["vocab"] = model_vocab
        bos = spec["config"].get("bos_token") if family in ("mixtral", "deepseek") else None
        if bos:  # a fast Llama-style tokenizer prepends its bos in tokenizer.json's post-processor
            tok["post_processor"] = {
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {bos: {"id": bos, "ids": [special[bos]], "tokens": [bos]}},
            }  # fmt: skip
        tok["added_tokens"] = [
            {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
             "special": True}
            for t, i in sorted(special.items(), key=lambda item: item[1])
        ]  # fmt: skip
        text = json.dumps(tok, ensure_ascii=False, indent=2).encode()
        made = {}
        if "tokenizer.json" in spec["files"]:
            made["tokenizer.json"] = text
        if "vocab.json" in spec["files"]:
            made["vocab.json"] = json.dumps(model_vocab, ensure_ascii=False).encode()
            merges = ["#version: 0.2"] + [" ".join(m) if isinstance(m, list) else m for m in tok["model"]["merges"]]
            made["merges.txt"] = ("\n".join(merges) + "\n").encode()
        config = dict(spec["config"])
        config["added_tokens_decoder"] = {
            str(i): {"content": t, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                     "special": True}
            for t, i in special.items()
        }  # fmt: skip
        made["tokenizer_config.json"] = json.dumps(config, ensure_ascii=False, indent=2).encode()
        if "special_tokens_map" in spec:
            made["special_tokens_map.json"] = json.dumps(spec["special_tokens_map"], indent=2).encode()
        files[family] = made
    return files


def config_of(entry: dict, out: Path) -> dict:
    config = json.loads((ARCHITECTURES / entry["arch"]).read_text()) | entry["shrink"]
    if entry["format"] == "eagle":
        target = json.loads((folder_of(out, entry["target"]) / "config.json").read_text())
        config = {"architectures": target["architectures"]} | config
    return config


def random_state(config: dict, seed: int) -> dict[str, torch.Tensor]:
    """The weights of CONFIG's transformers class, seeded (norms and biases perturbed too), under
    the names its checkpoints have on the hub: transformers 5 holds routed experts fused in
    memory and writes them back per expert on save, so the state is read back from a save."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForCausalLM

    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "config.json").write_text(json.dumps(config | {"initializer_range": STD}))
        hf = AutoConfig.from_pretrained(scratch)
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(hf, dtype=torch.float32)
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() == 1:
                    p.add_(torch.randn_like(p) * 0.1)
        model.save_pretrained(Path(scratch) / "saved", max_shard_size="100GB")
        state = load_file(Path(scratch) / "saved/model.safetensors")
    if config.get("model_type") == "opt":  # facebook/opt-* were saved from OPTModel: no `model.` prefix
        state = {k.removeprefix("model."): v for k, v in state.items()}
    dtype = getattr(torch, str(config.get("torch_dtype", "float32")))
    return {k: v.to(dtype).contiguous() for k, v in sorted(state.items())}


def eagle_state(config: dict, target_folder: Path, seed: int) -> dict[str, torch.Tensor]:
    """An EAGLE-1 head's state dict (EAGLE's cnets.Model): the target's token embedding, fc over
    the concatenated embedding and feature (with its bias), one Llama decoder layer without
    input_layernorm; in the target's dtype."""
    from safetensors import safe_open

    width, ffn = config["hidden_size"], config["intermediate_size"]
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
    head = width // heads
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g) * STD

    index = json.loads((target_folder / "model.safetensors.index.json").read_text())
    shard = index["weight_map"]["model.embed_tokens.weight"]
    with safe_open(str(target_folder / shard), "pt") as f:
        embed = f.get_tensor("model.embed_tokens.weight")
    layer = "layers.0."
    state = {
        "embed_tokens.weight": embed.float(),
        "fc.weight": rand(width, 2 * width),
        "fc.bias": rand(width),
        layer + "self_attn.q_proj.weight": rand(heads * head, width),
        layer + "self_attn.k_proj.weight": rand(kv * head, width),
        layer + "self_attn.v_proj.weight": rand(kv * head, width),
        layer + "self_attn.o_proj.weight": rand(width, heads * head),
        layer + "mlp.gate_proj.weight": rand(ffn, width),
        layer + "mlp.up_proj.weight": rand(ffn, width),
        layer + "mlp.down_proj.weight": rand(width, ffn),
        layer + "post_attention_layernorm.weight": 1 + rand(width) * 0.5,
    }
    return {k: v.to(embed.dtype) for k, v in sorted(state.items())}


def write_weights(folder: Path, state: dict[str, torch.Tensor], fmt: str, shards: int) -> None:
    """STATE in SHARDS files as the hub names them, with the index file where sharded."""
    from safetensors.torch import save_file

    names = list(state)
    total = sum(t.numel() * t.element_size() for t in state.values())
    groups, size, per = [[]], 0, total / shards
    for name in names:  # consecutive names, cut where a shard's share of the bytes is reached
        if size >= per * len(groups) and len(groups) < shards:
            groups.append([])
        groups[-1].append(name)
        size += state[name].numel() * state[name].element_size()
    stem, ext = ("model", "safetensors") if fmt == "safetensors" else ("pytorch_model", "bin")
    weight_map = {}
    for number, group in enumerate(groups, 1):
        file = f"{stem}.{ext}" if shards == 1 else f"{stem}-{number:05d}-of-{shards:05d}.{ext}"
        part = {name: state[name] for name in group}
        if ext == "safetensors":
            save_file(part, folder / file, metadata={"format": "pt"})
        else:
            torch.save(part, folder / file)
        weight_map |= {name: file for name in group}
    if shards > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (folder / f"{stem}.{ext}.index.json").write_text(json.dumps(index, indent=2) + "\n")


def generation_config(config: dict) -> dict:
    keys = ("bos_token_id", "eos_token_id", "pad_token_id")
    return {"_from_model_config": True} | {k: config[k] for k in keys if k in config}


def build(out: Path) -> list[dict]:
    """Every miniature under OUT; the list of {repo, revision, folder, notes}."""
    out.mkdir(parents=True, exist_ok=True)
    tokenizers = build_tokenizers()
    listing = []
    for entry in MINIATURES:
        folder = folder_of(out, entry["repo"])
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        config = config_of(entry, out)
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        if entry["format"] == "eagle":
            torch.save(
                eagle_state(config, folder_of(out, entry["target"]), entry["seed"]), folder / "pytorch_model.bin"
            )
        else:
            write_weights(folder, random_state(config, entry["seed"]), entry["format"], entry["shards"])
            (folder / "generation_config.json").write_text(json.dumps(generation_config(config), indent=2) + "\n")
        for name, data in (tokenizers.get(entry["tokenizer"]) or {}).items():
            (folder / name).write_bytes(data)
        (folder / "README.md").write_text(f"# {entry['repo']} (moesd miniature)\n\n{entry['notes']}\n")
        listing.append({"repo": entry["repo"], "revision": entry["revision"], "folder": entry["repo"]})
    (out / "repos.json").write_text(json.dumps(listing, indent=2) + "\n")
    return listing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write the miniatures and repos.json into")
    args = parser.parse_args(argv)
    for item in build(args.out):
        files = sorted(p.name for p in (args.out / item["folder"]).iterdir())
        print(f"{item['repo']}@{item['revision']}: {', '.join(files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
