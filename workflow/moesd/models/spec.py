"""Model specs: one string everywhere (config, CLI, tables), one type and one parser in the code.

    hf:ORG/NAME@REVISION      a hub checkpoint at a pinned revision (downloaded through huggingface_hub)
    dir:PATH                  a local folder in Hugging Face format (config.json, safetensors or
                              pytorch_model*.bin weights, tokenizer files if any: models/files.py)
    arch:NAME[:key=value,...] a config of data/architectures with overrides and seeded random weights
                              (seed=N among the overrides picks the seed; default 0)
    trained:target|draft      the pair the models stage trains into <run>/models/ (ModelSpec.resolve)

Values of overrides are JSON where they parse as JSON (numbers, lists, true/false/null) and
strings otherwise. Nothing here imports torch: the light commands (`moesd params`, the Snakefile
parse) read specs too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from moesd.architectures import ArchitectureError, load_architecture
from moesd.models.files import ALL_PATTERNS, CheckpointFilesError, weight_files

KINDS = ("hf", "dir", "arch", "trained")
TRAINED_NAMES = ("target", "draft")
K_KEY = "num_experts_per_tok"  # the paper's sparsity sweep overrides K (Sec. 4.3, Fig. 4)
_FORMS = "hf:ORG/NAME@REVISION, dir:PATH, arch:NAME[:key=value,...] or trained:target|draft"


class ModelSpecError(ValueError):
    """A model spec that cannot be parsed or resolved; the message names the spec."""


def parse_value(text: str):
    """An override's value: JSON where it parses (1, 0.5, [1, 2], true), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@dataclass(frozen=True)
