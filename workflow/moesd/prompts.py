"""Prompt sources: a JSONL file ("input_ids" or "text" per line) or random:N:L.

Errors name the file, the line and the reason, and come before any model is loaded.
"""

from __future__ import annotations

import json
import random
from pathlib import Path


class PromptError(ValueError):
    """A prompt source that cannot be read."""


def read_prompt_file(path: str | Path) -> list[dict]:
    """Parse a JSONL prompt file: each line an object with "input_ids" (list of ints) or "text"."""
    path = Path(path)
    if not path.is_file():
        raise PromptError(f"prompt file {path}: no such file")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise PromptError(f"prompt file {path}, line {number}: not JSON ({error.msg})") from None
        if not isinstance(row, dict) or not ("input_ids" in row or "text" in row):
            raise PromptError(f'prompt file {path}, line {number}: needs an "input_ids" or a "text" field')
        ids = row.get("input_ids")
        if ids is not None and (
            not isinstance(ids, list) or not ids or not all(isinstance(t, int) and t >= 0 for t in ids)
        ):
            raise PromptError(f"prompt file {path}, line {number}: input_ids must be a non-empty list of token ids")
        if ids is None and (not isinstance(row["text"], str) or not row["text"]):
            raise PromptError(f"prompt file {path}, line {number}: text must be a non-empty string")
        rows.append(row)
    if not rows:
        raise PromptError(f"prompt file {path}: no prompts")
    return rows


def parse_random(source: str) -> tuple[int, int]:
    """random:N:L -> (N, L)."""
    parts = source.split(":")
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit() or int(parts[1]) < 1 or int(parts[2]) < 1:
        raise PromptError(f"prompt source {source!r}: expected random:N:L with positive integers N and L")
    return int(parts[1]), int(parts[2])


def random_prompts(n: int, length: int, vocab_size: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(vocab_size) for _ in range(length)] for _ in range(n)]


def check_source(source: str) -> list[dict] | tuple[int, int]:
    """Validate a prompt source without a model: the parsed rows or (N, L)."""
    return parse_random(source) if source.startswith("random:") else read_prompt_file(source)


def load_prompts(source: str, *, vocab_size: int, seed: int = 0, tokenizer=None) -> list[list[int]]:
    """Token ids of every prompt of SOURCE; text prompts need TOKENIZER (a tokenizers.Tokenizer)."""
    parsed = check_source(source)
    if isinstance(parsed, tuple):
        return random_prompts(*parsed, vocab_size, seed)
    prompts = []
    for number, row in enumerate(parsed, start=1):
        if "input_ids" in row:
            ids = row["input_ids"]
        elif tokenizer is None:
            raise PromptError(f"prompt {number} of {source} is text, but the model has no tokenizer.json")
        else:
            ids = tokenizer.encode(row["text"]).ids
        if max(ids) >= vocab_size:
            raise PromptError(f"prompt {number} of {source}: token id {max(ids)} outside the vocabulary ({vocab_size})")
        prompts.append(ids)
    return prompts
