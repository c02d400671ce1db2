"""The platforms a run measures on (the config's `platforms` list): each a name, its GPUs and
their model, its threads and where a cluster runs its jobs. Resolved in place at validation (one
platform, `local`, this machine, where the key is absent); a model our engine times that one
device of a platform cannot hold is refused here, in one line, before any job is submitted.

One device's memory is data/hardware.yaml's memory_gb for the platform's GPU model (the table in
docs/cluster.md), or the platform's device_memory_gb.
"""

from __future__ import annotations

from moesd.config.errors import ConfigError
from moesd.config.queries import common_rounds, ours_e2e_entries
from moesd.hardware import BYTES_PER_PARAM, HardwareError, datasheet, resolve_name
from moesd.models.spec import parse_spec

LOCAL = "local"  # the one platform of a config without `platforms`: this machine
UNCHECKED_DEVICES = ("cpu", "auto")  # a CPU platform, or this machine's GPU: no memory table entry
SLURM_SETTINGS = ("partition", "account", "gpu_model", "constraint", "mem_mb")  # a platform's `slurm` keys


def platform_names(config: dict) -> list[str]:
    """The platforms' names, in config order (the first is where a single-platform reader looks first)."""
    return [platform["name"] for platform in config["platforms"]]


def platform_of(config: dict, name: str) -> dict:
    """The platform NAME of a validated config."""
    for platform in config["platforms"]:
        if platform["name"] == name:
            return platform
    raise ConfigError(f"config error: platforms: no platform {name!r} ({', '.join(platform_names(config))})")


def device_memory_gb(platform: dict) -> float | None:
    """One device's memory of PLATFORM in GB (its override, else data/hardware.yaml's), None for
    a CPU platform or this machine's unnamed GPU."""
    if platform["device_memory_gb"] is not None:
        return float(platform["device_memory_gb"])
    if platform["device"] in UNCHECKED_DEVICES:
        return None
    return float(datasheet()[resolve_name(platform["device"])]["memory_gb"])


def vllm_tensor_parallel(pair: dict, platform: dict) -> int:
    """vLLM's tensor-parallel size for PAIR on PLATFORM: the pair's own, else the platform's GPUs
    (1 on a CPU platform)."""
    return pair["tensor_parallel_size"] or max(1, platform["gpus"])


def acceptance_vllm_platforms(config: dict, pair: dict) -> list[str]:
    """The platforms where vLLM measures PAIR's acceptance: those of acceptance.vllm_platforms
    (else every one) that the pair's vllm_platforms (the platforms vLLM can run it on) lists;
    none unless acceptance.vllm."""
    if not config["acceptance"]["vllm"]:
        return []
    can = pair.get("vllm_platforms")
    return [n for n in config["acceptance"]["vllm_platforms"] or platform_names(config) if can is None or n in can]


def weight_bytes(config: dict) -> float:
    """Bytes per parameter of the timed models (latency.dtype; auto is bf16 on a GPU)."""
    dtype = config["latency"]["dtype"]
    if dtype == "auto":
        return 2.0 if config["latency"]["device"] == "cuda" else 4.0
    return BYTES_PER_PARAM[dtype]


def holds(platform: dict, specs: list[str], bytes_per_param: float, split: int = 1) -> tuple[bool, float, float | None]:
    """Whether one device of PLATFORM holds SPECS (their weights at BYTES_PER_PARAM, split over
    SPLIT devices): (fits, GB per device, device GB). Unknown sizes and memories fit."""
    sizes = [parse_spec(spec).weights_gb(bytes_per_param) for spec in specs]
    size = sum(s for s in sizes if s is not None) / split
    memory = device_memory_gb(platform)
    return memory is None or size <= memory, size, memory


def needs(config: dict, platform: dict, specs: list[str], part: str) -> tuple[bool, float, float, float | None]:
    """Whether one device of PLATFORM holds what our engine needs to run SPECS: their weights
    and, on a GPU, the KV cache, logits and activations of the latency stage's PART ("timing",
    "e2e") at its largest batch (moesd.config.memory.working_gb). (fits, weights GB, working GB,
    device GB); unknown sizes and memories fit, and a CPU platform's working memory is the host's
    (checked by the plan's host memory check)."""
    from moesd.config.memory import working_gb

    per_param = weight_bytes(config)
    fits, size, memory = holds(platform, specs, per_param)
    if memory is None or not fits or config["latency"]["device"] != "cuda":
        return fits, size, 0.0, memory
    working = working_gb(config, "latency", specs, per_param, part)
    return size + working <= memory, size, working, memory


def _too_much(what: str, size: float, working: float, platform: dict, memory: float, at: str) -> str:
    return (
        f"{what}: an estimated {size + working:.1f} GB ({size:.1f} GB of weights, {working:.1f} GB of KV cache, "
        f"logits and activations {at}) do not fit one {platform['device']} of platform "
        f"{platform['name']} ({memory:g} GB)"
    )


