"""The experiment config's schema (package data: schemas/config.schema.yaml, every key with its
meaning and default): defaults filled in place, types and ranges checked, then the cross-key
checks of moesd.config.checks. Every failure is one line naming the key.
"""

from __future__ import annotations

import copy
import functools
import math
import re
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

from moesd.config.checks import check_config
from moesd.config.errors import ConfigError

# package data (pyproject.toml), so an installed moesd finds it as an editable one does
SCHEMA_FILE = resources.files("moesd") / "schemas" / "config.schema.yaml"


def _fill_defaults(schema: dict, instance):
    """Fill missing keys from the schema's defaults, recursively (objects and arrays' items)."""
    types = schema.get("type")
    types = types if isinstance(types, list) else [types]  # a key may be an array or null
    if isinstance(instance, list) and "array" in types and isinstance(schema.get("items"), dict):
        for item in instance:
            _fill_defaults(schema["items"], item)
        return instance
    if not isinstance(instance, dict) or "object" not in types:
        return instance
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            _fill_defaults(sub, instance[key])
    return instance


def _key(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _strict_integer(checker, instance) -> bool:
    """An integer is an int, never a float (8.0 validated as an integer and then crashed a stage
    that took range(8.0)) and never a bool."""
    return isinstance(instance, int) and not isinstance(instance, bool)


# JSON Schema counts 8.0 as an integer; a config key typed integer takes ints only
_TYPES = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer)


def _pattern(validator, pattern: str, instance, schema):
    """JSON Schema's `pattern` with ECMA-262's `$`, which matches only at the end of the string.
    Python's also matches before a final newline: an experiment name ending in a newline passed
    ^[A-Za-z0-9_.-]*$, and every shell command that named it split at the newline."""
    if validator.is_type(instance, "string"):
        python = pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith(r"\$") else pattern
        if not re.search(python, instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


_VALIDATOR = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, validators={"pattern": _pattern}, type_checker=_TYPES
)


@functools.lru_cache(maxsize=4)
def _schema(text: str) -> dict:
    """The schema parsed from its TEXT, once per text (validation reads it, never changes it)."""
    return yaml.safe_load(text)


MAX_VALUES = 100_000  # an experiment config holds a few hundred; a YAML alias bomb, billions
MAX_MESSAGE = 300  # characters of a schema error's own text (it quotes the offending value)


def _count_values(node, budget: int) -> int:
    """The values in NODE with YAML aliases expanded (each reference counted again), stopping
    once BUDGET is spent: the number left (below 0 past it)."""
    stack = [node]
    while stack and budget >= 0:
        item = stack.pop()
        budget -= 1
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return budget


def _not_finite(node) -> tuple | None:
    """The path and value of the first number in NODE that is not finite (YAML's .nan and .inf
    are floats, and compare False with every bound: a schema's minimum lets them through)."""
    stack = [((), node)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return path, item
        children = item.items() if isinstance(item, dict) else enumerate(item) if isinstance(item, list) else ()
        stack.extend(reversed([((*path, key), value) for key, value in children]))
    return None


def validate_config(config: dict, schema_file=SCHEMA_FILE) -> dict:
    """Validate CONFIG (filled with defaults in place) and return it; raise ConfigError."""
    schema = _schema(schema_file.read_text())
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ConfigError("config error: <top level>: must be a mapping")
    if _count_values(config, MAX_VALUES) < 0:  # before any walk of it: an alias bomb would hang one
        raise ConfigError(
            f"config error: <top level>: more than {MAX_VALUES:,} values with YAML aliases expanded "
            "(an experiment holds a few hundred: aliases nested into an explosion?)"
        )
    bad = _not_finite(config)
    if bad is not None:
        raise ConfigError(f"config error: {_key(bad[0])}: {bad[1]} is not a finite number")
    _fill_defaults(schema, config)
    validator = _VALIDATOR(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        if error.validator == "additionalProperties":
            extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
            key = _key([*error.absolute_path, extra[0]]) if extra else _key(error.absolute_path)
            raise ConfigError(f"config error: {key}: unknown key")
        message = error.message if len(error.message) <= MAX_MESSAGE else error.message[:MAX_MESSAGE] + " ..."
        raise ConfigError(f"config error: {_key(error.absolute_path)}: {message}")
    check_config(config)
    return config


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last
    silently: a config whose second `repeats:` undoes its first)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str) and key in seen:
                mark = key_node.start_mark
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} twice in one mapping (line {mark.line + 1})", mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str):
    """TEXT parsed by the safe loader, duplicate keys refused (_UniqueKeyLoader)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)


def check_unique_keys(paths) -> None:
    """Each YAML file of PATHS parsed with duplicate keys refused (Snakemake reads --configfile
    files itself, keeping the last of two keys): one line naming the file, key and line."""
    for path in map(Path, paths):
        try:
            load_yaml(path.read_text())
        except OSError:
            continue  # Snakemake says it cannot read the file
        except yaml.constructor.ConstructorError as error:
            raise ConfigError(f"config error: {path}: {error.problem}") from None
        except yaml.YAMLError:
            continue  # Snakemake reports malformed YAML itself


def load_config(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = load_yaml(path.read_text())
    except OSError as error:
        raise ConfigError(f"config error: {path}: cannot read ({error.strerror or type(error).__name__})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise ConfigError(f"config error: {path}{where}: not YAML ({problem})") from None
    if data is None:  # an empty file is no experiment: all defaults would run the default one
        raise ConfigError(f"config error: {path}: empty (no keys); a config with every default is {{}}")
    return validate_config(data)
