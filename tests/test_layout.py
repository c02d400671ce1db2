"""The package's layout: data flows one way (config -> models -> acceptance -> latency -> speedup
-> fit -> figures -> claims), with no import cycle; command-line glue in moesd.cli, each module
named for its main command; figure names defined once; no module named for its role instead of
its content."""

import argparse
import ast
import re

from moesd.cli import COMMAND_MODULES
from moesd.figures import MEASURED_FIGURES, NOTEBOOKS, THEORY_FIGURES
from moesd.paths import REPO_ROOT

PACKAGE = REPO_ROOT / "workflow" / "moesd"

# Each module's place in the stage order (the longest matching prefix decides). A module may
# import its own stage's and earlier stages' modules, never a later stage's.
STAGES = [
    (  # what every stage reads: paths, files, the paper's numbers, equations, values, the clock
        "foundation",
        ["paths", "io", "columns", "paper", "theory", "architectures", "hardware", "bootstrap", "timing",
         "devices", "families", "hub_lock", "prompt_sets", "models.spec", "models.files"],
    ),
    ("config", ["config"]),
    ("download", ["download", "hub_client"]),
    (  # the instrument: models, decoding, vLLM, prompts, training, the engine check, job sizes
        "models",
        ["models", "decode", "backends", "prompts", "corpus", "train", "engine_check", "resources"],
    ),
    ("acceptance", ["acceptance", "routing"]),
    ("latency", ["latency"]),
    ("speedup", ["speedup", "bandwidth", "step_profile"]),
    ("fit", ["fit", "fit_families", "predict", "simulate"]),
    ("figures", ["figures"]),
    ("claims", ["claims"]),
    ("cli", ["cli", "__main__"]),
]  # fmt: skip


def module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return [name for name in names if name]


MODULES = module_names()


def stage_of(module: str) -> int:
    """The index in STAGES of MODULE (a name relative to moesd)."""
    best, where = -1, None
    for index, (_, prefixes) in enumerate(STAGES):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, where = len(prefix), index
    assert where is not None, f"moesd.{module} has no stage in STAGES: place it"
    return where


def imports() -> dict[str, set[str]]:
    """module -> the moesd modules it imports, at module level or inside a function."""
    edges = {}
    for module in MODULES:
        path = PACKAGE / (module.replace(".", "/") + ".py")
        if not path.is_file():
            path = PACKAGE / module.replace(".", "/") / "__init__.py"
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("moesd"):
                base = node.module.removeprefix("moesd").lstrip(".")
                # `from moesd.models import checkpoint` imports the module moesd.models.checkpoint
                names = [
                    f"{base}.{a.name}".lstrip(".") for a in node.names if f"{base}.{a.name}".lstrip(".") in MODULES
                ]
                names = names or [base]
            elif isinstance(node, ast.Import):
                names = [a.name.removeprefix("moesd").lstrip(".") for a in node.names if a.name.startswith("moesd")]
            found |= {name for name in names if name and name != module}
        edges[module] = found
    return edges


def test_every_module_has_a_stage():
    for module in MODULES:
        stage_of(module)


def imports_against_the_order(edges: dict[str, set[str]]) -> list[str]:
    """One line per import of a later stage's module in EDGES (module -> modules it imports)."""
    return [
        f"moesd.{module} ({STAGES[stage_of(module)][0]}) imports moesd.{other} ({STAGES[stage_of(other)][0]})"
        for module, others in edges.items()
        for other in others
        if stage_of(other) > stage_of(module)
    ]


