"""The README and docs/ stay true: every command, rule, file and page they name exists; the
architecture page names every module, command and rule, and its rule graph is the workflow's;
the claims page quotes the margin and support as the code defines them."""

import re
import subprocess
import sys

import pytest
from moesd.claims import MARGIN, SUPPORT
from moesd.paths import REPO_ROOT

from .test_layout import MODULES, command_modules

DOCS = REPO_ROOT / "docs"
PAGES = {path.name: path.read_text() for path in [REPO_ROOT / "README.md", *sorted(DOCS.glob("*.md"))]}
REQUIRED_PAGES = (
    "cluster.md",
    "vllm.md",
    "configs.md",
    "architecture.md",
    "claims.md",
    "benchmarks.md",
    "open_choices.md",
)
RULES = set(
    re.findall(
        r"^rule (\w+):",
        "\n".join(p.read_text() for p in [REPO_ROOT / "Snakefile", *(REPO_ROOT / "workflow/rules").glob("*.smk")]),
        re.M,
    )
)
# options of snakemake that take a value (the next word is no target)
VALUE_OPTIONS = {"--cores", "-c", "--configfile", "--profile", "--config", "--default-resources", "--report", "--sdm",
                 "--executor", "--resources", "--set-resources", "-j", "--jobs"}  # fmt: skip


def code_of(text: str) -> str:
    """The text's code: fenced blocks and inline spans, one per line."""
    fenced = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
    inline = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    return "\n".join(fenced + inline)


def test_the_required_pages_exist_and_the_readme_links_them():
    readme = PAGES["README.md"]
    for page in REQUIRED_PAGES:
        assert page in PAGES, page
        assert f"docs/{page}" in readme, f"the README does not link docs/{page}"


def test_the_readme_is_short():
    lines = PAGES["README.md"].splitlines()
    assert len(lines) <= 130, len(lines)
    assert len(PAGES["README.md"].split()) <= 1100


def test_every_command_named_exists():
    commands = set(command_modules())
    named = 0
    for page, text in PAGES.items():
        for command in re.findall(r"(?:^|[\s(`])moesd ([a-z][a-z0-9-]*)", code_of(text), re.M):
            assert command in commands, f"{page} names `moesd {command}`, which does not exist"
            named += 1
    assert named >= 15


def test_every_snakemake_target_named_is_a_rule_or_a_path():
    named = 0
    for page, text in PAGES.items():
        for line in code_of(text).splitlines():
            for command in re.findall(r"snakemake ([^|;&#]*)", line):
                words = command.split()
                for before, word in zip(["", *words], words, strict=False):
                    if word.startswith("-") or before in VALUE_OPTIONS or word.startswith(("$", "<", "'", '"')):
                        continue
                    if "/" in word or "." in word or "=" in word or word.isdigit() or word == "...":
                        continue
                    assert word in RULES, f"{page}: `snakemake {command.strip()}` names {word!r}, which is no rule"
                    named += 1
    assert named >= 8


def test_every_repository_path_named_exists():
    roots = (
        "config/",
        "workflow/",
        "docs/",
        "profiles/",
        "envs/",
        "notebooks/",
        "tests/",
        "data/paper",
        "data/architectures",
    )
    checked = 0
    for page, text in PAGES.items():
        pattern = r"(?<![\w./-])((?:" + "|".join(map(re.escape, roots)) + r")[\w./-]*)"
        for path in set(re.findall(pattern, text)):
            path = path.rstrip(".,:)")
            if "<" in path or "*" in path or path.endswith(("/mine.yaml", "mine.lock.json")) or ".lock.json" in path:
                continue
            assert (REPO_ROOT / path).exists(), f"{page} names {path}, which does not exist"
            checked += 1
    assert checked >= 20


def test_the_architecture_page_names_every_module_command_and_rule():
    text = PAGES["architecture.md"]
    for module in MODULES:
        top, *rest = module.split(".")
        assert f"moesd.{top}" in text, f"architecture.md does not name moesd.{top}"
        if rest:
            assert f"moesd.{module}" in text or f"`{rest[-1]}`" in text, f"architecture.md does not name moesd.{module}"
    for command in command_modules():
        assert f"`{command}`" in text, f"architecture.md does not name the command {command}"
    for rule in RULES - {"all"}:
        assert f"`{rule}`" in text, f"architecture.md does not name the rule {rule}"


@pytest.mark.slow  # three rule graphs (about 4 s)
def test_the_architecture_page_draws_the_workflows_rule_graph():
    script = REPO_ROOT / "workflow" / "scripts" / "rulegraph.py"
    result = subprocess.run([sys.executable, str(script)], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    drawn = result.stdout.strip()
    start, end = drawn.splitlines()[0], drawn.splitlines()[-1]
    page = PAGES["architecture.md"]
    assert page[page.index(start) : page.index(end) + len(end)] == drawn, (
        "docs/architecture.md's rule graph differs from the workflow's: python workflow/scripts/rulegraph.py"
    )
    for rule in RULES - {
        "all",
        "theory",
        "engine_check",
        "models",
        "acceptance",
        "latency",
        "fit",
        "figures",
        "claims",
        "notebooks",
        "environments",
    }:
        assert f" {rule}" in drawn, f"{rule} is missing from the drawn graph"


def test_the_claims_page_quotes_the_codes_margin_and_support():
    text = PAGES["claims.md"]
    assert f"> {MARGIN}" in text and f"> {SUPPORT}" in text
    for claim in ("C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9", "C10", "Eq. 8"):
        assert f"| {claim} |" in text, claim
