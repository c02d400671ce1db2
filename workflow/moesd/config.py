"""Experiment configuration: schema validation with defaults, then checks that need the
project's data (architecture and hardware names). Every failure is one line naming the key."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

from moesd.architectures import ArchitectureError, load_architecture
from moesd.hardware import HardwareError, load_hardware
from moesd.hub_lock import LockFileError, read_lock
from moesd.models.spec import ModelSpecError, parse_spec
from moesd.prompts import PROMPT_SETS

# package data (pyproject.toml), so an installed moesd finds it as an editable one does
SCHEMA_FILE = resources.files("moesd") / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the key."""


def _fill_defaults(schema: dict, instance):
    """Fill missing keys from the schema's defaults, recursively (objects and arrays' items)."""
    if isinstance(instance, list) and schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        for item in instance:
            _fill_defaults(schema["items"], item)
        return instance
    if not isinstance(instance, dict) or schema.get("type") != "object":
        return instance
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = yaml.safe_load(yaml.safe_dump(sub["default"]))  # a deep copy
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
_VALIDATOR = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=_TYPES)


def validate_config(config: dict, schema_file=SCHEMA_FILE) -> dict:
    """Validate CONFIG (filled with defaults in place) and return it; raise ConfigError."""
    schema = yaml.safe_load(schema_file.read_text())
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise ConfigError("config error: <top level>: must be a mapping")
    _fill_defaults(schema, config)
    validator = _VALIDATOR(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        if error.validator == "additionalProperties":
            extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
            key = _key([*error.absolute_path, extra[0]]) if extra else _key(error.absolute_path)
            raise ConfigError(f"config error: {key}: unknown key")
        raise ConfigError(f"config error: {_key(error.absolute_path)}: {error.message}")
    _check_names(config)
    _check_specs(config)
    _check_latency(config)
    _check_analysis(config)
    return config


def _check_names(config: dict) -> None:
    checks = [(f"theory.architectures.{i}", name) for i, name in enumerate(config["theory"]["architectures"])]
    checks.append(("theory.sweep_architecture", config["theory"]["sweep_architecture"]))
    for i, pair in enumerate(config["prediction"]["pairs"]):
        checks += [(f"prediction.pairs.{i}.target", pair["target"]), (f"prediction.pairs.{i}.draft", pair["draft"])]
    sim = config["simulation"]
    checks += [("simulation.target", sim["target"]), ("simulation.draft", sim["draft"])]
    for key, name in checks:
        try:
            load_architecture(name)
        except ArchitectureError as error:
            raise ConfigError(f"config error: {key}: {error}") from None
    platforms = [(f"prediction.platforms.{i}", p) for i, p in enumerate(config["prediction"]["platforms"])]
    for key, platform in [*platforms, ("simulation.platform", sim["platform"])]:
        try:
            load_hardware(platform)
        except HardwareError as error:
            raise ConfigError(f"config error: {key}: {error}") from None


def _check_specs(config: dict) -> None:
    """Every model spec of the config parses (one parser: moesd.models.spec)."""
    keys = [(f"pairs.{i}.{role}", pair[role]) for i, pair in enumerate(config["pairs"]) for role in ("target", "draft")]
    keys += [(f"latency.models.{i}.spec", entry["spec"]) for i, entry in enumerate(config["latency"]["models"])]
    for key, text in keys:
        spec_kind(text, key)


def _check_latency(config: dict) -> None:
    names = {pair["name"] for pair in config["pairs"]}
    backends = config["latency"]["e2e"]["backends"]
    through_vllm = {e["pair"] for e in config["latency"]["e2e"]["pairs"] if e["acceptance"] == "real"}
    through_vllm = through_vllm if "vllm" in backends else set()
    for i, pair in enumerate(config["pairs"]):
        if config["acceptance"]["vllm"] or pair["name"] in through_vllm:
            for role in ("target", "draft"):
                if spec_kind(pair[role], f"pairs.{i}.{role}") == "arch":
                    raise ConfigError(
                        f"config error: pairs.{i}.{role}: vLLM loads checkpoint folders, not random arch: weights"
                    )
        if pair["speculative_method"] == "eagle" and not (config["acceptance"]["vllm"] or "vllm" in backends):
            raise ConfigError(
                f"config error: pairs.{i}.speculative_method: eagle, which only vLLM runs; set acceptance.vllm "
                "or add vllm to latency.e2e.backends"
            )
    for i, entry in enumerate(config["latency"]["e2e"]["pairs"]):
        key = f"latency.e2e.pairs.{i}"
        needed = ("pair",) if entry["acceptance"] == "real" else ("target", "draft")
        if entry["acceptance"] == "forced" and "alpha" not in entry and "alpha_from" not in entry:
            raise ConfigError(f"config error: {key}: forced acceptance needs alpha or alpha_from")
        for field in needed:
            if field not in entry:
                raise ConfigError(f"config error: {key}.{field}: required for acceptance {entry['acceptance']}")
        for field in ("pair", "alpha_from"):
            if field in entry and entry[field] not in names:
                raise ConfigError(f"config error: {key}.{field}: {entry[field]!r} is not a name in pairs")
        if "k_values" in entry and (entry["acceptance"] != "real" or "vllm" not in backends):
            raise ConfigError(
                f"config error: {key}.k_values: a K sweep of a pair's checkpoint runs through vLLM "
                "(acceptance real, and vllm in latency.e2e.backends)"
            )
    declared_drafts(config["latency"]["models"])  # every target's draft, or a ConfigError
    context = config["latency"]["context"]
    if context["ids"] != "random" and not _is_prompt_set(context["ids_dataset"]):
        raise ConfigError(
            f"config error: latency.context.ids_dataset: {context['ids_dataset']!r} is neither a prompt set "
            f"({', '.join(PROMPT_SETS)}) nor a JSONL file"
        )
    paired = {pair[role] for pair in config["pairs"] for role in ("target", "draft")}
    if context["ids"] == "prompts":
        for i, entry in enumerate(config["latency"]["models"]):
            if entry["spec"] not in paired:
                raise ConfigError(
                    f"config error: latency.models.{i}.spec: context.ids is prompts, but {entry['name']!r} is in no "
                    "pair of `pairs` (whose tokenizer encodes the prompts); use ids auto or random"
                )
    for i, entry in enumerate(config["latency"]["models"]):
        if entry.get("k_values") and spec_kind(entry["spec"], f"latency.models.{i}.spec") != "arch":
            raise ConfigError(f"config error: latency.models.{i}.k_values: a K sweep needs an arch: spec")
    _check_model_shapes(config)
    _check_forced_settings(config)


def _check_model_shapes(config: dict) -> None:
    """What the latency stage asks of its arch: models, from their configs (no weights): a K
    sweep of a MoE within its experts, and every timed forward within the model's positions."""
    lat = config["latency"]
    context = lat["context"]
    longest_context = (
        context["length"] if context["source"] == "fixed" else max(context["length"], context["max_length"])
    )
    for i, entry in enumerate(lat["models"]):
        spec = parse_spec(entry["spec"])
        if spec.kind != "arch":
            continue
        hf = spec.architecture_config()
        for k in entry.get("k_values") or []:
            key = f"config error: latency.models.{i}.k_values"
            if not hf.get("num_experts_per_tok"):
                raise ConfigError(f"{key}: {entry['name']!r} is a dense model: a K sweep needs a MoE")
            spec_kind(spec.with_k(k).text, f"latency.models.{i}.k_values")  # K within the experts
        tokens = max(entry.get("tokens") or [lat["gamma_max"] + 1])
        positions = hf.get("max_position_embeddings")
        if positions and longest_context + tokens > positions:
            raise ConfigError(
                f"config error: latency.context: {longest_context} context tokens plus {tokens} new ones exceed "
                f"{entry['name']!r}'s {positions} positions (latency.models.{i})"
            )
    e2e = lat["e2e"]
    for i, entry in enumerate(e2e["pairs"]):
        if entry["acceptance"] != "forced":
            continue
        for role in ("target", "draft"):
            spec = parse_spec(entry[role])
            positions = spec.architecture_config().get("max_position_embeddings") if spec.kind == "arch" else None
            needed = e2e["context_length"] + e2e["max_new_tokens"] + e2e["gamma"] + 1
            if positions and needed > positions:
                raise ConfigError(
                    f"config error: latency.e2e.pairs.{i}.{role}: context_length + max_new_tokens + gamma + 1 = "
                    f"{needed} exceed its {positions} positions"
                )


def _check_forced_settings(config: dict) -> None:
    """An e2e pair that forces the alpha measured for a pair (alpha_from) needs the acceptance
    stage to measure that setting: the e2e dataset, every e2e temperature, the e2e gamma."""
    from moesd.prompts import dataset_name

    e2e, acc = config["latency"]["e2e"], config["acceptance"]
    if not any("alpha_from" in entry for entry in e2e["pairs"]):
        return
    measured = {
        "latency.e2e.dataset": (dataset_name(e2e["dataset"]), {dataset_name(d) for d in acc["datasets"]}),
        "latency.e2e.gamma": (e2e["gamma"], set(acc["gammas"])),
    }
    measured |= {f"latency.e2e.temperatures ({t:g})": (t, set(acc["temperatures"])) for t in e2e["temperatures"]}
    for key, (value, settings) in measured.items():
        if value not in settings:
            raise ConfigError(
                f"config error: {key}: {value!r} is not a setting the acceptance stage measures "
                f"({sorted(settings)}), and a forced pair takes its alpha from there (alpha_from)"
            )


def _is_prompt_set(source: str) -> bool:
    return source in PROMPT_SETS or Path(source).is_file()


def declared_drafts(models: list[dict]) -> dict[str, str]:
    """latency.models: each target's name -> the name of the draft it is composed with (its
    `draft` key; the one draft where the config times one)."""
    drafts = [entry["name"] for entry in models if entry["role"] == "draft"]
    pairing = {}
    for i, entry in enumerate(models):
        key = f"config error: latency.models.{i}.draft"
        if entry["role"] == "draft":
            if "draft" in entry:
                raise ConfigError(f"{key}: a draft entry takes no draft")
            continue
        name = entry.get("draft", drafts[0] if len(drafts) == 1 else None)
        if name is None:
            raise ConfigError(f"{key}: required: the config times {len(drafts)} drafts ({', '.join(drafts) or 'none'})")
        if name not in drafts:
            raise ConfigError(f"{key}: {name!r} is not the name of a draft entry ({', '.join(drafts)})")
        pairing[entry["name"]] = name
    return pairing


def spec_kind(text: str, key: str) -> str:
    """The kind of model spec TEXT (hf, dir, arch, trained), or a ConfigError naming KEY; an arch:
    spec's config is built too (no weights), so a shape no model can have (top-k above the
    experts, heads not dividing the width) stops here, before any job."""
    try:
        spec = parse_spec(text)
        if spec.kind == "arch":  # a shape no model can have
            spec.architecture_config()
        elif spec.kind == "dir":  # a folder with no model, or a config that is no JSON
            json.loads((spec.local_folder() / "config.json").read_text())
        return spec.kind
    except ModelSpecError as error:
        raise ConfigError(f"config error: {key}: {error}") from None


def uses_trained_pair(config: dict) -> bool:
    """Whether a pair names the models stage's trained: target or draft (then the run trains them)."""
    pairs = config["pairs"]
    return any(spec_kind(p[r], f"pairs.{i}.{r}") == "trained" for i, p in enumerate(pairs) for r in ("target", "draft"))


def compare_tables(config: dict) -> list[Path]:
    """The composed speedups of analysis.compare_runs (relative to the working directory)."""
    return [Path("data/runs") / name / "speedup/composed.csv" for name in config["analysis"]["compare_runs"]]


def _check_analysis(config: dict) -> None:
    pair = config["analysis"]["sigma_pair"]
    if pair is not None and pair not in {p["name"] for p in config["pairs"]}:
        raise ConfigError(f"config error: analysis.sigma_pair: {pair!r} is not a name in pairs")
    if pair is not None and pair not in {p["name"] for p in engine_pairs(config)}:
        raise ConfigError(
            f"config error: analysis.sigma_pair: {pair!r} drafts with an EAGLE head, whose acceptance only vLLM "
            "measures; name a draft-model pair"
        )
    _resolve_fit_setting(config)
    _check_lock(config)
    for i, (name, table) in enumerate(zip(config["analysis"]["compare_runs"], compare_tables(config), strict=True)):
        if name == config["experiment"]:
            raise ConfigError(f"config error: analysis.compare_runs.{i}: {name!r} is this experiment")
        if not table.is_file():
            raise ConfigError(f"config error: analysis.compare_runs.{i}: {table} does not exist (run {name!r} first)")


def _resolve_fit_setting(config: dict) -> None:
    """analysis.fit_dataset / fit_temperature: auto resolved in place, and either one checked
    against what the sigma pair's acceptance measures (or, with no pairs, the paper's Table 2
    sigma), so that a fit at an unmeasured setting stops here, not after the whole run."""
    from moesd.prompts import dataset_name

    analysis = config["analysis"]
    if sigma_pair(config) is not None:
        datasets = [dataset_name(d) for d in config["acceptance"]["datasets"]]
        temperatures = list(config["acceptance"]["temperatures"])
        where = "acceptance.datasets", "acceptance.temperatures"
    else:
        from moesd.paper import headline_cells

        cells = headline_cells()
        datasets = list(dict.fromkeys(cells["dataset"]))
        temperatures = sorted(set(cells["temperature"]))
        where = "the paper's Table 2 sigma (no pairs)", "the paper's Table 2 sigma (no pairs)"
    if analysis["fit_dataset"] == "auto":
        analysis["fit_dataset"] = datasets[0]
    else:
        analysis["fit_dataset"] = dataset_name(analysis["fit_dataset"])
        if analysis["fit_dataset"] not in datasets:
            raise ConfigError(
                f"config error: analysis.fit_dataset: {analysis['fit_dataset']!r} is not measured by {where[0]} "
                f"({', '.join(datasets)}); name one of them or auto"
            )
    if analysis["fit_temperature"] == "auto":
        analysis["fit_temperature"] = 0.0 if 0 in temperatures else float(temperatures[0])
    elif analysis["fit_temperature"] not in temperatures:
        raise ConfigError(
            f"config error: analysis.fit_temperature: {analysis['fit_temperature']} is not measured by {where[1]} "
            f"({', '.join(str(t) for t in temperatures)}); name one of them or auto"
        )


def lock_path(config: dict) -> Path:
    """download.lock: the lock file of resolved hub commits (auto: config/<experiment>.lock.json)."""
    lock = config["download"]["lock"]
    return Path(f"config/{config['experiment']}.lock.json" if lock == "auto" else lock)


def _check_lock(config: dict) -> None:
    """An existing lock file must be one (read before any job, not when the download runs)."""
    try:
        read_lock(lock_path(config))
    except LockFileError as error:
        raise ConfigError(f"config error: download.lock: {error}") from None


def prompt_sources(config: dict) -> list[str]:
    """The prompt sets the prompts stage encodes for every pair: the acceptance and routing sets,
    the latency stage's context lengths (unless fixed) and the latency forwards' token ids."""
    context = config["latency"]["context"]  # validated: defaults filled
    lengths = [context["source"]] if context["source"] != "fixed" else []
    ids = [context["ids_dataset"]] if context["ids"] != "random" else []
    return list(dict.fromkeys(config["acceptance"]["datasets"] + config["routing"]["datasets"] + lengths + ids))


def config_part(config: dict, keys: list[str]) -> dict:
    """The part of CONFIG under KEYS, each a section ("pairs") or a dotted path into one
    ("latency.context"), nested as in the config."""
    part: dict = {}
    for key in keys:
        *parents, leaf = key.split(".")
        source, target = config, part
        for name in parents:
            source, target = source[name], target.setdefault(name, {})
        target[leaf] = source[leaf]
    return part


def engine_pairs(config: dict) -> list[dict]:
    """The pairs our engine decodes: a draft model's (an EAGLE head's pair runs through vLLM only)."""
    return [pair for pair in config["pairs"] if pair["speculative_method"] == "draft_model"]


def sigma_pair(config: dict) -> dict | None:
    """The pair whose measured sigma composes the run's speedups (None: the paper's Table 2)."""
    name = config["analysis"]["sigma_pair"]
    pairs = engine_pairs(config)
    if name is None:
        return pairs[0] if pairs else None
    return next(p for p in pairs if p["name"] == name)


def load_config(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
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
