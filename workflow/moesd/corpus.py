"""The training corpus every machine has offline: the Python standard library's source files of
the running interpreter, a fixed sorted selection, and a byte-level BPE tokenizer trained on it.

Left out: test suites (test/, tests/, idle_test/, ...), vendored or installed packages
(site-packages, ensurepip's bundled wheels), demo scripts, and anything whose name looks like a
test. HumanEval's problems are not in the standard library; the prompt sets are held out.
The file list and a hash of the text are recorded, so two runs can tell whether they trained on
the same bytes.
"""

from __future__ import annotations

import hashlib
import sysconfig
from dataclasses import dataclass
from pathlib import Path

EOS = "<|endoftext|>"
EXCLUDED_PARTS = {
    "test",
    "tests",
    "idle_test",
    "site-packages",
    "dist-packages",
    "_bundled",
    "turtledemo",
    "__pycache__",
}


@dataclass(frozen=True)
class Corpus:
    root: Path
    files: list[str]  # relative to root, sorted
    text: str  # files joined with EOS between them
    sha256: str

    def manifest(self) -> dict:
        return {
            "root": str(self.root),
            "n_files": len(self.files),
            "n_chars": len(self.text),
            "sha256": self.sha256,
            "files": self.files,
        }


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def select_files(root: Path) -> list[Path]:
    """Sorted *.py files of the standard library, without tests and vendored packages."""
    chosen = []
    for path in sorted(root.rglob("*.py")):
        parts = set(path.relative_to(root).parts[:-1])
        if parts & EXCLUDED_PARTS or path.name.startswith("test_") or path.name == "__main__.py":
            continue
        chosen.append(path)
    return chosen


def build_corpus(max_chars: int, root: Path | None = None, max_file_chars: int = 200_000) -> Corpus:
    """Files in sorted order until MAX_CHARS characters (files over MAX_FILE_CHARS, mostly
    generated tables, are skipped)."""
    root = root or stdlib_root()
    files, parts, total = [], [], 0
    for path in select_files(root):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if len(text) > max_file_chars or not text.strip():
            continue
        files.append(str(path.relative_to(root)))
        parts.append(text)
        total += len(text) + len(EOS)
        if total >= max_chars:
            break
    if not parts:
        raise ValueError(f"no usable source files under {root}")
    text = EOS.join(parts)
    return Corpus(root, files, text, hashlib.sha256(text.encode()).hexdigest())


def train_tokenizer(text: str, vocab_size: int):
    """A byte-level BPE tokenizer (tokenizers library) with EOS as its only special token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    chunks = text.split(EOS)
    tokenizer.train_from_iterator(chunks, trainer=trainer)
    return tokenizer


def encode_corpus(tokenizer, corpus: Corpus) -> list[int]:
    """The corpus as one token stream, EOS between files."""
    eos = tokenizer.token_to_id(EOS)
    ids: list[int] = []
    for encoding in tokenizer.encode_batch(corpus.text.split(EOS)):
        ids.extend(encoding.ids)
        ids.append(eos)
    return ids
