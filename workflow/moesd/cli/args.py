"""Argument types and option groups that several commands share (no heavy imports)."""

from __future__ import annotations

import argparse

from moesd.models import checkpoint
from moesd.paper import FIT_VARIANTS
from moesd.theory import VERIFY_TOKENS

# help texts of the path options several commands share
RUN_DIR = "the run's folder (trained: specs resolve there)"
PROMPTS = "the prompts stage's folder"
ANALYSIS = "the run's analysis stage config"


def architecture_counts(text: str):
    """NAME[:key=value,...] (or any model spec) -> ParamCount of its config, without weights."""
    from moesd.architectures import count_parameters
    from moesd.models.spec import ModelSpec

    return count_parameters(checkpoint.hf_config(ModelSpec.of_architecture(text)))


def _int_at_least(least: int, what: str):
    """An argparse type: an integer >= LEAST, its error naming WHAT it must be."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < least:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value

    return parse


positive_int = _int_at_least(1, "a positive integer")  # a count, size or length
non_negative_int = _int_at_least(0, "an integer >= 0")  # warm-up calls


def device_option(text: str) -> str:
    """An argparse type: cpu, cuda or cuda:N (auto where a command takes it); whether this machine
    has CUDA is the command's check (importing torch here would slow every command down)."""
    if text in ("cpu", "cuda", "auto") or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"must be cpu, cuda or cuda:N, got {text!r}")


def check_cuda(device_text: str | None, option: str = "--device") -> None:
    """A one-line error where DEVICE_TEXT asks for CUDA and this torch has none."""
    if device_text and device_text.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"{option} {device_text}: this torch sees no CUDA device")


def batch_sizes(text: str) -> list[int]:
    """ "1 2 4" or "1,2,4" -> [1, 2, 4]; positive integers only."""
    try:
        values = [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"batch sizes must be integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be positive integers, got {text!r}")
    return values


def add_model_options(p: argparse.ArgumentParser) -> None:
    """Target, draft and hardware of the paper's speedup model, and its conventions."""
    p.add_argument("--target", required=True, help="target NAME[:key=value,...] of data/architectures, or a model spec")
    p.add_argument("--draft", required=True, help="draft NAME[:key=value,...] of data/architectures, or a model spec")
    p.add_argument("--hardware", required=True, help="NAME or NxNAME from data/hardware.yaml, or probe:ENV.json")
    p.add_argument(
        "--gpus", type=positive_int, default=None, help="GPUs serving the target (default 1 or the N of NxNAME)"
    )
    p.add_argument("--variant", choices=FIT_VARIANTS, default="eq4", help="Algorithm 1 line 11 reading (default eq4)")
    p.add_argument(
        "--verify-tokens",
        choices=VERIFY_TOKENS,
        default="gamma",
        help="tokens per sequence the verification forward scores (default gamma, as Eq. 2 prints it)",
    )
    p.add_argument("--bandwidth-scope", choices=("aggregate", "per_gpu"), default="aggregate")
    p.add_argument("--bytes-per-param", type=float, default=2.0, help="weight bytes per parameter (default 2, bf16)")


def add_fit_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dense-convention", choices=("non_routed", "non_ffn"), default="non_routed")
    p.add_argument("--n-starts", type=positive_int, default=8)
    p.add_argument("--seed", type=int, default=0)


def fit_options(args) -> dict:
    """run_fit's keyword options from the parsed model and fit options."""
    return {
        "variant": args.variant,
        "verify_tokens": args.verify_tokens,
        "dense_convention": args.dense_convention,
        "bandwidth_scope": args.bandwidth_scope,
        "bytes_per_param": args.bytes_per_param,
        "n_starts": args.n_starts,
        "seed": args.seed,
    }


def add_paths(p: argparse.ArgumentParser, **helps: str | None) -> None:
    """Required path options, one per keyword (run_dir -> --run-dir), each with its help text."""
    from pathlib import Path

    for name, text in helps.items():
        p.add_argument(f"--{name.replace('_', '-')}", required=True, type=Path, help=text)


def add_command(sub, name: str, func, help: str, **paths: str) -> argparse.ArgumentParser:
    """Subcommand NAME running FUNC, with the required path options PATHS (add_paths); its parser."""
    p = sub.add_parser(name, help=help)
    add_paths(p, **paths)
    p.set_defaults(func=func)
    return p