class ModelSpec:
    kind: str  # hf | dir | arch | trained
    name: str  # repo id, folder, architecture name, or target/draft
    revision: str | None = None
    overrides: dict = field(default_factory=dict)  # arch: only, seed excluded
    seed: int = 0
    text: str = ""  # the spec as written (keys of measured points, labels of tables)

    def __str__(self) -> str:
        return self.text

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        kind, sep, rest = str(text).partition(":")
        if not sep or kind not in KINDS or not rest:
            raise ModelSpecError(f"model spec {text!r}: expected {_FORMS}")
        if kind == "hf":
            repo, at, revision = rest.partition("@")
            if not at or not revision or "/" not in repo:
                raise ModelSpecError(f"model spec {text!r}: hf: specs need ORG/NAME@REVISION (a pinned revision)")
            if ":" in revision:  # no git revision holds a colon: overrides, which a checkpoint cannot take
                raise ModelSpecError(f"model spec {text!r}: hf: specs take no key=value overrides")
            return cls("hf", repo, revision=revision, text=text)
        if kind == "dir":
            return cls("dir", rest, text=text)
        if kind == "trained":
            if rest not in TRAINED_NAMES:
                raise ModelSpecError(f"model spec {text!r}: trained: names are {' and '.join(TRAINED_NAMES)}")
            return cls("trained", rest, text=text)
        name, _, items = rest.partition(":")
        overrides = {}
        for item in filter(None, items.split(",")):
            key, eq, value = item.partition("=")
            if not eq or not key:
                raise ModelSpecError(f"model spec {text!r}: override {item!r} is not key=value")
            overrides[key] = parse_value(value)
        seed = overrides.pop("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ModelSpecError(f"model spec {text!r}: seed must be an integer, got {seed!r}")
        return cls("arch", name, overrides=overrides, seed=seed, text=text)

    @classmethod
    def of_architecture(cls, text: str) -> ModelSpec:
        """NAME[:key=value,...] (the CLI's --target/--draft/params form) or any full spec."""
        return cls.parse(text if text.partition(":")[0] in KINDS else f"arch:{text}")

    # ---- operations the pipeline needs -----------------------------------------------------
    def with_k(self, k: int | None) -> ModelSpec:
        """This arch: spec with num_experts_per_tok overridden (the paper's sparsity sweep)."""
        if k is None:
            return self
        if self.kind != "arch":
            raise ModelSpecError(f"model spec {self}: a K sweep needs an arch: spec")
        separator = "," if self.text.count(":") >= 2 else ":"
        return ModelSpec.parse(f"{self.text}{separator}{K_KEY}={k}")

    @property
    def family(self) -> str:
        """The spec without the sparsity sweep's K override: one model family (its K sweep included)."""
        return re.sub(rf"[,:]{K_KEY}=\d+$", "", self.text)

    @property
    def short(self) -> str:
        """A display name: KIND:NAME, with * where overrides are left out (captions spell them out)."""
        if self.kind == "hf":
            return self.text
        return f"{self.kind}:{self.name}" + ("*" if self.overrides or self.seed else "")

    def is_architecture(self, architecture: str) -> bool:
        """This is the paper's model ARCHITECTURE itself: a hub checkpoint of that name (no
        overrides are possible there) or the unmodified architecture (no override, seed 0)."""
        norm = architecture.lower().replace("_", "-")
        if self.kind == "hf":
            return norm in self.name.lower().replace("_", "-")
        same = self.name.lower().replace("_", "-") == norm
        return self.kind == "arch" and same and not self.overrides and not self.seed

    def resolve(self, run_dir: str | Path) -> ModelSpec:
        """trained:NAME -> dir:<run_dir>/models/NAME; other specs unchanged."""
        if self.kind != "trained":
            return self
        return ModelSpec.parse(f"dir:{Path(run_dir) / 'models' / self.name}")

    # ---- files and configs (no weights) ------------------------------------------------------
    def folder(self) -> Path | None:
        """The local folder of an hf: or dir: spec (hf: downloaded into the cache if needed);
        None for arch: specs, which have no files."""
        if self.kind == "arch":
            return None
        if self.kind == "trained":
            raise ModelSpecError(f"model spec {self}: resolve trained: specs against the run folder first")
        if self.kind == "dir":
            folder = Path(self.name)
            if not (folder / "config.json").is_file():
                raise ModelSpecError(f"model spec {self}: no config.json in {folder}")
            try:
                weight_files(folder)
            except CheckpointFilesError as error:
                raise ModelSpecError(f"model spec {self}: {error}") from None
            return folder
        from huggingface_hub import snapshot_download

        from moesd.download import DownloadError, fetch, manifest_entry, resolve

        try:
            entry = manifest_entry(self)
        except DownloadError as error:
            raise ModelSpecError(str(error)) from None
        if entry is not None:  # the download stage fetched it: that commit, offline
            try:
                return Path(
                    snapshot_download(
                        self.name, revision=entry["commit"], allow_patterns=entry["files"], local_files_only=True
                    )
                )
            except Exception as error:
                raise ModelSpecError(
                    f"model spec {self}: commit {entry['commit'][:12]} of the download manifest is not in the cache "
                    f"({type(error).__name__}); rerun the download stage with the same HF_HOME"
                ) from None
        try:
            return Path(
                snapshot_download(self.name, revision=self.revision, allow_patterns=ALL_PATTERNS, local_files_only=True)
            )
        except Exception:  # not cached: resolve and fetch (the download stage's way, without a lock)
            pass
        try:
            return fetch(resolve(self.text, {}, update_lock=False, offline=False))
        except DownloadError as error:
            raise ModelSpecError(
                f"model spec {self}: cannot download from the Hugging Face hub and not in the local cache "
                f"({error}); offline machines need the files in the cache or a dir: spec"
            ) from None

    def hf_config(self) -> dict:
        """The Hugging Face config dict (without loading weights)."""
        if self.kind == "arch":
            try:
                return load_architecture(self.name, self.overrides)
            except ArchitectureError as error:
                raise ModelSpecError(f"model spec {self}: {error}") from None
        return json.loads((self.folder() / "config.json").read_text())

    def fingerprint(self) -> str:
        """What a measurement of this model depends on: the spec, and for a folder its config and
        weight files (name, size, mtime): a retrained pair gets new keys."""
        from moesd.io import fingerprint

        folder = self.folder()
        if folder is None:
            return self.text
        files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in weight_files(folder))
        return fingerprint(self.text, (folder / "config.json").read_text(), files)


def parse_spec(text: str | ModelSpec) -> ModelSpec:
    """The one parser of model specs (a ModelSpec passes through)."""
    return text if isinstance(text, ModelSpec) else ModelSpec.parse(text)
