"""The lean decoder (moesd's measuring instrument) and how models are specified and loaded.

Names are imported on first use, so that `moesd.models.spec` (model specs, no torch) can be read
by light commands without importing torch.
"""

import importlib

_WHERE = {
    "KVCache": "moesd.models.cache",
    "ModelConfig": "moesd.models.model_config",
    "ModelConfigError": "moesd.models.model_config",
    "from_hf": "moesd.models.model_config",
    "ModelSpec": "moesd.models.spec",
    "ModelSpecError": "moesd.models.spec",
    "parse_spec": "moesd.models.spec",
    "load_model": "moesd.models.loading",
    "Transformer": "moesd.models.transformer",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'moesd.models' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
