"""Checks across keys that the schema cannot state: names of architectures and platforms,
model specs, what the latency and e2e sections ask of their models, what the analysis reads,
the lock file. Each failure is one ConfigError naming the key, before any job.
"""

from __future__ import annotations

from pathlib import Path

from moesd.architectures import ArchitectureError, load_architecture
from moesd.config.errors import ConfigError
from moesd.config.memory import longest_context
from moesd.config.platforms import resolve_platforms
from moesd.config.queries import (
    compare_tables,
    declared_drafts,
    engine_pairs,
    lock_path,
    sigma_pair,
    spec_kind,
)
from moesd.config.slices import acceptance_slices, latency_slices, routing_platform
from moesd.hardware import HardwareError, load_hardware
from moesd.hub_lock import LockFileError, read_lock
from moesd.models.spec import parse_spec
from moesd.prompt_sets import PROMPT_SETS


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
    lat = config["latency"]
    if lat["compile_draft"]:
        for key, warmup in (("latency.warmup", lat["warmup"]), ("latency.e2e.warmup", lat["e2e"]["warmup"])):
            if warmup < 1:
                raise ConfigError(
                    f"config error: {key}: 0, but latency.compile_draft compiles each new shape in the warm-up "
                    "(5-15 s): it needs at least 1"
                )
        _check_compilable_drafts(config)
    if (lat["rounds"]["max_repeats"] or lat["repeats"]) < lat["repeats"]:
        raise ConfigError(
            f"config error: latency.rounds.max_repeats: {lat['rounds']['max_repeats']} is below latency.repeats "
            f"{lat['repeats']} (the cap counts every round of a point)"
        )
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
    names = [entry["name"] for entry in config["latency"]["models"]]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(
                f"config error: latency.models.{i}.name: {name!r} names two models (the tables key by it)"
            )
    latency_slices(config)  # one job per (platform, model, K): ids that do not collide
    acceptance_slices(config)  # every pair our engine measures fits one device of a platform
    routing_platform(config)  # and every model the routing job loads
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


def _check_compilable_drafts(config: dict) -> None:
    """latency.compile_draft on a CPU: a C++ compiler, and dense drafts where their arch: config
    says so (a checkpoint's is read at load: moesd.models.compiled refuses the same)."""
    import shutil

    lat = config["latency"]
    if lat["device"] == "cuda":
        return  # no effect on a GPU
    if not (shutil.which("c++") or shutil.which("g++")):
        raise ConfigError(
            "config error: latency.compile_draft: torch.compile on a CPU needs a C++ compiler on the PATH"
        )
    drafts = [(f"latency.models.{i}", e["spec"]) for i, e in enumerate(lat["models"]) if e["role"] == "draft"]
    drafts += [
        (f"latency.e2e.pairs.{i}.draft", e["draft"]) for i, e in enumerate(lat["e2e"]["pairs"]) if e.get("draft")
    ]
    drafts += [(f"pairs.{i}.draft", pair["draft"]) for i, pair in enumerate(config["pairs"])]
    for key, text in drafts:
        spec = parse_spec(text)
        if spec.kind == "arch" and spec.architecture_config().get("num_experts_per_tok"):
            raise ConfigError(f"config error: {key}: latency.compile_draft: only dense models are compiled")


