"""Every format the paper's checkpoints come in loads: safetensors single and
indexed (Qwen2, Mixtral), pytorch_model*.bin single and indexed (OPT-30B, OPT-350M, the EAGLE
heads), fast tokenizers (tokenizer.json) and slow ones (vocab.json + merges.txt, OPT's)."""

import json
import shutil

import pytest
import torch
from moesd.models import ModelSpecError, load_model
from moesd.models.files import checkpoint_files, weight_files
from moesd.prompts import PromptEncoder, TextTokenizer, load_prompts
from safetensors.torch import load_file, save_file

from .test_models import hf_logits
from .tiny_models import VOCAB

FORMATS = ["safetensors", "safetensors-indexed", "bin", "bin-indexed"]


def _shards(state: dict, n: int) -> list[dict]:
    keys = sorted(state)
    return [{k: state[k].contiguous() for k in keys[i::n]} for i in range(n)]


def resave(source, folder, fmt: str):
    """SOURCE's checkpoint (saved by transformers) written again in FMT, as the hub holds it."""
    folder.mkdir()
    shutil.copy(source / "config.json", folder / "config.json")
    state = load_file(source / "model.safetensors")
    if fmt == "safetensors":
        save_file(state, folder / "model.safetensors")
        return folder
    if fmt == "bin":
        torch.save(state, folder / "pytorch_model.bin")
        return folder
    suffix, index = (".safetensors", "model.safetensors.index.json") if fmt.startswith("safe") else (".bin", None)
    stem = "model" if suffix == ".safetensors" else "pytorch_model"
    weight_map = {}
    shards = _shards(state, 3)
    for i, shard in enumerate(shards, start=1):
        name = f"{stem}-{i:05d}-of-{len(shards):05d}{suffix}"
        save_file(shard, folder / name) if suffix == ".safetensors" else torch.save(shard, folder / name)
        weight_map |= dict.fromkeys(shard, name)
    index = index or "pytorch_model.bin.index.json"
    (folder / index).write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    return folder


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("family", ["opt", "qwen2"])
def test_checkpoint_formats_give_transformers_logits(family, fmt, tiny_dirs, tmp_path):
    folder = resave(tiny_dirs[family], tmp_path / fmt, fmt)
    ids = torch.randint(0, VOCAB, (9,), generator=torch.Generator().manual_seed(3)).tolist()
    ref = hf_logits(tiny_dirs[family], ids)
    assert ref.abs().max() > 0.3
    assert (hf_logits(folder, ids) - ref).abs().max() < 1e-5  # transformers reads the files as written
    ours = load_model(f"dir:{folder}", device="cpu")
    logits = ours(torch.tensor([ids]), ours.new_cache(1, 16))[0]
    assert (logits - ref).abs().max() < 1e-4
    assert len(weight_files(folder)) == (3 if "indexed" in fmt else 1)


def test_an_index_naming_a_missing_shard_is_named(tiny_dirs, tmp_path):
    folder = resave(tiny_dirs["qwen2"], tmp_path / "m", "bin-indexed")
    (folder / "pytorch_model-00002-of-00003.bin").unlink()
    with pytest.raises(ModelSpecError, match="pytorch_model.bin.index.json names 1 missing shard"):
        load_model(f"dir:{folder}", device="cpu")


class _Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_a_bin_with_code_in_it_is_refused(tiny_dirs, tmp_path, capsys):
    folder = resave(tiny_dirs["qwen2"], tmp_path / "m", "bin")
    torch.save({"x": _Payload()}, folder / "pytorch_model.bin")
    with pytest.raises(ModelSpecError, match="not a weights-only PyTorch checkpoint"):
        load_model(f"dir:{folder}", device="cpu")
    assert "code ran" not in capsys.readouterr().out


def test_one_format_is_fetched_from_a_repository_with_both():
    listing = ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
               "model.safetensors.index.json", "pytorch_model.bin", "tokenizer.json", "README.md", "tf_model.h5"]  # fmt: skip
    assert checkpoint_files(listing) == listing[:4] + ["tokenizer.json"]
    opt = ["config.json", "pytorch_model.bin", "vocab.json", "merges.txt", "special_tokens_map.json",
           "tokenizer_config.json", "flax_model.msgpack", "generation_config.json"]  # fmt: skip
    assert sorted(checkpoint_files(opt)) == sorted(set(opt) - {"flax_model.msgpack"})
    with pytest.raises(ValueError, match="no \\*.safetensors or pytorch_model\\*.bin weights"):
        checkpoint_files(["config.json", "tf_model.h5"])


