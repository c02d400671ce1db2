"""Which files of a Hugging Face checkpoint the pipeline fetches and reads.

The paper's checkpoints come in both of the hub's formats: Qwen2 and Mixtral ship safetensors
shards with a fast tokenizer (tokenizer.json); facebook/opt-30b and opt-350m ship
pytorch_model*.bin shards with a slow one (vocab.json + merges.txt); the EAGLE heads ship one
pytorch_model.bin. One checkpoint is read in one format: safetensors where the repository has
them, else the .bin shards (a repository with both is fetched once, not twice). No torch here:
the download stage and the Snakefile's parse read this module.
"""

from __future__ import annotations

import json
from fnmatch import fnmatch
from pathlib import Path

CONFIG_FILES = ("config.json", "generation_config.json")
TOKENIZER_FILES = (
    "tokenizer.json",  # fast
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "vocab.json",  # slow byte-level BPE (OPT)
    "merges.txt",
    "tokenizer.model",  # sentencepiece (Mixtral ships it beside tokenizer.json)
)
# (weights, index) per format, the preferred first
FORMATS = (
    ("model*.safetensors", "model.safetensors.index.json"),
    ("pytorch_model*.bin", "pytorch_model.bin.index.json"),
    ("*.safetensors", "model.safetensors.index.json"),  # a folder of your own, named otherwise
)
ALL_PATTERNS = [*CONFIG_FILES, *TOKENIZER_FILES, *(p for pair in FORMATS[:2] for p in pair)]


class CheckpointFilesError(ValueError):
    """A checkpoint folder or listing without usable weights; the message names it."""


def weight_format(names) -> tuple[str, str] | None:
    """The (weights pattern, index name) of the format to read among file NAMES, or None."""
    names = list(names)
    for weights, index in FORMATS:
        if any(fnmatch(name, weights) for name in names):
            return weights, index
    return None


def checkpoint_files(names) -> list[str]:
    """The files of a repository listing NAMES that the pipeline needs: configs, tokenizer files
    and the weights of one format (with its index)."""
    names = list(names)
    chosen = weight_format(names)
    if chosen is None:
        raise CheckpointFilesError("no *.safetensors or pytorch_model*.bin weights")
    keep = [*CONFIG_FILES, *TOKENIZER_FILES, chosen[1]]
    return [name for name in names if name in keep or fnmatch(name, chosen[0])]


def weight_files(folder: Path) -> list[Path]:
    """The weight files to read in FOLDER, in order: the shards its index names (each must be
    there), or every file of its format."""
    folder = Path(folder)
    chosen = weight_format(p.name for p in folder.iterdir()) if folder.is_dir() else None
    if chosen is None:
        raise CheckpointFilesError(f"no *.safetensors or pytorch_model*.bin weights in {folder}")
    weights, index = chosen
    if (folder / index).is_file():
        try:
            shards = sorted(set(json.loads((folder / index).read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, AttributeError, TypeError):
            raise CheckpointFilesError(f"{folder / index}: not a weight index (no weight_map)") from None
        missing = [name for name in shards if not (folder / name).is_file()]
        if missing:
            raise CheckpointFilesError(f"{folder / index} names {len(missing)} missing shard(s), e.g. {missing[0]}")
        return [folder / name for name in shards]
    return sorted(p for p in folder.iterdir() if fnmatch(p.name, weights))