def _check_model_shapes(config: dict) -> None:
    """What the latency stage asks of its arch: models, from their configs (no weights): a K
    sweep of a MoE within its experts, and every timed forward within the model's positions."""
    lat = config["latency"]
    context = lat["context"]
    if context["source"] == "fixed" and context["length"] > context["max_length"]:
        raise ConfigError(
            f"config error: latency.context.length: {context['length']} is above latency.context.max_length "
            f"{context['max_length']}, the cap of every context length (raise the cap or lower the length)"
        )
    longest = longest_context(context)
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
        if positions and longest + tokens > positions:
            raise ConfigError(
                f"config error: latency.context: {longest} context tokens plus {tokens} new ones exceed "
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
    from moesd.prompt_sets import dataset_name

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
    _resolve_e2e_prefill(config)
    _resolve_reference_target(config)
    _resolve_reference_platform(config)
    _check_lock(config)
    for i, (name, table) in enumerate(zip(config["analysis"]["compare_runs"], compare_tables(config), strict=True)):
        if name == config["experiment"]:
            raise ConfigError(f"config error: analysis.compare_runs.{i}: {name!r} is this experiment")
        if not table.is_file():
            raise ConfigError(f"config error: analysis.compare_runs.{i}: {table} does not exist (run {name!r} first)")


def _resolve_e2e_prefill(config: dict) -> None:
    """latency.e2e.prefill: auto resolved in place (once under analysis.e2e_time decode, each
    under total); once with total refused: its generations' prefill is a copy, not timed."""
    e2e, time = config["latency"]["e2e"], config["analysis"]["e2e_time"]
    if e2e["prefill"] == "auto":
        e2e["prefill"] = "once" if time == "decode" else "each"
    elif e2e["prefill"] == "once" and time != "decode":
        raise ConfigError(
            "config error: latency.e2e.prefill: once copies each generation's prefilled cache instead of timing its "
            f"prefill, so analysis.e2e_time: {time} would read a copy as the prefill; use prefill each (or auto)"
        )


def _resolve_reference_target(config: dict) -> None:
    """analysis.reference_target: a named latency target checked, or auto resolved in place to
    the latency target that is the sigma pair's target, else the first MoE target in
    latency.models order (None where the run times no MoE)."""
    analysis = config["analysis"]
    targets = [entry for entry in config["latency"]["models"] if entry["role"] == "target"]
    name = analysis["reference_target"]
    if name not in ("auto", None):
        if name not in {entry["name"] for entry in targets}:
            raise ConfigError(
                f"config error: analysis.reference_target: {name!r} is not a target of latency.models "
                f"({', '.join(entry['name'] for entry in targets) or 'none'})"
            )
        return
    pair = sigma_pair(config)
    same = [entry["name"] for entry in targets if pair is not None and entry["spec"] == pair["target"]]
    moe = [entry["name"] for entry in targets if parse_spec(entry["spec"]).is_moe()]
    analysis["reference_target"] = (same or moe or [None])[0]


def _resolve_reference_platform(config: dict) -> None:
    """analysis.reference_platform: a named platform checked, or auto resolved in place to the
    first platform that times a latency target (the first platform where none does)."""
    from moesd.config.platforms import model_platforms, platform_names

    analysis, names = config["analysis"], platform_names(config)
    name = analysis["reference_platform"]
    if name not in ("auto", None):
        if name not in names:
            raise ConfigError(
                f"config error: analysis.reference_platform: {name!r} is not a platform ({', '.join(names)})"
            )
        return
    targets = [entry for entry in config["latency"]["models"] if entry["role"] == "target"]
    timed = {platform for entry in targets for platform in model_platforms(config, entry)}
    analysis["reference_platform"] = next((p for p in names if p in timed), names[0])


def _resolve_fit_setting(config: dict) -> None:
    """analysis.fit_dataset / fit_temperature: auto resolved in place, and either one checked
    against what the sigma pair's acceptance measures (or, with no pairs, the paper's Table 2
    sigma), so that a fit at an unmeasured setting stops here, not after the whole run."""
    from moesd.prompt_sets import dataset_name

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


def _check_lock(config: dict) -> None:
    """An existing lock file must be one (read before any job, not when the download runs)."""
    try:
        read_lock(lock_path(config))
    except LockFileError as error:
        raise ConfigError(f"config error: download.lock: {error}") from None


def _check_trained_shapes(config: dict) -> None:
    """The trained pair's own architectures obey what an arch: spec's must (architectures.check_shape):
    top-k within the experts, heads dividing the width, key-value heads dividing the heads."""
    for role in ("target", "draft"):
        spec, key = config["models"][role], f"config error: models.{role}"
        if "top_k" in spec and spec["top_k"] > spec["num_experts"]:
            raise ConfigError(f"{key}.top_k: {spec['top_k']} exceeds models.{role}.num_experts {spec['num_experts']}")
        if spec["hidden_size"] % spec["num_heads"]:
            raise ConfigError(
                f"{key}.num_heads: {spec['num_heads']} does not divide models.{role}.hidden_size {spec['hidden_size']}"
            )
        kv = spec.get("num_kv_heads")
        if kv is not None and (kv > spec["num_heads"] or spec["num_heads"] % kv):
            raise ConfigError(f"{key}.num_kv_heads: {kv} does not divide models.{role}.num_heads {spec['num_heads']}")


def _check_unique_names(config: dict) -> None:
    """Names the tables key by name one thing each."""
    for section, entries in (("pairs", config["pairs"]), ("latency.e2e.pairs", config["latency"]["e2e"]["pairs"])):
        names = [entry["name"] for entry in entries]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ConfigError(
                    f"config error: {section}.{i}.name: {name!r} names two entries (the tables key by it)"
                )


def _check_reference_k(config: dict) -> None:
    """analysis.reference_k measured by every K sweep of a family that is not timed as itself (it
    is where the family is shown and compared)."""
    models, reference = config["latency"]["models"], config["analysis"]["reference_k"]
    native = {entry["spec"] for entry in models if not entry.get("k_values")}
    for i, entry in enumerate(models):
        if entry.get("k_values") and entry["spec"] not in native and reference not in entry["k_values"]:
            raise ConfigError(
                f"config error: analysis.reference_k: {reference} is not among latency.models.{i}.k_values "
                f"{entry['k_values']} ({entry['name']!r} is timed only through its K sweep)"
            )


def check_config(config: dict) -> None:
    """Every cross-key check of a CONFIG the schema has validated (defaults filled)."""
    _check_names(config)
    _check_unique_names(config)
    _check_trained_shapes(config)
    _check_specs(config)
    resolve_platforms(config)
    _check_latency(config)
    _check_analysis(config)
    _check_reference_k(config)  # after the K sweeps' own checks