@pytest.fixture(scope="module")
def slow_and_fast(tmp_path_factory):
    """One byte-level BPE (OPT's kind) saved as a slow tokenizer (vocab.json + merges.txt and a
    GPT2Tokenizer config that prepends </s>, as OPT's does) and as a fast one (tokenizer.json)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("tokenizers")
    slow, fast = root / "slow", root / "fast"
    slow.mkdir()
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=["<pad>", "</s>", "<unk>"], initial_alphabet=alphabet)
    bpe.train_from_iterator(
        ["def add(a, b):\n    return a + b", "the quick brown fox jumps over the dog"] * 30, trainer
    )
    bpe.model.save(str(slow))
    special = {"bos_token": "</s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
    config = {"tokenizer_class": "GPT2Tokenizer", "add_bos_token": True} | special
    (slow / "tokenizer_config.json").write_text(json.dumps(config))
    AutoTokenizer.from_pretrained(slow).save_pretrained(fast)
    assert not (slow / "tokenizer.json").exists() and (fast / "tokenizer.json").is_file()
    return slow, fast


def test_slow_and_fast_tokenizers_encode_alike(slow_and_fast, tmp_path):
    from transformers import AutoTokenizer

    slow, fast = slow_and_fast
    text = "def add(a, b):\n    return the quick fox"
    reference = list(AutoTokenizer.from_pretrained(slow).encode(text))
    assert reference[0] == 1 and len(reference) > 5  # </s> first, as OPT's tokenizer does
    for folder in (slow, fast):
        tokenizer = TextTokenizer.of(folder)
        assert tokenizer.encode(text) == reference
        assert tokenizer.decode(reference[1:]) == text
        assert PromptEncoder(folder).encode(text) == reference
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"text": text}) + "\n")
    assert load_prompts(str(prompts), vocab_size=320, tokenizer=TextTokenizer.of(slow)) == [reference]
    assert TextTokenizer.of(tmp_path) is None  # no tokenizer files: arch: models, random prompts


def _damage(folder, how: str):
    """FOLDER's checkpoint damaged as issue 27 found loads crash on; the file the error names."""
    import os
    import struct

    weights = folder / "model.safetensors"
    if how == "truncated":
        data = weights.read_bytes()
        weights.write_bytes(data[: len(data) // 2])
        return weights
    if how == "header 2^62":
        data = weights.read_bytes()
        weights.write_bytes(struct.pack("<Q", 2**62) + data[8:])
        return weights
    if how == "linked to /dev/zero":
        weights.unlink()
        os.symlink("/dev/zero", weights)
        return weights
    config = folder / "config.json"
    if how == "config not JSON":
        config.write_text('{"model_type": "qwen2", "hidden_size": 64,')
    elif how == "config types":
        config.write_text(json.dumps(json.loads(config.read_text()) | {"hidden_size": "64"}))
    elif how == "config a list":
        config.write_text("[1, 2]")
    return config


@pytest.mark.parametrize(
    "how, message",
    [
        ("truncated", "tensor .* beyond the file's"),
        ("header 2^62", "its header claims 4,611,686,018,427,387,904 bytes"),
        ("linked to /dev/zero", "not a regular file"),
        ("config not JSON", "not JSON"),
        ("config types", "hidden_size = '64' is no positive integer"),
        ("config a list", "a JSON list, not an object"),
    ],
)
def test_a_damaged_checkpoint_folder_is_one_line_naming_the_file(tmp_path, how, message):
    from .tiny_models import save_tiny

    folder = save_tiny("qwen2", tmp_path / "m", seed=1)
    named = _damage(folder, how)
    with pytest.raises(ModelSpecError, match=message) as caught:
        load_model(f"dir:{folder}", device="cpu", dtype=torch.float32)
    assert str(named) in str(caught.value) and "\n" not in str(caught.value)


def test_a_tokenizer_that_does_not_parse_is_named(tmp_path):
    (tmp_path / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "BPE", "vocab": 3}}')
    with pytest.raises(ModelSpecError, match=r"tokenizer.json: not a tokenizer \(") as caught:
        TextTokenizer(tmp_path)
    assert "\n" not in str(caught.value)
