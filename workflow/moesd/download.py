"""The download stage: every hf: spec of an experiment resolved to a commit and fetched into the
Hugging Face cache once, where the internet is (the login node), before any GPU job starts.

- A spec's revision (a branch or tag such as `main`) resolves to the commit the hub names now;
  a lock file (config/<experiment>.lock.json, kept with the config) records it. Later runs
  fetch the locked commit and stop, in one line, if the hub's branch has moved since, unless
  the user asks to update the lock: two runs a month apart measure the same weights or say so.
  A revision that is itself a commit needs no lock.
- Only the files the pipeline reads are fetched (moesd.models.files: configs, tokenizer files,
  the weights of one format); their bytes, and how many are not cached yet, are printed before
  anything is fetched.
- The manifest (spec, repository, requested revision, resolved commit, files, bytes) is what
  every later rule loads by: hub_folder() (which moesd.models.checkpoint.folder calls for hf:
  specs) reads it (MOESD_HF_MANIFEST) and opens the resolved commit's snapshot with the hub
  offline (HF_HUB_OFFLINE=1), so a compute node without internet never tries the network and a
  moved branch never changes a later job's weights.
- The cache is huggingface_hub's: HF_HOME (or HF_HUB_CACHE) says where; HF_TOKEN is the token
  for gated repositories (Mixtral). Errors name the spec and repository, never the token.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from moesd.hub_lock import COMMIT, LockFileError, lock_key, read_lock
from moesd.models.files import ALL_PATTERNS, CheckpointFilesError, checkpoint_files
from moesd.models.spec import parse_spec

MANIFEST_ENV = "MOESD_HF_MANIFEST"
UPDATE_HINT = "rerun with --update-lock (Snakemake: --config download='{update_lock: true}') to measure the new commit"


class DownloadError(ValueError):
    """A spec that cannot be resolved or fetched; the message names it (never the token)."""


@dataclass
class Resolved:
    spec: str
    repository: str
    revision: str
    commit: str
    files: list[str] = field(default_factory=list)
    bytes: int = 0
    bytes_to_fetch: int = 0


def hub_specs(config: dict) -> list[str]:
    """Every hf: spec of a validated CONFIG, once each, in config order: pairs (EAGLE heads
    included), forced e2e pairs, latency models, routing's hub models and the engine check's."""
    specs = [pair[role] for pair in config["pairs"] for role in ("target", "draft")]
    specs += [e[role] for e in config["latency"]["e2e"]["pairs"] for role in ("target", "draft") if e.get(role)]
    specs += [m["spec"] for m in config["latency"]["models"]]
    specs += list(config["routing"]["hf_models"]) + list(config["engine_check"]["models"])
    return list(dict.fromkeys(s for s in specs if str(s).startswith("hf:")))


def _hub_error(spec, error: Exception) -> DownloadError:
    """One line for a hub error, naming the spec and repository (the token never appears); where
    the hub failed to answer (a timeout, a 5xx, a closed connection), what it did last."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from moesd.hub_client import HubUnanswered, active

    token = "set" if os.environ.get("HF_TOKEN") else "not set"
    if isinstance(error, HubUnanswered):
        return DownloadError(f"{spec}: {error}")
    if active().problem and not constants.HF_HUB_OFFLINE:  # huggingface_hub stopped retrying first
        return DownloadError(f"{spec}: {active().give_up()}")
    if isinstance(error, GatedRepoError):
        return DownloadError(
            f"{spec}: {spec.name} is a gated repository: accept its terms on the hub, then set HF_TOKEN to a token "
            f"with access (HF_TOKEN is {token})"
        )
    if isinstance(error, RevisionNotFoundError):
        return DownloadError(f"{spec}: revision {spec.revision!r} does not exist in {spec.name}")
    if isinstance(error, RepositoryNotFoundError):
        return DownloadError(f"{spec}: repository {spec.name} not found (private? set HF_TOKEN; HF_TOKEN is {token})")
    if isinstance(error, OfflineModeIsEnabled | LocalEntryNotFoundError):
        return DownloadError(f"{spec}: not in the cache and the hub is offline (HF_HUB_OFFLINE); download it first")
    return DownloadError(f"{spec}: cannot reach the Hugging Face hub ({type(error).__name__})")


