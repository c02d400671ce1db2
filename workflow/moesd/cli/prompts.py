"""Command of the prompts stage (workflow/rules/models.smk): `moesd prompts` encodes every prompt
set with each pair's target tokenizer and writes their length statistics (moesd.prompts)."""

from __future__ import annotations

from pathlib import Path

from moesd.cli.args import RUN_DIR, add_command


def cmd_prompts(args) -> int:
    """Every prompt set encoded with each pair's target tokenizer; length statistics."""
    from moesd.config import load_config, prompt_sources
    from moesd.io import write_csv
    from moesd.prompts import encode_prompt_sets

    config = load_config(args.config)
    table = encode_prompt_sets(prompt_sources(config), config["pairs"], Path(args.run_dir), Path(args.out))
    write_csv(Path(args.out) / "stats.csv", table)
    print(table.to_string(index=False))
    return 0


def add_parsers(sub) -> None:
    add_command(
        sub,
        "prompts",
        cmd_prompts,
        "encode the prompt sets with each pair's tokenizer",
        config="the prompts stage's config",
        run_dir=RUN_DIR,
        out="folder of the encoded prompt files",
    )