def _timing_at(lat: dict) -> str:
    """Where the component grid's working memory peaks (the caches it holds at once)."""
    if common_rounds(lat, lat["device"]):
        return (
            f"with the caches of B = {', '.join(map(str, lat['batch_sizes']))} held at once; "
            "latency.rounds.interleave: tokens holds one at a time"
        )
    return f"at B = {max(lat['batch_sizes'])}"


def model_platforms(config: dict, entry: dict) -> list[str]:
    """The platforms ENTRY (of latency.models or latency.e2e.pairs) lists: its `platforms`, else every one."""
    return platform_names(config) if entry.get("platforms") is None else entry["platforms"]


def e2e_platforms(config: dict, entry: dict, backend: str) -> list[str]:
    """The platforms where BACKEND (ours or vllm) decodes latency.e2e.pairs ENTRY: its `platforms`
    (else every one); our engine leaves out those whose one device cannot hold the pair with the
    KV cache of its largest batch (validation has checked that vLLM decodes it there)."""
    names = model_platforms(config, entry)
    if backend == "vllm":
        return names
    specs = _e2e_specs(config, entry)
    return [name for name in names if needs(config, platform_of(config, name), specs, "e2e")[0]]


def _e2e_specs(config: dict, entry: dict) -> list[str]:
    if entry.get("pair"):
        pair = next((p for p in config["pairs"] if p["name"] == entry["pair"]), None)
        if pair is None:
            declared = ", ".join(p["name"] for p in config["pairs"]) or "none"
            raise ConfigError(
                f"config error: latency.e2e.pairs: {entry['name']!r} decodes pair {entry['pair']!r}, "
                f"which `pairs` does not declare (declared: {declared})"
            )
        return [pair["target"], pair["draft"]]
    return [entry["target"], entry["draft"]]


def resolve_platforms(config: dict) -> None:
    """`platforms` checked and resolved in place: the default one, each platform's GPUs and
    threads filled in, device names known, every name a model or pair lists declared, and every
    model our engine times held by one device of each platform it runs on."""
    lat = config["latency"]
    if config["platforms"] is None:
        config["platforms"] = [
            {"name": LOCAL, "gpus": None, "device": "auto" if lat["device"] != "cpu" else "cpu"}
            | {"device_memory_gb": None, "threads": None, "slurm": {}}
        ]
    names = []
    for i, platform in enumerate(config["platforms"]):
        key = f"config error: platforms.{i}"
        if platform["name"] in names:
            raise ConfigError(f"{key}.name: {platform['name']!r} names two platforms")
        names.append(platform["name"])
        if platform["gpus"] is None:
            platform["gpus"] = 1 if lat["device"] == "cuda" else 0
        if lat["device"] == "cuda" and platform["gpus"] == 0:
            raise ConfigError(f"{key}.gpus: 0, but latency.device is cuda (a GPU experiment's platforms have GPUs)")
        # on a CPU, gpus > 0 stands for the GPUs of the platform it rehearses: vLLM's tensor-parallel
        # workers (one core range each), no GPU asked for (config/rehearsal.yaml)
        if platform["device"] not in UNCHECKED_DEVICES:
            try:
                resolve_name(platform["device"])
            except HardwareError as error:
                raise ConfigError(f"{key}.device: {error}") from None
        if platform["threads"] is None:
            platform["threads"] = lat["threads"]
        platform["slurm"] = dict.fromkeys(SLURM_SETTINGS) | platform["slurm"]
    for setting in SLURM_SETTINGS:
        given = [platform["slurm"][setting] is not None for platform in config["platforms"]]
        if any(given) and not all(given):
            i = given.index(False)
            raise ConfigError(
                f"config error: platforms.{i}.slurm.{setting}: unset here but set on another platform; set it on "
                "every platform or on none (the profile's default-resources then)"
            )
    _check_listed(config, names)
    _check_fits(config)
    _check_vllm_splits(config)


def _check_listed(config: dict, names: list[str]) -> None:
    """Every platform a model, a pair or vLLM's acceptance lists is one of NAMES."""
    lists = [(f"latency.models.{i}.platforms", e.get("platforms")) for i, e in enumerate(config["latency"]["models"])]
    lists += [
        (f"latency.e2e.pairs.{i}.platforms", e.get("platforms"))
        for i, e in enumerate(config["latency"]["e2e"]["pairs"])
    ]
    lists += [("acceptance.vllm_platforms", config["acceptance"]["vllm_platforms"])]
    lists += [(f"pairs.{i}.vllm_platforms", p.get("vllm_platforms")) for i, p in enumerate(config["pairs"])]
    for key, listed in lists:
        for j, name in enumerate(listed or []):
            if name not in names:
                raise ConfigError(f"config error: {key}.{j}: {name!r} is not a platform ({', '.join(names)})")


