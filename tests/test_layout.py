"""The package's layout: command-line glue in moesd.cli, one module per rule file; figure names
defined once; no module named for its role instead of its content."""

import argparse
import re

from moesd.cli import COMMAND_MODULES
from moesd.figures import MEASURED_FIGURES, NOTEBOOKS, THEORY_FIGURES
from moesd.paths import REPO_ROOT

PACKAGE = REPO_ROOT / "workflow" / "moesd"


def command_modules() -> dict[str, str]:
    """Subcommand -> the name of the moesd.cli module that defines it."""
    owners = {}
    for module in COMMAND_MODULES:
        sub = argparse.ArgumentParser().add_subparsers()
        module.add_parsers(sub)
        for name in sub.choices:
            assert name not in owners, f"{name} defined twice"
            owners[name] = module.__name__.rsplit(".", 1)[1]
    return owners


def test_each_rule_file_calls_commands_of_its_own_cli_module():
    owners = command_modules()
    called = 0
    for rules in sorted((REPO_ROOT / "workflow" / "rules").glob("*.smk")):
        for command in re.findall(r"\"moesd ([a-z0-9-]+)", rules.read_text()):
            assert owners[command] == rules.stem, f"{rules.name} calls `moesd {command}` of cli/{owners[command]}.py"
            called += 1
    assert called >= 12


def test_no_module_is_named_for_its_role():
    names = [p.stem for p in PACKAGE.rglob("*.py")]
    assert not [n for n in names if n.endswith(("_stage", "_cli")) or n == "stages"]


def test_figure_names_are_defined_once_and_match_the_notebooks():
    assert sorted(NOTEBOOKS) == sorted(p.stem for p in (REPO_ROOT / "notebooks").glob("*.ipynb"))
    assert set(MEASURED_FIGURES) <= set(NOTEBOOKS) and not set(THEORY_FIGURES) & set(NOTEBOOKS)
    for rules in (REPO_ROOT / "workflow" / "rules").glob("*.smk"):  # the rule files read the names, never list them
        assert "fig2_speedup" not in rules.read_text() and "active_experts" not in rules.read_text(), rules.name


def test_the_code_cites_the_paper_not_a_file_it_does_not_have():
    for path in [*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.yaml"), *(REPO_ROOT / "tests").glob("*.py")]:
        if path.name != "test_layout.py":
            assert "PAPER.md" not in path.read_text(), path
