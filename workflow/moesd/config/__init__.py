"""The experiment config: `schema` validates it (types, ranges, defaults from the schema file),
`checks` checks what the schema cannot state (across keys, against the project's data), and
`queries` answers what the workflow and the stages ask of a validated config. The names below
are the package's interface: `from moesd.config import load_config`.
"""

from moesd.config.errors import ConfigError
from moesd.config.queries import (
    compare_tables,
    config_part,
    declared_drafts,
    engine_pairs,
    latency_slices,
    lock_path,
    ours_e2e_entries,
    prompt_sources,
    sigma_pair,
    spec_kind,
    uses_trained_pair,
)
from moesd.config.schema import SCHEMA_FILE, load_config, validate_config

__all__ = [
    "SCHEMA_FILE",
    "ConfigError",
    "compare_tables",
    "config_part",
    "declared_drafts",
    "engine_pairs",
    "latency_slices",
    "load_config",
    "lock_path",
    "ours_e2e_entries",
    "prompt_sources",
    "sigma_pair",
    "spec_kind",
    "uses_trained_pair",
    "validate_config",
]