def _too_large(what: str, size: float, platform: dict, memory: float, split: int = 1) -> str:
    device = f"{split} {platform['device']}s" if split > 1 else f"one {platform['device']}"
    return (
        f"{what}: {size * split:.1f} GB of weights do not fit {device} of platform {platform['name']} "
        f"({memory:g} GB each)"
    )


def _check_fits(config: dict) -> None:
    """Every model our engine times, and every pair it decodes end to end, fits one device of the
    platforms it runs on (vLLM's jobs: _check_vllm_splits). One line: key, model, size, device memory."""
    for i, entry in enumerate(config["latency"]["models"]):
        for name in model_platforms(config, entry):
            platform = platform_of(config, name)
            fits, size, working, memory = needs(config, platform, [entry["spec"]], "timing")
            if not fits and working:
                raise ConfigError(
                    f"config error: latency.models.{i}: "
                    + _too_much(entry["name"], size, working, platform, memory, _timing_at(config["latency"]))
                    + "; lower latency.batch_sizes or latency.context.max_length, or time it on a larger device"
                )
            if not fits:
                raise ConfigError(
                    f"config error: latency.models.{i}: "
                    + _too_large(entry["name"], size, platform, memory)
                    + f"; our engine times on one device: list the platforms that hold it in latency.models.{i}.platforms"
                )
    e2e = config["latency"]["e2e"]
    ours = ours_e2e_entries(config)
    for i, entry in enumerate(e2e["pairs"]):
        through_vllm = "vllm" in e2e["backends"] and entry["acceptance"] == "real"  # _check_vllm_splits
        for name in model_platforms(config, entry):
            platform = platform_of(config, name)
            specs = _e2e_specs(config, entry)
            fits, size, working, memory = needs(config, platform, specs, "e2e")
            if entry in ours and not fits and not through_vllm:
                what = f"{entry['name']} (target and draft)"
                raise ConfigError(
                    f"config error: latency.e2e.pairs.{i}: "
                    + (
                        _too_much(what, size, working, platform, memory, f"at B = {max(e2e['batch_sizes'])}")
                        if working
                        else _too_large(what, size, platform, memory)
                    )
                    + f"; our engine decodes on one device: leave {name} out of latency.e2e.pairs.{i}.platforms"
                )


def _vllm_jobs(config: dict) -> list[tuple[str, str, dict, str]]:
    """(its key, how to leave its platform out, pair, platform name) of every job vLLM runs:
    acceptance per pair and platform, and each real-acceptance end-to-end entry on its platforms."""

    def remedy(key: str, listed, name: str) -> str:
        return f"leave {name} out of {key}" if listed else f"list the platforms it can run on in {key}"

    pairs = {p["name"]: p for p in config["pairs"]}
    jobs = [
        (f"pairs.{i}", remedy(f"pairs.{i}.vllm_platforms", pair.get("vllm_platforms"), name), pair, name)
        for i, pair in enumerate(config["pairs"])
        for name in acceptance_vllm_platforms(config, pair)
    ]
    e2e = config["latency"]["e2e"]
    for i, entry in enumerate(e2e["pairs"] if "vllm" in e2e["backends"] else []):
        if entry["acceptance"] == "real" and entry["pair"] in pairs:
            key = f"latency.e2e.pairs.{i}"
            jobs += [
                (key, remedy(f"{key}.platforms", entry.get("platforms"), name), pairs[entry["pair"]], name)
                for name in model_platforms(config, entry)
            ]
    return jobs


def _check_vllm_splits(config: dict) -> None:
    """Every job vLLM runs can split its pair over its tensor-parallel size: no more ranks than the
    platform's GPUs, heads of target and draft (known architectures) that divide over them (vLLM
    runs the draft over the target's ranks, docs/vllm.md), and the target's weights within the
    GPUs so split. One line naming the key, pair, platform and model, before any job starts (the
    job itself would stop only after its model download and engine start)."""
    from moesd.architectures import split_problem

    on_gpus = config["latency"]["device"] == "cuda"
    for key, remedy, pair, name in _vllm_jobs(config):
        platform = platform_of(config, name)
        ranks = vllm_tensor_parallel(pair, platform)
        where = f"config error: {key}: pair {pair['name']!r} on {name} at tensor parallel {ranks}"
        if on_gpus and ranks > platform["gpus"]:
            raise ConfigError(f"{where}: the platform has {platform['gpus']} GPUs; {remedy}")
        for role in ("target", "draft"):
            known = parse_spec(pair[role]).known_config() if not pair[role].startswith("trained:") else None
            problem = known and split_problem(known, ranks)
            if problem:
                raise ConfigError(
                    f"{where}: the {role} {pair[role]}'s {problem} (vLLM runs the draft over the target's ranks); "
                    f"{remedy}, or set the pair's tensor_parallel_size"
                )
        fits, size, memory = holds(platform, [pair["target"]], weight_bytes(config), ranks)
        if not fits:
            raise ConfigError(
                f"{where}: " + _too_large(f"the target {pair['target']}", size, platform, memory, ranks) + f"; {remedy}"
            )