def import_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """A cycle of EDGES (its modules, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for other in sorted(edges.get(module, ())):
            if state.get(other) == 1:
                return path[path.index(other) :] + [other]
            if other not in state and (cycle := visit(other, [*path, other])):
                return cycle
        state[module] = 2
        return None

    for module in sorted(edges):
        if module not in state and (cycle := visit(module, [module])):
            return cycle
    return None


def test_no_module_imports_a_later_stage():
    against = imports_against_the_order(imports())
    assert not against, "\n".join(against)


def test_no_import_cycle():
    cycle = import_cycle(imports())
    assert cycle is None, "import cycle: " + " -> ".join(f"moesd.{m}" for m in cycle)


def test_a_broken_order_and_a_cycle_are_caught():
    """The checks above can fail: the package's imports plus one of a claim from a foundation
    module are against the order, and plus the old spec <-> download pair form a cycle."""
    edges = imports()
    broken = edges | {"theory": edges["theory"] | {"claims.catalogue"}}
    assert imports_against_the_order(broken) == ["moesd.theory (foundation) imports moesd.claims.catalogue (claims)"]
    cyclic = edges | {"models.spec": edges["models.spec"] | {"download"}}
    assert import_cycle(cyclic) is not None and "download" in import_cycle(cyclic)


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


def test_each_cli_module_is_named_for_its_main_command():
    owners = command_modules()
    assert len(owners) >= 24
    for module in set(owners.values()):
        assert module.replace("_", "-") in owners and owners[module.replace("_", "-")] == module, module


def test_each_command_a_rule_calls_exists():
    owners = command_modules()
    called = 0
    for rules in sorted((REPO_ROOT / "workflow" / "rules").glob("*.smk")):
        for command in re.findall(r"\"(?:\{params\.hub\} )?moesd ([a-z0-9-]+)", rules.read_text()):
            assert command in owners, f"{rules.name} calls `moesd {command}`, which no cli module defines"
            called += 1
    assert called >= 15


def test_no_module_is_named_for_its_role():
    names = [p.stem for p in PACKAGE.rglob("*.py")]
    assert not [n for n in names if n.endswith(("_stage", "_cli")) or n in ("stages", "utils", "helpers", "misc")]
    assert "config" not in [p.stem for p in (PACKAGE / "models").glob("*.py")]  # one `config` in the package


def test_figure_names_are_defined_once_and_match_the_notebooks():
    assert sorted(NOTEBOOKS) == sorted(p.stem for p in (REPO_ROOT / "notebooks").glob("*.ipynb"))
    assert set(MEASURED_FIGURES) <= set(NOTEBOOKS) and not set(THEORY_FIGURES) & set(NOTEBOOKS)
    for rules in (REPO_ROOT / "workflow" / "rules").glob("*.smk"):  # the rule files read the names, never list them
        assert "fig2_speedup" not in rules.read_text() and "active_experts" not in rules.read_text(), rules.name


def test_the_repository_cites_the_paper_not_a_file_it_does_not_have():
    """Code, configs, tests and docs cite arXiv 2505.19645 itself, never the specification files
    of the project's steering, and no test docstring cites an issue instead of saying what it checks."""
    roots = [PACKAGE, REPO_ROOT / "tests", REPO_ROOT / "config", REPO_ROOT / "docs", REPO_ROOT / "workflow"]
    files = {p for root in roots for p in root.rglob("*") if p.suffix in (".py", ".yaml", ".md", ".smk", ".rst")}
    files |= {REPO_ROOT / "README.md", REPO_ROOT / "Snakefile"}
    for path in sorted(files):
        if path.name == "test_layout.py":
            continue
        text = path.read_text()
        assert "PAPER.md" not in text and "DESIGN.md" not in text, path
        if path.parent.name == "tests":
            assert not re.search(r"[Ii]ssue \d+, item", text), path


def test_notebooks_and_scripts_import_names_that_exist():
    """The notebooks and workflow/scripts import moesd's names too; a name moved between modules
    must move there as well (their code runs only in the slow workflow tests)."""
    import importlib
    import json

    sources = {p: p.read_text() for p in (REPO_ROOT / "workflow" / "scripts").glob("*.py")}
    for notebook in (REPO_ROOT / "notebooks").glob("*.ipynb"):
        cells = json.loads(notebook.read_text())["cells"]
        sources[notebook] = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    sources[REPO_ROOT / "workflow/scripts/gpu_check.sh"] = (REPO_ROOT / "workflow/scripts/gpu_check.sh").read_text()
    checked = 0
    for path, text in sources.items():
        for module, names in re.findall(r"^\s*from (moesd[\w.]*) import ([\w, ]+)$", text, re.M):
            imported = importlib.import_module(module)
            for name in (n.strip() for n in names.split(",")):
                is_module = hasattr(imported, "__path__") and importlib.util.find_spec(f"{module}.{name}")
                assert hasattr(imported, name) or is_module, f"{path.name} imports {name} from {module}, which has none"
                checked += 1
    assert checked >= 10
