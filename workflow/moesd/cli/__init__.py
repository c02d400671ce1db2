"""The `moesd` command line: one subcommand per stage or tool.

Command-line glue only: each module here serves one rule file of workflow/rules (its commands
read files and arguments, call the domain modules, write the outputs) and imports nothing heavy
at module level, so that building the parser, and the light commands, import no torch.

    environment.py probe-hardware                         rules/environment.smk
    theory.py      theory, simulate, fit, fit-quality, plot-fit   rules/theory.smk
    engine.py      bench-forward                          rules/engine.smk
    download.py    download                               rules/download.smk
    models.py      train, prompts                         rules/models.smk
    acceptance.py  acceptance, routing, plot-routing      rules/acceptance.smk
    latency.py     latency                                rules/latency.smk
    fit.py         speedup, fit-run                       rules/fit.smk
    figures.py     figures                                rules/figures.smk
    claims.py      claims                                 rules/claims.smk
    tools.py       params, predict                        (tools, no rule)
    generate.py    generate                               (tool, no rule)

Bad input (a missing file, an unknown architecture or hardware, a malformed table or config)
ends with one line, `moesd: error: ...`, and exit status 2, before any long work starts; a
failure inside vLLM ends with its root error in one line and exit status 1.
"""

from __future__ import annotations

import argparse
import sys

from moesd.backends.vllm import VllmFailure
from moesd.cli import (
    acceptance,
    claims,
    download,
    engine,
    environment,
    figures,
    fit,
    generate,
    latency,
    models,
    theory,
    tools,
)
from moesd.io import StageFailure

COMMAND_MODULES = (
    theory,
    tools,
    environment,
    engine,
    download,
    models,
    acceptance,
    latency,
    fit,
    figures,
    claims,
    generate,
)
# every error the domain raises for bad input is a ValueError (ConfigError, ModelSpecError, ...)
EXPECTED_ERRORS = (ValueError, FileNotFoundError, KeyError)


class OneLineParser(argparse.ArgumentParser):
    """An argument error in one line, naming the argument, without the usage block above it."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="moesd", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    for module in COMMAND_MODULES:
        module.add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except EXPECTED_ERRORS as error:
        text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)  # no repr quotes
        message = text.splitlines()[0] if text else type(error).__name__
        if isinstance(error, FileNotFoundError) and error.filename:
            message = f"{error.filename}: no such file"
        parser.exit(2, f"moesd: error: {message}\n")
    except (VllmFailure, StageFailure) as error:  # vLLM failed, or a stage measured nothing of a model
        parser.exit(1, f"moesd: {error}\n")


if __name__ == "__main__":
    sys.exit(main())
