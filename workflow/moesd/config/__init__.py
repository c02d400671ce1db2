"""The experiment config: `schema` validates it (types, ranges, defaults from the schema file),
`checks` checks what the schema cannot state (across keys, against the project's data),
`platforms` resolves the platforms and refuses what their devices cannot hold, `queries` answers
what the workflow and the stages ask of a validated config, and `slices` fans the measuring
stages out into one job per slice. The names below
are the package's interface: `from moesd.config import load_config`.
"""

from moesd.config.errors import ConfigError
from moesd.config.queries import (
    STAGE_SECTIONS,
    common_rounds,
    compare_tables,
    config_part,
    declared_drafts,
    engine_pairs,
    lock_path,
    ours_e2e_entries,
    prompt_sources,
    sigma_pair,
    spec_kind,
    uses_trained_pair,
)
from moesd.config.schema import SCHEMA_FILE, check_unique_keys, load_config, validate_config
from moesd.config.slices import (
    acceptance_slices,
    acceptance_vllm_slices,
    e2e_vllm_slices,
    latency_slices,
    narrowed,
    routing_platform,
)

__all__ = [
    "SCHEMA_FILE",
    "ConfigError",
    "acceptance_slices",
    "acceptance_vllm_slices",
    "common_rounds",
    "compare_tables",
    "STAGE_SECTIONS",
    "config_part",
    "declared_drafts",
    "e2e_vllm_slices",
    "engine_pairs",
    "latency_slices",
    "check_unique_keys",
    "load_config",
    "lock_path",
    "narrowed",
    "ours_e2e_entries",
    "prompt_sources",
    "routing_platform",
    "sigma_pair",
    "spec_kind",
    "uses_trained_pair",
    "validate_config",
]
