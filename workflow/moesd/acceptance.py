"""The `acceptance` stage: how many draft tokens a target accepts, measured by batched
speculative decoding of real prompts, per pair x dataset x temperature x gamma.

Estimators (from the per-round accepted counts n in 0..gamma of every active sequence):
    mean accepted length  E[n + 1]  (tokens per round including the correction/bonus token)
    sigma                 E[n + 1] / (gamma + 1)                                  (Eq. 5's sigma)
    alpha (MLE)           sum n / (sum n + #{n < gamma})   the maximum-likelihood estimate under
                          the i.i.d. model: each round is a run of Bernoulli(alpha) successes
                          stopped at the first failure or truncated at gamma
    alpha (Eq. 5)         the alpha whose sigma_from_alpha equals the measured sigma
    per-position rate     P(draft i accepted | drafts 1..i-1 accepted), i = 1..gamma
    distinct fraction     mean over prompts of distinct tokens / generated tokens: small models
                          fall into repetition loops under greedy decoding, which inflates
                          acceptance; this column shows how much of the output is such a loop
The i.i.d. model is the paper's (Eq. 5); per-position rates show where it fails.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from moesd.decode import GenerationConfig, decode
from moesd.models import checkpoint
from moesd.theory import alpha_from_sigma

ROUND_COLUMNS = ["target", "draft", "dataset", "temperature", "gamma", "prompt_index", "round", "accepted"]
SUMMARY_COLUMNS = [
    "target",
    "draft",
    "dataset",
    "temperature",
    "gamma",
    "alpha",
    "alpha_eq5",
    "sigma",
    "mean_accepted_length",
    "per_position_acceptance",
    "n_rounds",
    "n_prompts",
    "distinct_fraction",
]  # and backend: ours (moesd.decode) or vllm (moesd.backends.vllm, from its counters)


def measure_rounds(target, draft, prompts, *, temperature, gamma, batch_size, max_new_tokens, seed) -> pd.DataFrame:
    """Per-round accepted counts of every prompt (batched SD, the target's own acceptance rule)."""
    rows = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        config = GenerationConfig(
            max_new_tokens=max_new_tokens, temperature=temperature, gamma=gamma, seed=seed + start
        )
        result = decode(target, batch, config, draft=draft, mode="sd")
        for i, (counts, output) in enumerate(zip(result.accepted_per_sequence, result.output_ids, strict=True)):
            distinct = len(set(output)) / len(output)  # low values flag repetition loops
            rows += [(start + i, r, n, distinct) for r, n in enumerate(counts)]
    frame = pd.DataFrame(rows, columns=["prompt_index", "round", "accepted", "distinct_fraction"])
    return frame.assign(temperature=temperature, gamma=gamma)


def alpha_mle(accepted: np.ndarray, gamma: int) -> float:
    """Maximum-likelihood alpha of truncated geometric runs (see the module docstring)."""
    successes = accepted.sum()
    failures = np.sum(accepted < gamma)
    return float(successes / (successes + failures)) if successes + failures else float("nan")


def per_position(accepted: np.ndarray, gamma: int) -> list[float]:
    rates = []
    for i in range(1, gamma + 1):
        reached = np.sum(accepted >= i - 1)
        rates.append(float(np.sum(accepted >= i) / reached) if reached else float("nan"))
    return rates


def summary_row(key: dict, n: np.ndarray, gamma: int, n_prompts: int, distinct: float) -> dict:
    """One summary row from the accepted counts N of every round (the estimators of the module
    docstring)."""
    mean_length = float(np.mean(n + 1))
    sigma = mean_length / (gamma + 1)
    return key | {
        "alpha": alpha_mle(n, gamma),
        "alpha_eq5": float(alpha_from_sigma(sigma, gamma)),
        "sigma": sigma,
        "mean_accepted_length": mean_length,
        "per_position_acceptance": ";".join(f"{r:.4f}" for r in per_position(n, gamma)),
        "n_rounds": len(n),
        "n_prompts": n_prompts,
        "distinct_fraction": distinct,
    }


def summarise(rounds: pd.DataFrame) -> pd.DataFrame:
    keys = ["target", "draft", "dataset", "temperature", "gamma"]
    rows = []
    for key, group in rounds.groupby(keys, sort=True):
        distinct = (
            float(group.groupby("prompt_index")["distinct_fraction"].first().mean())
            if "distinct_fraction" in group
            else float("nan")
        )
        n = group["accepted"].to_numpy()
        rows.append(
            summary_row(dict(zip(keys, key, strict=True)), n, int(key[4]), group["prompt_index"].nunique(), distinct)
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS).assign(backend="ours")


def rounds_from_counters(rounds: int, accepted_per_position: list[int]) -> np.ndarray:
    """The accepted count of every round, from vLLM's counters (ROUNDS drafts; the rounds whose
    i-th draft token was accepted, per i): exactly k accepted in c_k - c_(k+1) rounds, c_0 the
    rounds. The order of rounds is lost, which no summary estimator needs."""
    reached = [int(rounds), *(int(c) for c in accepted_per_position), 0]
    return np.repeat(np.arange(len(reached) - 1), [reached[k] - reached[k + 1] for k in range(len(reached) - 1)])


def acceptance_verdicts(summary: pd.DataFrame, target_loss: float | None = None) -> list[str]:
    """The stage's headline: greedy alpha on HumanEval at the largest gamma, and whether sampling
    accepts less than greedy decoding (the paper's C10), per pair and dataset; when it does not,
    the reason the data give."""
    lines = []
    for (target, draft, dataset), group in summary.groupby(["target", "draft", "dataset"]):
        gamma = group["gamma"].max()
        at = group[group["gamma"] == gamma].set_index("temperature")["alpha"]
        greedy, sampled = at.get(0.0), at.get(1.0)
        line = f"{target} + {draft}, {dataset}, gamma {gamma}: greedy alpha {greedy:.3f}" if greedy is not None else ""
        if greedy is not None and sampled is not None:
            relation = "below" if sampled < greedy else "NOT below"
            line += f"; sampled (T=1) alpha {sampled:.3f} is {relation} greedy"
            if sampled >= greedy and target_loss is not None:
                line += (
                    f" (why: the trained target is a weak, high-entropy model, final training loss {target_loss:.2f} "
                    "nats/token; sampled acceptance is the overlap 1 - TV(p, q) of two flat distributions, which "
                    "distillation makes large, while greedy acceptance needs the argmax of a flat p to match, which "
                    "small differences flip. The paper's instruct models are peaked, where the order reverses.)"
                )
        if line:
            lines.append(line)
    return lines


def measure_pairs(config: dict, run_dir: Path, prompts_dir: Path, points_dir: Path, log=print):
    """Every pair x dataset x temperature x gamma of the acceptance section; one point file each
    (named by everything it depends on), so a killed run resumes. Returns (rounds, where each
    spec resolved to: folder and fingerprint)."""
    from moesd.config import engine_pairs
    from moesd.io import fingerprint, write_csv
    from moesd.models.loading import load_model
    from moesd.models.spec import parse_spec
    from moesd.prompt_sets import dataset_name
    from moesd.prompts import read_token_ids

    acc = config["acceptance"]
    frames, resolved = [], {}
    for pair in engine_pairs(config):  # an EAGLE head's pair: vLLM's (measure_pairs_vllm)
        specs = {role: parse_spec(pair[role]).resolve(run_dir) for role in ("target", "draft")}
        keys = {role: checkpoint.fingerprint(spec) for role, spec in specs.items()}  # read once per pair
        for role, spec in specs.items():  # where each spec resolved to
            resolved[pair[role]] = {"folder": str(checkpoint.folder(spec)), "fingerprint": keys[role]}
        models = None
        for source in acc["datasets"]:
            dataset = dataset_name(source)
            prompts = read_token_ids(prompts_dir / pair["name"] / f"{dataset}.jsonl", acc["max_prompts"])
            for temperature in acc["temperatures"]:
                for gamma in acc["gammas"]:
                    key = fingerprint(
                        keys["target"],
                        keys["draft"],
                        prompts,
                        temperature,
                        gamma,
                        acc["batch_size"],
                        acc["max_new_tokens"],
                        acc["seed"],
                    )
                    point = points_dir / f"{pair['name']}_{dataset}_T{temperature}_g{gamma}_{key}.csv"
                    if not point.is_file():
                        if models is None:
                            models = (load_model(specs["target"].text), load_model(specs["draft"].text))
                        rounds = measure_rounds(
                            *models,
                            prompts,
                            temperature=temperature,
                            gamma=gamma,
                            batch_size=acc["batch_size"],
                            max_new_tokens=acc["max_new_tokens"],
                            seed=acc["seed"],
                        )
                        rounds = rounds.assign(
                            target=pair["target"], draft=pair["draft"], pair=pair["name"], dataset=dataset
                        )
                        write_csv(point, rounds)
                        log(f"measured {point.name}: {len(rounds)} rounds")
                    frames.append(pd.read_csv(point))
    return pd.concat(frames, ignore_index=True), resolved


def measure_pairs_vllm(config: dict, run_dir: Path, prompts_dir: Path, points_dir: Path, log=print) -> pd.DataFrame:
    """Every pair x dataset x temperature x gamma through vLLM (moesd.backends.vllm): one engine
    per pair and gamma decodes every dataset and temperature in turn; each summary row comes from
    the counters of its pass. One point file per pair and gamma, so a killed run resumes."""
    import json

    from moesd.backends.vllm import VllmError, VllmRequest, run_passes
    from moesd.io import fingerprint, write_json
    from moesd.models.spec import parse_spec
    from moesd.prompt_sets import dataset_name
    from moesd.prompts import read_token_ids

    acc = config["acceptance"]
    rows = []
    for pair in config["pairs"]:
        specs = {role: parse_spec(pair[role]).resolve(run_dir) for role in ("target", "draft")}
        folders = {role: checkpoint.folder(spec) for role, spec in specs.items()}
        fingerprints = [checkpoint.fingerprint(spec) for spec in specs.values()]
        for role, folder in folders.items():
            if folder is None:
                raise VllmError(f"pairs {pair['name']}.{role}: vLLM loads a checkpoint folder, not {pair[role]}")
        settings = [
            (dataset_name(source), temperature) for source in acc["datasets"] for temperature in acc["temperatures"]
        ]
        prompts = {
            dataset: read_token_ids(prompts_dir / pair["name"] / f"{dataset}.jsonl", acc["max_prompts"])
            for dataset, _ in settings
        }
        for gamma in acc["gammas"]:
            key = fingerprint(
                "vllm", *fingerprints, prompts, settings, gamma,
                acc["batch_size"], acc["max_new_tokens"], acc["seed"], pair["draft_sampling"],
                pair["speculative_method"], pair["tensor_parallel_size"],
            )  # fmt: skip
            point = points_dir / f"vllm_{pair['name']}_g{gamma}_{key}.json"
            if not point.is_file():
                request = VllmRequest(
                    target=folders["target"], draft=folders["draft"], prompts=prompts[settings[0][0]], mode="sd",
                    method=pair["speculative_method"], draft_sampling=pair["draft_sampling"],
                    tensor_parallel_size=pair["tensor_parallel_size"],
                    gamma=gamma, batch_size=acc["batch_size"], max_new_tokens=acc["max_new_tokens"], seed=acc["seed"],
                    enforce_eager=config["vllm"]["enforce_eager"], in_process=config["vllm"]["in_process"],
                )  # fmt: skip
                passes = [
                    {"prompts": prompts[d], "temperature": t, "seed": acc["seed"], "max_new_tokens": acc["max_new_tokens"]}
                    for d, t in settings
                ]  # fmt: skip
                results = run_passes(request, passes)
                measured = []
                for (dataset, temperature), result in zip(settings, results, strict=True):
                    counters = result.acceptance()
                    n = rounds_from_counters(counters["rounds"], counters["accepted_per_position"])
                    distinct = float(np.mean([len(set(ids)) / len(ids) for ids in result.outputs if ids]))
                    setting = {"target": pair["target"], "draft": pair["draft"], "dataset": dataset,
                               "temperature": temperature, "gamma": gamma}  # fmt: skip
                    measured.append(summary_row(setting, n, gamma, len(prompts[dataset]), distinct))
                write_json(point, measured)
                log(f"measured {point.name} through vLLM: {len(measured)} settings")
            rows += json.loads(point.read_text())
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS).assign(backend="vllm")


def backends_table(ours: pd.DataFrame, vllm: pd.DataFrame) -> pd.DataFrame:
    """Ours beside vLLM per pair and setting: sigma, alpha and their ratio (same prompts, same
    greedy or sampled acceptance rule, two engines)."""
    keys = ["target", "draft", "dataset", "temperature", "gamma"]
    both = ours[keys + ["sigma", "alpha"]].merge(vllm[keys + ["sigma", "alpha"]], on=keys, suffixes=("_ours", "_vllm"))
    return both.assign(sigma_ratio=both["sigma_vllm"] / both["sigma_ours"])
