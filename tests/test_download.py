"""The download stage against a local hub (tests/hub_server.py, 127.0.0.1):
a branch resolves to a commit, only the files the pipeline reads are fetched (one weight format),
their bytes are printed before the fetch, the lock is written and honoured, an offline rerun
needs no hub, later loads read the manifest's commit offline, a moved branch stops the run
unless the lock is updated, and gated repositories, missing tokens, repositories and revisions
end in one line that names the repository (never the token)."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from .hub_server import LocalHub
from .tiny_models import VOCAB, save_tiny

QWEN, OPT, GATED = "tiny/qwen2", "tiny/opt", "gated/mixtral-tiny"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("repos")
    qwen = save_tiny("qwen2", root / "qwen2", seed=4)
    opt = save_tiny("opt", root / "opt", seed=5)
    files = {p.name: p.read_bytes() for p in qwen.iterdir()}
    files |= {"tokenizer.json": b'{"version": "1.0"}', "README.md": b"# tiny", "tf_model.h5": b"\0" * 64}
    (root / "opt.bin").parent.mkdir(exist_ok=True)
    torch.save(load_file(opt / "model.safetensors"), root / "opt.bin")
    opt_files = {"config.json": (opt / "config.json").read_bytes(), "pytorch_model.bin": (root / "opt.bin").read_bytes(),
                 "vocab.json": b"{}", "merges.txt": b"#version: 0.2\n", "flax_model.msgpack": b"\0" * 32}  # fmt: skip
    return {"qwen": qwen, "qwen_files": files, "opt_files": opt_files}


@pytest.fixture
def hub(checkpoints):
    with LocalHub() as hub:
        both = dict(checkpoints["qwen_files"])
        both["pytorch_model.bin"] = b"\0" * 16  # a repository with both formats: only safetensors is fetched
        hub.publish(QWEN, both)
        hub.publish(OPT, checkpoints["opt_files"])
        hub.publish(GATED, checkpoints["qwen_files"], gated=True)
        yield hub


def moesd(tmp_path, *args, hub=None, **env):
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MOESD_HF"))}
    base |= {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    base |= {"HF_ENDPOINT": hub.url if hub else "http://127.0.0.1:9"} | env
    result = subprocess.run(
        [sys.executable, "-m", "moesd", *args], capture_output=True, text=True, env=base, timeout=300
    )
    return result.returncode, result.stdout, result.stderr


def download(tmp_path, *specs, hub=None, extra=(), **env):
    args = ["download", *specs, "--manifest", str(tmp_path / "manifest.json"), "--lock", str(tmp_path / "lock.json")]
    return moesd(tmp_path, *args, *extra, hub=hub, **env)


def test_branches_resolve_to_commits_and_one_format_is_fetched(hub, tmp_path):
    code, out, err = download(tmp_path, f"hf:{QWEN}@main", f"hf:{OPT}@main", hub=hub)
    assert code == 0, err
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    qwen, opt = manifest["models"]
    assert qwen["commit"] == hub.repos[QWEN]["refs"]["main"] and qwen["revision"] == "main"
    assert sorted(qwen["files"]) == ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json"]
    assert sorted(opt["files"]) == ["config.json", "merges.txt", "pytorch_model.bin", "vocab.json"]
    assert qwen["bytes"] == sum(len(hub.repos[QWEN]["commits"][qwen["commit"]][f]) for f in qwen["files"])
    lines = out.splitlines()
    assert lines[0].startswith(f"hf:{QWEN}@main -> {qwen['commit']}: 4 files") and "GB to fetch in all" in lines[2]
    fetched = [r for r in hub.requests if r.startswith("GET /tiny/") and "/resolve/" in r]
    assert not any(
        name in r for r in fetched for name in ("README.md", "tf_model.h5", "flax", "pytorch_model.bin") if QWEN in r
    )
    assert json.loads((tmp_path / "lock.json").read_text()) == {
        f"{QWEN}@main": qwen["commit"],
        f"{OPT}@main": opt["commit"],
    }
    # a rerun fetches nothing new, and removes the part files a killed fetch left (not a live one's)
    blobs = next((tmp_path / "hf/hub").glob("models--tiny--qwen2")) / "blobs"
    orphan, live = blobs / "0f1e.incomplete", blobs / "1a2b.incomplete"
    orphan.write_bytes(b"\0" * 1000)
    live.write_bytes(b"\0" * 10)
    os.utime(orphan, (0, 0))
    code, out, _ = download(tmp_path, f"hf:{QWEN}@main", hub=hub)
    assert code == 0 and "(0.00 GB to fetch)" in out
    assert not orphan.exists() and live.exists() and "removed 0f1e.incomplete" in out


@pytest.mark.slow  # loads both checkpoints twice (about 4 s)
def test_later_loads_read_the_manifest_commit_offline(hub, checkpoints, tmp_path):
    assert download(tmp_path, f"hf:{QWEN}@main", f"hf:{OPT}@main", hub=hub)[0] == 0
    hub.publish(QWEN, {**checkpoints["qwen_files"], "config.json": b"{}"})  # main moves after the download
    code, out, err = download(tmp_path, f"hf:{QWEN}@main", f"hf:{OPT}@main", HF_HUB_OFFLINE="1")  # no hub at all
    assert code == 0, err
    script = (
        "import torch; from moesd.models import load_model\n"
        f"m = load_model('hf:{QWEN}@main', device='cpu')\n"
        "ids = torch.arange(7)[None] % 50\n"
        "print(float(m(ids, m.new_cache(1, 8)).double().sum()))\n"
    )
    env = {"MOESD_HF_MANIFEST": str(tmp_path / "manifest.json"), "HF_HUB_OFFLINE": "1"}  # as the rules run
    base = {k: v for k, v in os.environ.items() if not k.startswith("HF_")} | env | {"HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=base, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    from moesd.models import load_model

    ours = load_model(f"dir:{checkpoints['qwen']}", device="cpu")
    ids = torch.arange(7)[None] % 50
    assert VOCAB > 50 and abs(float(result.stdout) - float(ours(ids, ours.new_cache(1, 8)).double().sum())) < 1e-3


def test_a_moved_branch_stops_the_run_unless_the_lock_is_updated(hub, checkpoints, tmp_path):
    assert download(tmp_path, f"hf:{QWEN}@main", hub=hub)[0] == 0
    old = hub.repos[QWEN]["refs"]["main"]
    new = hub.publish(QWEN, {**checkpoints["qwen_files"], "README.md": b"# moved"})
    code, _, err = download(tmp_path, f"hf:{QWEN}@main", hub=hub)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"the hub's main moved to {new[:12]} since" in err and old[:12] in err and "--update-lock" in err
    assert json.loads((tmp_path / "lock.json").read_text()) == {f"{QWEN}@main": old}  # untouched
    code, _, err = download(tmp_path, f"hf:{QWEN}@main", hub=hub, extra=["--update-lock"])
    assert code == 0, err
    assert json.loads((tmp_path / "lock.json").read_text()) == {f"{QWEN}@main": new}
    code, _, err = download(tmp_path, f"hf:{QWEN}@{old}", hub=hub)  # a pinned commit needs no lock entry
    assert code == 0, err


@pytest.mark.parametrize(
    "spec, token, message",
    [
        (f"hf:{GATED}@main", None, f"{GATED} is a gated repository: accept its terms on the hub, then set HF_TOKEN"),
        (f"hf:{GATED}@main", "hf_wrong_token", "(HF_TOKEN is set)"),
        (f"hf:{QWEN}@nope", None, f"revision 'nope' does not exist in {QWEN}"),
        ("hf:tiny/absent@main", "hf_wrong_token", "repository tiny/absent not found (private? set HF_TOKEN"),
    ],
)
def test_hub_errors_are_one_line_naming_the_repository(hub, tmp_path, spec, token, message):
    code, out, err = download(tmp_path, f"hf:{OPT}@main", spec, hub=hub, **({"HF_TOKEN": token} if token else {}))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert message in err and spec in err
    assert "hf_wrong_token" not in out + err
    assert not (tmp_path / "manifest.json").exists() and not (tmp_path / "lock.json").exists()  # nothing fetched first
    assert not any("/resolve/" in r and r.startswith("GET") for r in hub.requests)


def test_a_gated_repository_downloads_with_a_token(hub, tmp_path):
    code, out, err = download(tmp_path, f"hf:{GATED}@main", hub=hub, HF_TOKEN=hub.token)
    assert code == 0, err
    assert hub.token not in out + err


def test_offline_without_a_lock_entry_is_named(tmp_path):
    code, _, err = download(tmp_path, f"hf:{QWEN}@main", HF_HUB_OFFLINE="1")
    assert code == 2 and f"hf:{QWEN}@main: the hub is offline (HF_HUB_OFFLINE)" in err


@pytest.mark.slow  # waits out the patience three times (about 15 s)
@pytest.mark.parametrize(
    "fault, message",
    [
        ("500", f"the hub answered 500 for GET /api/models/{OPT}/revision/main"),
        ("hang", f"no answer to GET /api/models/{OPT}/revision/main ("),
        ("close", f"GET /{OPT}/resolve/"),
    ],
)
def test_a_failing_hub_ends_in_one_line_within_the_patience(hub, tmp_path, fault, message):
    """A hub that answers 500, never answers, or closes the connection mid-file: one line naming
    what the hub did and where, within the patience (MOESD_HUB_PATIENCE, 4 s here) plus one
    try, without huggingface_hub's retry lines; nothing is written."""
    import time

    hub.fault = fault
    start = time.monotonic()
    code, out, err = download(tmp_path, f"hf:{OPT}@main", hub=hub, MOESD_HUB_PATIENCE="4")
    elapsed = time.monotonic() - start
    lines = [line for line in err.strip().splitlines() if not line.startswith("Fetching")]  # the fetch's progress
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"moesd: error: hf:{OPT}@main: ") and message in lines[0].replace(hub.url, ""), lines[0]
    assert "the patience is 4 s: MOESD_HUB_PATIENCE" in lines[0] and "Retrying" not in out + err
    assert elapsed < 4 + 10, elapsed  # the patience, the last try's wait, the interpreter's start
    assert not (tmp_path / "manifest.json").exists()


def test_the_patience_must_be_a_positive_number(hub, tmp_path):
    code, _, err = download(tmp_path, f"hf:{OPT}@main", hub=hub, MOESD_HUB_PATIENCE="soon")
    assert code == 2 and "MOESD_HUB_PATIENCE='soon': not a number of seconds" in err