def resolve(spec_text: str, lock: dict, *, update_lock: bool, offline: bool, lock_name="the lock") -> Resolved:
    """SPEC_TEXT's commit (from the hub, checked against LOCK) and the files to fetch."""
    from huggingface_hub import HfApi, constants, snapshot_download
    from huggingface_hub.file_download import repo_folder_name

    from moesd.hub_client import active  # here: httpx2 stays out of the Snakefile's parse

    spec = parse_spec(spec_text)
    active()  # timeouts and a patience for a failing hub (moesd.hub_client)
    api = HfApi()
    locked = lock.get(lock_key(spec))
    try:
        if COMMIT.fullmatch(spec.revision):
            commit = spec.revision
        elif offline:
            if locked is None:
                raise DownloadError(f"{spec}: the hub is offline (HF_HUB_OFFLINE) and {lock_name} has no commit for it")
            commit = locked
        else:
            commit = api.repo_info(spec.name, revision=spec.revision).sha
            if locked and commit != locked and not update_lock:
                raise DownloadError(
                    f"{spec}: the hub's {spec.revision} moved to {commit[:12]} since {lock_name} recorded "
                    f"{locked[:12]}; {UPDATE_HINT}, or pin @{locked} to keep measuring the old one"
                )
        if offline:  # what the cache holds of that commit (huggingface_hub's cache layout)
            folder = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=spec.name, repo_type="model")
            folder = folder / "snapshots" / commit
            if not folder.is_dir():
                raise DownloadError(
                    f"{spec}: commit {commit[:12]} is not in the cache {constants.HF_HUB_CACHE} and the hub is offline"
                )
            names = [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()]
        else:
            names = api.list_repo_files(spec.name, revision=commit)
        files = checkpoint_files(names)
        plan = (
            []
            if offline
            else _quietly(snapshot_download, spec.name, revision=commit, allow_patterns=files, dry_run=True)
        )
    except DownloadError:
        raise
    except CheckpointFilesError as error:
        raise DownloadError(f"{spec}: {spec.name}@{commit[:12]} has {error}") from None
    except Exception as error:  # huggingface_hub's errors, network errors
        raise _hub_error(spec, error) from None
    size = sum(item.file_size or 0 for item in plan)
    fetch = sum(item.file_size or 0 for item in plan if item.will_download)
    return Resolved(str(spec), spec.name, spec.revision, commit, files, size, fetch)


def _quietly(func, *args, **kwargs):
    """FUNC without huggingface_hub's progress bars (a dry run's bars would bury the one-line error)."""
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        return func(*args, **kwargs)
    finally:
        if not was:
            enable_progress_bars()


def fetch(item: Resolved) -> Path:
    from huggingface_hub import snapshot_download

    from moesd.hub_client import active

    spec = parse_spec(item.spec)
    active()
    try:
        return Path(snapshot_download(item.repository, revision=item.commit, allow_patterns=item.files))
    except Exception as error:
        raise _hub_error(spec, error) from None


ORPHAN_AGE_S = 600  # a part file untouched this long is no live download's (they write as bytes arrive)


def orphaned_parts(snapshot: Path, now: float | None = None) -> list[Path]:
    """The `.incomplete` files in the cache folder of SNAPSHOT's repository that a killed fetch
    left (huggingface_hub resumes a part file only when the same file is fetched again): those
    not written for ORPHAN_AGE_S seconds, once the snapshot is whole."""
    import time

    blobs = snapshot.parent.parent / "blobs"
    now = time.time() if now is None else now
    return sorted(p for p in blobs.glob("*.incomplete") if now - p.stat().st_mtime > ORPHAN_AGE_S)


