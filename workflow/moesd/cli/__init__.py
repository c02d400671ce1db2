"""The `moesd` command line: one subcommand per stage or tool.

Command-line glue only: each module here is named for its main command (`moesd fit` in fit.py,
`moesd engine-check` in engine_check.py) and may hold a few commands of the same work; it reads
files and arguments, calls the domain modules and writes the outputs. Nothing heavy is imported
at module level, so that building the parser, and the light commands, import no torch. The
modules are found, not listed: every module here with an `add_parsers` adds its commands
(`moesd --help` lists them; docs/architecture.md maps each to its rule, which a test checks).

Bad input (a missing file, an unknown architecture or hardware, a malformed table or config)
ends with one line, `moesd: error: ...`, and exit status 2, before any long work starts; a
failure inside vLLM ends with its root error in one line and exit status 1.
"""

from __future__ import annotations

import argparse
import os
import sys

from moesd.backends.vllm import VllmFailure
from moesd.io import StageFailure


def _command_modules() -> tuple:
    """Every module of this package that adds commands (add_parsers), in name order."""
    import importlib
    import pkgutil

    modules = (importlib.import_module(f"{__name__}.{info.name}") for info in pkgutil.iter_modules(__path__))
    return tuple(module for module in modules if hasattr(module, "add_parsers"))


COMMAND_MODULES = _command_modules()
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
        if "MOESD_ROWS_KERNEL" in os.environ:  # a bad switch stops the command before its work
            from moesd.models.rows_kernel import switched_on

            switched_on()
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
