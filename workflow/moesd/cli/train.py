"""Command of the models stage's training (workflow/rules/models.smk): `moesd train` trains the
tiny MoE target and distils its dense draft (moesd.train). Cheap checks (prompt sets, model
specs) run before any long work."""

from __future__ import annotations

from pathlib import Path

from moesd.cli.args import add_command
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


def add_parsers(sub) -> None:
    add_command(
        sub,
        "train",
        cmd_train,
        "the models stage: train the tiny MoE target and distil the draft",
        config="the models stage's config",
        out="folder for target/, draft/ and manifest.json",
    )
