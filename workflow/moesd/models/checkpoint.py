"""Where a model spec's files are, and what its config and fingerprint read from them: a dir:
folder as it is, an hf: spec's commit in the Hugging Face cache (found, or fetched where no
download stage ran, by moesd.download), nothing for an arch: spec (its config is the
architecture's). The one place the pipeline turns a spec (a value) into files."""

from __future__ import annotations

from pathlib import Path

from moesd.download import DownloadError, hub_folder
from moesd.models.files import weight_files
from moesd.models.folder_check import read_config
from moesd.models.spec import ModelSpec, ModelSpecError, parse_spec


def folder(spec: str | ModelSpec) -> Path | None:
    """SPEC's local folder (an hf: spec's snapshot in the cache); None for arch: specs."""
    spec = parse_spec(spec)
    if spec.kind != "hf":
        return spec.local_folder()
    try:
        return hub_folder(spec)
    except DownloadError as error:
        raise ModelSpecError(str(error)) from None


def hf_config(spec: str | ModelSpec) -> dict:
    """SPEC's Hugging Face config dict (without loading weights)."""
    spec = parse_spec(spec)
    if spec.kind == "arch":
        return spec.architecture_config()
    return read_config(folder(spec) / "config.json")


def fingerprint(spec: str | ModelSpec) -> str:
    """What a measurement of SPEC depends on: the spec, and for a folder its config and weight
    files (name, size, mtime): a retrained pair gets new keys."""
    from moesd.io import fingerprint as digest

    spec = parse_spec(spec)
    where = folder(spec)
    if where is None:
        return spec.text
    files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in weight_files(where))
    return digest(spec.text, (where / "config.json").read_text(), files)
