"""A checkpoint folder checked before anything loads it: its config.json (JSON, an object, sizes
that are integers), its weight files (regular files; a safetensors header that fits its file,
each tensor's bytes inside it) and its tokenizer (it parses). Each failure is one line naming
the file, where loading would have raised a traceback minutes into a job, or mapped 2^62 bytes.
"""

from __future__ import annotations

import json
import math
import stat
import struct
from pathlib import Path

from moesd.models.spec import ModelSpecError

# config.json keys that are sizes or counts where a family has them (None: the family's default)
SIZES = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
         "intermediate_size", "ffn_dim", "max_position_embeddings", "num_experts", "num_local_experts",
         "num_experts_per_tok", "moe_intermediate_size", "word_embed_proj_dim", "head_dim", "n_routed_experts")  # fmt: skip
COUNTS = ("shared_expert_intermediate_size", "n_shared_experts", "first_k_dense_replace")  # may be 0
REALS = ("rms_norm_eps", "layer_norm_eps", "rope_theta", "initializer_range")
SAFETENSORS_DTYPES = {"BOOL", "U8", "I8", "I16", "U16", "I32", "U32", "I64", "U64", "F16", "BF16", "F32", "F64",
                      "F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64"}  # fmt: skip


def read_config(path: Path) -> dict:
    """PATH's config (a config.json), its sizes checked; ModelSpecError in one line naming it."""
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ModelSpecError(f"{path}: no config.json (a checkpoint folder holds one)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelSpecError(f"{path}: not JSON ({error})") from None
    if not isinstance(raw, dict):
        raise ModelSpecError(f"{path}: a JSON {type(raw).__name__}, not an object of config keys")
    for key, least in [(k, 1) for k in SIZES] + [(k, 0) for k in COUNTS]:
        value = raw.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < least):
            raise ModelSpecError(f"{path}: {key} = {value!r} is no {'positive' if least else 'non-negative'} integer")
    for key in REALS:
        value = raw.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0
        ):
            raise ModelSpecError(f"{path}: {key} = {value!r} is no finite non-negative number")
    if not isinstance(raw.get("model_type", ""), str):
        raise ModelSpecError(f"{path}: model_type = {raw['model_type']!r} is no name")
    return raw


def check_weight_file(path: Path) -> None:
    """PATH is a regular file (not a link to a device or a folder) and, for safetensors, its
    header fits the file and every tensor's bytes lie inside it."""
    try:
        mode = path.stat().st_mode  # through links: a link to /dev/zero is a device
    except OSError as error:
        raise ModelSpecError(f"{path}: cannot be read ({error.strerror})") from None
    if not stat.S_ISREG(mode):
        raise ModelSpecError(f"{path}: not a regular file (a weight file must be one)")
    size = path.stat().st_size
    if size == 0:
        raise ModelSpecError(f"{path}: empty")
    if path.suffix != ".safetensors":
        return
    with path.open("rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise ModelSpecError(f"{path}: {size} bytes, shorter than a safetensors header")
        length = struct.unpack("<Q", head)[0]
        if length > size - 8:
            raise ModelSpecError(f"{path}: its header claims {length:,} bytes, the file has {size:,} (truncated?)")
        try:
            header = json.loads(handle.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ModelSpecError(f"{path}: its safetensors header is not JSON (damaged?)") from None
    if not isinstance(header, dict):
        raise ModelSpecError(f"{path}: its safetensors header is not an object")
    data = size - 8 - length
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in offsets)
            or entry.get("dtype") not in SAFETENSORS_DTYPES
        ):
            raise ModelSpecError(f"{path}: tensor {name!r} has no valid dtype and data_offsets in the header")
        if not 0 <= offsets[0] <= offsets[1] <= data:
            raise ModelSpecError(
                f"{path}: tensor {name!r} lies at bytes {offsets[0]:,}-{offsets[1]:,}, beyond the file's {data:,} "
                "bytes of data (truncated?)"
            )


def check_tokenizer(folder: Path) -> None:
    """FOLDER's tokenizer.json, where it has one, parses as a tokenizer."""
    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        return
    from tokenizers import Tokenizer

    try:
        Tokenizer.from_file(str(path))
    except Exception as error:  # the tokenizers library raises its own Exception with serde's text
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ModelSpecError(f"{path}: not a tokenizer ({first[:200]})") from None


def check_folder(folder: Path) -> None:
    """Everything a load of FOLDER reads, checked first (moesd.models.loading calls it)."""
    from moesd.models.files import CheckpointFilesError, weight_files

    read_config(Path(folder) / "config.json")
    try:
        files = weight_files(folder)
    except CheckpointFilesError as error:
        raise ModelSpecError(str(error)) from None
    for path in files:
        check_weight_file(path)
