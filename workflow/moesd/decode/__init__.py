"""Batched autoregressive and speculative decoding (lossless rejection sampling)."""

from moesd.decode.engine import GenerationConfig, GenerationResult, PrefillMemo, StepRecord, decode, generate
from moesd.decode.sampling import Verdict, sample, verify

__all__ = [
    "GenerationConfig",
    "GenerationResult",
    "PrefillMemo",
    "StepRecord",
    "Verdict",
    "decode",
    "generate",
    "sample",
    "verify",
]
