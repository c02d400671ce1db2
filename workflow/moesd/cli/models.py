"""Commands of the models stage (workflow/rules/models.smk): `moesd train` trains the tiny MoE
target and distils its dense draft (moesd.train); `moesd prompts` encodes every prompt set with
each pair's target tokenizer (moesd.prompts). Cheap checks (prompt sets, model specs) run before
any long work."""

from __future__ import annotations

from pathlib import Path

from moesd.cli.args import RUN_DIR, add_command
from moesd.models import checkpoint


def check_pair_specs(pairs: list[dict]) -> None:
    """Parse every pair's specs and resolve hub and folder ones (download or cache), before long work."""
    from moesd.models.spec import parse_spec

    for pair in pairs:
        for role in ("target", "draft"):
            spec = parse_spec(pair[role])
            if spec.kind in ("hf", "dir"):
                checkpoint.folder(spec)


def cmd_train(args) -> int:
    from moesd.config import load_config
    from moesd.prompts import check_prompt_source
    from moesd.train import build_models

    config = load_config(args.config)
    for source in config["acceptance"]["datasets"]:  # fail on a broken prompt set before training
        check_prompt_source(source)
    check_pair_specs(config["pairs"])
    manifest = build_models(config["models"], Path(args.out))
    target, draft = manifest["target"], manifest["draft"]
    print(f"target {target['parameters']:,} parameters, final loss {target['loss_curve'][-1]['loss']:.3f}")
    print(f"draft {draft['parameters']:,} parameters, final KL {draft['loss_curve'][-1]['loss']:.3f}")
    return 0


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
        "train",
        cmd_train,
        "the models stage: train the tiny MoE target and distil the draft",
        config="the models stage's config",
        out="folder for target/, draft/ and manifest.json",
    )

    add_command(
        sub,
        "prompts",
        cmd_prompts,
        "encode the prompt sets with each pair's tokenizer",
        config="the prompts stage's config",
        run_dir=RUN_DIR,
        out="folder of the encoded prompt files",
    )
