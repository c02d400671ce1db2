"""The lean decoder (moesd's measuring instrument) and how models are specified and loaded."""

from moesd.models.cache import KVCache
from moesd.models.config import ModelConfig, ModelConfigError, from_hf
from moesd.models.loading import ModelSpecError, load_model, parse_spec
from moesd.models.transformer import Transformer

__all__ = [
    "KVCache",
    "ModelConfig",
    "ModelConfigError",
    "ModelSpecError",
    "Transformer",
    "from_hf",
    "load_model",
    "parse_spec",
]
