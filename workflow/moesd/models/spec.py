"""Model specs: one string everywhere (config, CLI, tables), one type and one parser in the code.

    hf:ORG/NAME@REVISION      a hub checkpoint at a pinned revision (downloaded through huggingface_hub)
    dir:PATH                  a local folder in Hugging Face format (config.json, safetensors or
                              pytorch_model*.bin weights, tokenizer files if any: models/files.py)
    arch:NAME[:key=value,...] a config of data/architectures with overrides and seeded random weights
                              (seed=N among the overrides picks the seed; default 0)
    trained:target|draft      the pair the models stage trains into <run>/models/ (ModelSpec.resolve)

Values of overrides are JSON where they parse as JSON (numbers, lists, true/false/null) and
strings otherwise. A spec is a value: nothing here reaches the network or imports torch (the
light commands and the Snakefile's parse read specs too). Where an hf: spec's files are, and a
spec's config and fingerprint, is moesd.models.checkpoint's work, through moesd.download.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from moesd.architectures import ArchitectureError, load_architecture
from moesd.models.files import CheckpointFilesError, weight_files

KINDS = ("hf", "dir", "arch", "trained")
TRAINED_NAMES = ("target", "draft")
HUB_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")  # huggingface_hub's repo ids
HUB_REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
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
            if not HUB_REPO.fullmatch(repo) or ".." in repo or "--" in repo or len(repo) > 96:
                raise ModelSpecError(
                    f"model spec {text!r}: {repo!r} is no hub repository id (ORG/NAME of letters, digits, '-', '_', "
                    "'.'; no '..' or '--'; at most 96 characters)"
                )
            if not HUB_REVISION.fullmatch(revision) or ".." in revision:
                raise ModelSpecError(f"model spec {text!r}: {revision!r} is no git revision (a branch, tag or commit)")
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

    # ---- what a value can tell without the hub ----------------------------------------------
    def architecture_config(self) -> dict:
        """An arch: spec's Hugging Face config (the architecture with its overrides; no weights)."""
        if self.kind != "arch":
            raise ModelSpecError(f"model spec {self}: only arch: specs carry their config (moesd.models.checkpoint)")
        try:
            return load_architecture(self.name, self.overrides)
        except ArchitectureError as error:
            raise ModelSpecError(f"model spec {self}: {error}") from None

    def known_config(self) -> dict | None:
        """The Hugging Face config this value can tell without the hub or the run: an arch:
        spec's, a dir: spec's config.json, an hf: spec's by the paper's architecture its repository
        names (data/architectures); None where none is known (a trained: model, another repository)."""
        from moesd.architectures import available_architectures

        if self.kind == "arch":
            return self.architecture_config()
        if self.kind == "dir":
            return json.loads((Path(self.name) / "config.json").read_text())
        if self.kind == "hf":
            named = [name for name in available_architectures() if self.is_architecture(name)]
            return load_architecture(named[0]) if named else None
        return None

    def is_moe(self) -> bool:
        """Whether this is a MoE, from its config (the models stage's trained target is one)."""
        from moesd.architectures import expert_count

        if self.kind == "trained":
            return self.name == "target"
        config = self.known_config()
        return bool(config and expert_count(config))

    def weights_gb(self, bytes_per_param: float = 2) -> float | None:
        """The weights in GB at BYTES_PER_PARAM, from the architecture's parameter count; None where
        the config is unknown (known_config)."""
        from moesd.architectures import count_parameters

        try:
            config = self.known_config()
            return count_parameters(config).total * bytes_per_param / 1e9 if config else None
        except (ArchitectureError, ValueError, KeyError, OSError):
            return None

    def local_folder(self) -> Path | None:
        """A dir: spec's folder, checked to hold a model (config.json and one weight format); None
        for arch: specs, which have no files. An hf: spec's folder is the download stage's to find
        (moesd.models.checkpoint.folder), a trained: spec's the run's (resolve first)."""
        if self.kind == "arch":
            return None
        if self.kind != "dir":
            where = (
                "resolve trained: specs against the run folder first"
                if self.kind == "trained"
                else "moesd.download finds it"
            )
            raise ModelSpecError(f"model spec {self}: not a local folder ({where})")
        folder = Path(self.name)
        if not (folder / "config.json").is_file():
            raise ModelSpecError(f"model spec {self}: no config.json in {folder}")
        try:
            weight_files(folder)
        except CheckpointFilesError as error:
            raise ModelSpecError(f"model spec {self}: {error}") from None
        return folder


def parse_spec(text: str | ModelSpec) -> ModelSpec:
    """The one parser of model specs (a ModelSpec passes through)."""
    return text if isinstance(text, ModelSpec) else ModelSpec.parse(text)