def download(
    specs: list[str], manifest: Path, lock_path: Path | None, *, update_lock=False, log=print
) -> list[Resolved]:
    """Resolve every spec (all before any fetch: a bad one stops the stage before gigabytes
    move), print what will be fetched, fetch, then write the manifest and the lock."""
    from huggingface_hub import constants

    from moesd.io import write_json

    for text in specs:
        if parse_spec(text).kind != "hf":
            raise DownloadError(f"{text}: the download stage takes hf:ORG/NAME@REVISION specs")
    offline = bool(constants.HF_HUB_OFFLINE)
    try:
        lock = read_lock(lock_path)
    except LockFileError as error:
        raise DownloadError(str(error)) from None
    name = str(lock_path) if lock_path else "the lock"
    resolved = [resolve(s, lock, update_lock=update_lock, offline=offline, lock_name=name) for s in specs]
    for item in resolved:
        log(
            f"{item.spec} -> {item.commit}: {len(item.files)} files, {item.bytes / 1e9:.2f} GB ({item.bytes_to_fetch / 1e9:.2f} GB to fetch)"
        )
    log(f"cache {constants.HF_HUB_CACHE}: {sum(r.bytes_to_fetch for r in resolved) / 1e9:.2f} GB to fetch in all")
    for item in resolved:
        folder = fetch(item)
        missing = [f for f in item.files if not (folder / f).exists()]
        if missing:
            raise DownloadError(f"{item.spec}: {len(missing)} file(s) missing after the download, e.g. {missing[0]}")
        for orphan in orphaned_parts(folder):
            log(f"{item.spec}: removed {orphan.name} ({orphan.stat().st_size / 1e6:.1f} MB), left by a killed fetch")
            orphan.unlink(missing_ok=True)
    if lock_path is not None:
        pinned = {lock_key(parse_spec(r.spec)): r.commit for r in resolved if not COMMIT.fullmatch(r.revision)}
        if pinned and {**lock, **pinned} != lock:
            write_json(Path(lock_path), dict(sorted({**lock, **pinned}.items())))
            log(f"lock {lock_path}: {len(pinned)} commit(s) recorded")
    write_json(Path(manifest), {"cache": str(constants.HF_HUB_CACHE), "models": [asdict(r) for r in resolved]})
    return resolved


def manifest_entry(spec) -> dict | None:
    """SPEC's entry of the download manifest named by MOESD_HF_MANIFEST (None without one)."""
    path = os.environ.get(MANIFEST_ENV)
    if not path:
        return None
    try:
        models = json.loads(Path(path).read_text())["models"]
    except (OSError, json.JSONDecodeError, KeyError) as error:
        raise DownloadError(f"{MANIFEST_ENV}={path}: not a download manifest ({type(error).__name__})") from None
    entry = next((m for m in models if m["spec"] == str(spec)), None)
    if entry is None:
        raise DownloadError(f"{spec}: not in the download manifest {path} (rerun the download stage)")
    return entry


def hub_folder(spec) -> Path:
    """An hf: SPEC's snapshot folder: the download manifest's commit, offline, where the download
    stage ran; else the revision if the cache has it; else resolved and fetched (the download
    stage's way, without a lock)."""
    from huggingface_hub import snapshot_download

    entry = manifest_entry(spec)
    if entry is not None:  # the download stage fetched it: that commit, offline
        try:
            return Path(
                snapshot_download(
                    spec.name, revision=entry["commit"], allow_patterns=entry["files"], local_files_only=True
                )
            )
        except Exception as error:
            raise DownloadError(
                f"model spec {spec}: commit {entry['commit'][:12]} of the download manifest is not in the cache "
                f"({type(error).__name__}); rerun the download stage with the same HF_HOME"
            ) from None
    try:
        return Path(
            snapshot_download(spec.name, revision=spec.revision, allow_patterns=ALL_PATTERNS, local_files_only=True)
        )
    except Exception:  # not cached: resolve and fetch
        pass
    try:
        return fetch(resolve(spec.text, {}, update_lock=False, offline=False))
    except DownloadError as error:
        raise DownloadError(
            f"model spec {spec}: cannot download from the Hugging Face hub and not in the local cache "
            f"({error}); offline machines need the files in the cache or a dir: spec"
        ) from None
