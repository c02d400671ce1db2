import numpy as np
import pytest
from moesd.latency.measure import TokenDraw, forward_point, per_s_records, reject_point
from moesd.latency.store import PointStore, run_point
from moesd.latency.tables import long_table, summarise_repeats
from moesd.models import load_model
from moesd.theory import expected_active_experts
from moesd.timing import RoundProtocol, timed_interleaved, timed_rounds

MOE = (
    "arch:qwen2-57b-a14b:num_hidden_layers=4,hidden_size=64,num_attention_heads=2,num_key_value_heads=1,"
    "moe_intermediate_size=16,shared_expert_intermediate_size=32,vocab_size=2048"
)


TINY_DRAFT = "arch:qwen2-0.5b:num_hidden_layers=1,hidden_size=32,num_attention_heads=2,num_key_value_heads=1,intermediate_size=64,vocab_size=512"  # fmt: skip


def tiny_latency_config(tokens=(1,), k_values=None, batch_sizes=(1,), max_new_tokens=4) -> dict:
    """A latency section of the tiny MoE and a tiny draft, one repeat each, with a forced e2e pair."""
    target = {"name": "moe", "role": "target", "spec": MOE, "tokens": list(tokens)}
    target |= {"k_values": list(k_values)} if k_values else {}
    e2e_pair = {"name": "f", "acceptance": "forced", "alpha": 0.5, "target": MOE, "draft": TINY_DRAFT}
    return {
        "pairs": [],
        "latency": {
            "models": [target, {"name": "d", "role": "draft", "spec": TINY_DRAFT}],
            "batch_sizes": list(batch_sizes),
            "warmup": 0,
            "repeats": 1,
            "reject_temperatures": [0.0],
            "e2e": {
                "pairs": [e2e_pair],
                "batch_sizes": [1],
                "temperatures": [1.0],
                "max_new_tokens": max_new_tokens,
                "context_length": 8,
                "sequences": 1,
                "warmup": 0,
                "repeats": 1,
            },  # fmt: skip
        },
    }


def e2e_pair():
    """The tiny MoE target and a one-layer dense draft of its vocabulary (random weights)."""
    draft = (
        "arch:qwen2-0.5b:num_hidden_layers=1,hidden_size=32,num_attention_heads=2,num_key_value_heads=1,"
        "intermediate_size=64,vocab_size=2048"
    )
    return load_model(MOE, device="cpu"), load_model(draft, device="cpu")


def test_points_resume_and_failures_are_recorded(tmp_path):
    store = PointStore(tmp_path)
    calls = []

    def ok():
        calls.append(1)
        return {"seconds": [0.1, 0.2, 0.3], "distinct_experts": [3, 5]}

    def oom():
        raise RuntimeError("CUDA out of memory. Tried to allocate 80.00 GiB")

    first = run_point(store, "forward", ("m", 1), ok, {"B": 1})
    again = run_point(store, "forward", ("m", 1), ok, {"B": 1})
    assert first == again and len(calls) == 1  # the stored point is not measured again
    failed = run_point(store, "forward", ("m", 64), oom, {"B": 64})
    assert failed["status"].startswith("error: RuntimeError: CUDA out of memory") and failed["attempts"] == 1
    assert run_point(store, "forward", ("m", 64), oom, {"B": 64})["attempts"] == 2  # a failure is tried again
    retried = run_point(store, "forward", ("m", 64), ok, {"B": 64})
    assert retried["status"] == "ok" and retried["attempts"] == 3 and len(calls) == 2
    assert run_point(store, "forward", ("m", 64), oom, {"B": 64}) == retried  # a whole point is kept
    table = long_table([first, failed])
    assert list(table["repeat"]) == [0, 1, 2, -1]
    assert np.isnan(table["seconds"].iloc[-1]) and table["distinct_experts_mean"].iloc[0] == 4
    assert not list(tmp_path.glob(".*.tmp"))


def test_summary_statistics_follow_the_paper_protocol():
    stats = summarise_repeats([9.0, 9.0, 9.0, 9.0, 9.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    assert stats["mean_last5"] == 3.0 and stats["median"] == 7.0


def test_distinct_experts_follow_eq8_on_random_inputs():
    model = load_model(MOE, device="cpu")  # 64 experts, top-8, random weights, random ids
    for batch in (4, 16, 64):
        measured = []
        for seed in range(4):
            (point,) = forward_point(
                model, batch, [1], [16] * batch, warmup=0, protocol=RoundProtocol.fixed(1), seed=seed
            )["per_s"]
            measured += point["distinct_experts"]
        predicted = expected_active_experts(64, 8, batch)
        assert abs(np.mean(measured) - predicted) / predicted < 0.05, (batch, np.mean(measured), predicted)


def test_reject_time_grows_with_the_logits_it_reads():
    """T_reject(B) times the acceptance rule on B x (gamma + 1) x V logits: a point 256x larger
    (B 1 -> 16, V 512 -> 8192) takes longer (medians of 5 repeats; far enough apart that noise
    cannot swap them). The quick loop shares the cores with a second worker, which can stall a whole
    measurement: like a disturbed repeat in the pipeline, the pair is measured again, up to three times."""
    for _ in range(3):
        small = reject_point(1, 4, 512, 1.0, "cpu", warmup=1, protocol=RoundProtocol.fixed(5), seed=0)["seconds"]
        large = reject_point(16, 4, 8192, 1.0, "cpu", warmup=1, protocol=RoundProtocol.fixed(5), seed=0)["seconds"]
        assert len(small) == len(large) == 5 and min(small) > 0
        if np.median(large) > 4 * np.median(small):
            return
    raise AssertionError(f"T_reject did not grow with the logits: {np.median(small)} s -> {np.median(large)} s")


def test_calls_take_turns_within_each_repeat():
    order = []
    seconds = timed_interleaved({s: (lambda s=s: order.append(s)) for s in (1, 5)}, "cpu", warmup=1, repeats=3)
    assert order == [1, 5] * 4 and {s: len(v) for s, v in seconds.items()} == {1: 3, 5: 3}


def test_one_forward_point_times_every_s_over_one_cache():
    model = load_model(MOE, device="cpu")
    point = forward_point(model, 2, [1, 3, 5], [8, 12], warmup=1, protocol=RoundProtocol.fixed(2), seed=0)
    assert [p["s"] for p in point["per_s"]] == [1, 3, 5]
    assert all(len(p["seconds"]) == 2 and len(p["distinct_experts"]) == 4 for p in point["per_s"])
    rows = per_s_records({"B": 2, "status": "ok"} | point, [1, 3, 5])
    assert [(r["B"], r["s"], r["status"]) for r in rows] == [(2, 1, "ok"), (2, 3, "ok"), (2, 5, "ok")]
    failed = per_s_records({"B": 2, "seconds": [], "status": "error: out of memory"}, [1, 5])
    assert [(r["s"], r["status"]) for r in failed] == [(1, "error: out of memory"), (5, "error: out of memory")]
    assert long_table(failed)["repeat"].tolist() == [-1, -1]


def test_a_models_batch_sizes_take_turns_within_each_round(monkeypatch):
    """forward_points times every (B, s) of a model in each round, so that a slow spell of the
    machine hits all its points alike; each B keeps its own cache, ids and rounds."""
    import moesd.latency.measure as measure

    turns = []

    def recording(calls, device, warmup, protocol):
        turns.append(list(calls))
        return timed_rounds(calls, device, warmup, protocol)

    monkeypatch.setattr(measure, "timed_rounds", recording)
    model = load_model(MOE, device="cpu")
    points = measure.forward_points(model, {1: [8], 2: [8, 12]}, [1, 3], warmup=1, protocol=RoundProtocol.fixed(2))
    assert turns == [[(1, 1), (1, 3), (2, 1), (2, 3)]]
    assert sorted(points) == [1, 2]
    for point in points.values():
        assert [p["s"] for p in point["per_s"]] == [1, 3]
        assert all(len(p["seconds"]) == 2 and len(p["distinct_experts"]) == 4 for p in point["per_s"])
        assert point["rounds_taken"] == 2
        assert point["rounds_with"] == "B=1,2"  # what a resample draws together (moesd.bootstrap)
    alone = forward_point(model, 2, [1, 3], [8, 12], warmup=1, protocol=RoundProtocol.fixed(2), seed=2)
    assert [p["distinct_experts"] for p in alone["per_s"]] == [p["distinct_experts"] for p in points[2]["per_s"]]
    assert "rounds_with" not in alone


@pytest.mark.parametrize("interleave", ["auto", "tokens"])
def test_the_sweep_times_a_models_batch_sizes_together_or_alone(tmp_path, monkeypatch, interleave):
    """latency.rounds.interleave: auto (batch_sizes, on a CPU) times a model's pending batch
    sizes in common rounds (one forward_points call per model); tokens, one B at a time. Where the
    common rounds fail, each point is measured alone and the sweep goes on. The setting is in the
    points' keys."""
    import moesd.latency.sweeps as sweeps
    from moesd.config import validate_config

    together, alone = [], []
    real_points, real_point = sweeps.forward_points, sweeps.forward_point

    def points(model, contexts, *args, **kwargs):
        together.append(sorted(contexts))
        return real_points(model, contexts, *args, **kwargs)

    def point(model, batch, *args, **kwargs):
        alone.append(batch)
        return real_point(model, batch, *args, **kwargs)

    monkeypatch.setattr(sweeps, "forward_points", points)
    monkeypatch.setattr(sweeps, "forward_point", point)
    config = tiny_latency_config(tokens=(1, 2), batch_sizes=(1, 2))
    config["latency"] |= {"rounds": {"interleave": interleave}, "e2e": {"pairs": []}}
    lat = validate_config(config)["latency"]
    forward, draft = sweeps.sweep_forward(lat, PointStore(tmp_path / "a"), [], tmp_path, [], tmp_path)
    assert len(forward) == 4 and len(draft) == 2 and all(r["status"] == "ok" for r in forward + draft)
    if interleave != "tokens":
        assert (together, alone) == ([[1, 2], [1, 2]], [])
    else:
        assert (together, alone) == ([], [1, 2] * 2)

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory at B = 4")

    monkeypatch.setattr(sweeps, "forward_points", broken)
    alone.clear()
    forward, draft = sweeps.sweep_forward(lat, PointStore(tmp_path / "b"), [], tmp_path, [], tmp_path)
    assert all(r["status"] == "ok" for r in forward + draft)
    assert alone == [1, 2] * 2
    other = "tokens" if interleave != "tokens" else "batch_sizes"
    config["latency"]["rounds"]["interleave"] = other
    store = PointStore(tmp_path / "a")
    stored = {path.name for path in store.folder.glob("forward_*.json")}
    monkeypatch.setattr(sweeps, "forward_points", real_points)
    sweeps.sweep_forward(validate_config(config)["latency"], store, [], tmp_path, [], tmp_path)
    assert len({path.name for path in store.folder.glob("forward_*.json")} - stored) == 4


def test_e2e_point_decodes_its_batches_in_turn_with_their_own_seeds():
    """A point of `sequences` prompts at batch size B decodes ceil(sequences / B) batches one after
    another: its time, prefill, tokens and sigma cover all of them, and each batch draws its own
    forced acceptances (one seed for all would repeat the first batch's luck)."""
    from moesd.decode import GenerationConfig, decode
    from moesd.latency.measure import e2e_point

    target, draft = e2e_pair()
    batches = [[[5, 6, 7]], [[8, 9]], [[10]]]
    decoding = dict(gamma=3, temperature=0.0, max_new_tokens=12, acceptance="forced", alpha=0.6, batching="static")
    point = e2e_point(target, draft, batches, mode="sd", seed=0, warmup=1, repeats=2, **decoding)
    assert len(point["seconds"]) == 2 and len(point["prefill_seconds"]) == 2
    assert point["tokens"] == 3 * 12 and 0 < point["prefill_seconds"][0] < point["seconds"][0]

    per_batch = [
        decode(target, b, GenerationConfig(stop_at_eos=False, seed=j, **decoding), draft, "sd")
        for j, b in enumerate(batches)
    ]
    accepted = [[n for seq in r.accepted_per_sequence for n in seq] for r in per_batch]
    assert len({tuple(a) for a in accepted}) > 1  # the batches' acceptance draws differ
    every = np.concatenate(accepted)
    assert point["sigma"] == pytest.approx(np.mean(every + 1) / 4)
    sums = np.array(point["accepted_sums"].split(";"), float)  # per sequence, so sigma resamples by prompt
    rounds = np.array(point["accepted_rounds"].split(";"), float)
    assert len(sums) == 3 and sums.sum() / rounds.sum() / 4 == pytest.approx(point["sigma"])
    ar = e2e_point(target, draft, batches, mode="ar", seed=0, warmup=0, repeats=1, **decoding)
    assert ar["tokens"] == 36 and np.isnan(ar["sigma"])


def test_a_compiled_draft_warms_up_on_every_batch(monkeypatch):
    """A compiled draft compiles once per cache size (moesd.models.compiled), and each batch of a
    point sizes its own caches: under it the warm-up decodes every batch, so that no compile lands
    in a timed repeat. AR and an eager draft warm up on the first batch only."""
    from types import SimpleNamespace

    import moesd.decode
    from moesd.latency.measure import e2e_point

    target, draft = e2e_pair()
    real, seen = moesd.decode.decode, []

    def recording(target, batch, config, draft=None, mode="ar", **memo):
        seen.append(batch[0][0])
        return real(target, batch, config, draft=draft and draft.model, mode=mode, **memo)

    monkeypatch.setattr(moesd.decode, "decode", recording)
    batches = [[[5, 6, 7]], [[8, 9]], [[10]]]
    decoding = dict(gamma=2, temperature=0.0, max_new_tokens=3, acceptance="target", alpha=None, batching="static")
    for compiled, mode, warmed in ((True, "sd", [5, 8, 10]), (False, "sd", [5]), (True, "ar", [5])):
        seen.clear()
        stand_in = SimpleNamespace(model=draft, compiled=compiled)
        e2e_point(target, stand_in, batches, mode=mode, seed=0, warmup=1, repeats=1, **decoding)
        assert seen == warmed + [5, 8, 10], (compiled, mode)


def test_ar_and_sd_repeats_take_turns(monkeypatch):
    """The e2e speedup T_AR / T_SD is measured side by side: after each mode's warm-up, the AR and
    SD repeats of a point alternate, each mode's record holding its own repeats."""
    import moesd.decode
    from moesd.latency.measure import e2e_points

    target, draft = e2e_pair()
    real, modes = moesd.decode.decode, []

    def recording(target, batch, config, draft=None, mode="ar", **memo):
        modes.append(mode)
        return real(target, batch, config, draft=draft, mode=mode, **memo)

    monkeypatch.setattr(moesd.decode, "decode", recording)
    decoding = dict(gamma=2, temperature=0.0, max_new_tokens=3, acceptance="target", alpha=None, batching="static")
    points = e2e_points(target, draft, [[[5, 6, 7]]], modes=("ar", "sd"), seed=0, warmup=1, repeats=3, **decoding)
    assert modes == ["ar", "sd"] + ["ar", "sd"] * 3
    assert [len(points[m]["seconds"]) for m in ("ar", "sd")] == [3, 3]
    assert np.isnan(points["ar"]["sigma"]) and points["sd"]["sigma"] > 0
    assert points["ar"]["rounds_with"] == points["sd"]["rounds_with"] == "mode=ar,sd"
    one = e2e_points(target, draft, [[[5, 6, 7]]], modes=("sd",), seed=0, warmup=0, repeats=1, **decoding)
    assert "rounds_with" not in one["sd"]


def test_a_prefill_once_leaves_the_tokens_and_times_the_decode(monkeypatch):
    """latency.e2e.prefill once: every batch prefilled before the timed repeats, each generation
    from a copy; the same outputs as prefill each, and the records say which they are."""
    import moesd.decode.engine as engine
    from moesd.latency.measure import e2e_points

    target, draft = e2e_pair()
    decoding = dict(gamma=2, temperature=1.0, max_new_tokens=4, acceptance="target", alpha=None, batching="static")
    batches = [[[5, 6, 7], [8, 9, 10, 11]], [[12, 13], [14, 15, 16]]]
    each = e2e_points(target, draft, batches, modes=("ar", "sd"), seed=0, warmup=0, repeats=2, **decoding)
    prefills = []
    real = engine.forward_ragged
    monkeypatch.setattr(engine, "forward_ragged", lambda model, *a: prefills.append(model) or real(model, *a))
    once = e2e_points(
        target, draft, batches, modes=("ar", "sd"), seed=0, warmup=0, repeats=2, prefill="once", **decoding
    )
    assert len(prefills) == 4  # 2 batches x (target, draft), whatever the repeats and modes
    for mode in ("ar", "sd"):
        assert (each[mode]["prefill"], once[mode]["prefill"]) == ("each", "once")
        assert once[mode]["accepted_sums"] == each[mode]["accepted_sums"]
        assert once[mode]["tokens"] == each[mode]["tokens"]


def test_prompt_ids_feed_the_timed_forwards():
    """Ids drawn from a prompt set reach the model: a prompt set of one repeated token routes every
    token of every sequence alike (one hidden state everywhere), so each layer activates exactly
    top-k experts, where uniform ids activate about Eq. 8's count."""
    model = load_model(MOE, device="cpu")  # 64 experts, top-8
    same = [[7] * 40, [7] * 25]
    (point,) = forward_point(
        model, 16, [1], [16] * 16, warmup=0, protocol=RoundProtocol.fixed(1), seed=0, prompts=same
    )["per_s"]
    assert point["distinct_experts"] == [8.0] * 4
    (point,) = forward_point(model, 16, [1], [16] * 16, warmup=0, protocol=RoundProtocol.fixed(1), seed=0)["per_s"]
    assert min(point["distinct_experts"]) > 30  # Eq. 8: about 48 of 64 at 16 tokens


def test_token_draw_walks_the_prompt_set_or_draws_uniformly():
    prompts = [[1, 2, 3], [4, 5], [6]]
    draw = TokenDraw(10, seed=0, prompts=prompts)
    first, second = draw(4), draw(4)
    stream = draw.stream
    assert sorted(stream) == [1, 2, 3, 4, 5, 6] and first + second == (stream * 2)[:8]  # consecutive, cycled
    assert TokenDraw(10, 0, prompts).stream == stream  # the seed fixes the order
    uniform = TokenDraw(10, seed=0)
    assert len(uniform(1000)) == 1000 and set(uniform(1000)) == set(range(10))
    with pytest.raises(ValueError, match="beyond the model's vocabulary 5"):
        TokenDraw(5, 0, prompts)


def test_each_latency_model_takes_its_pairs_prompts_or_random_ids(tmp_path):
    from moesd.latency.sweeps import token_source

    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "humaneval.jsonl").write_text('{"input_ids": [1, 2, 3]}\n{"input_ids": [4]}\n')
    pairs = [{"name": "p", "target": "trained:target", "draft": "trained:draft"}]
    context = {"ids": "auto", "ids_dataset": "humaneval"}
    trained = {"name": "t", "spec": "trained:target"}
    assert token_source(trained, context, pairs, tmp_path) == ("p/humaneval", [[1, 2, 3], [4]])
    assert token_source({"name": "a", "spec": MOE}, context, pairs, tmp_path) == ("random", None)  # random weights
    assert token_source(trained, context | {"ids": "random"}, pairs, tmp_path) == ("random", None)
    arch_pair = pairs + [{"name": "q", "target": MOE, "draft": MOE}]
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "humaneval.jsonl").write_text('{"input_ids": [5]}\n')
    prompted = token_source({"name": "a", "spec": MOE}, context | {"ids": "prompts"}, arch_pair, tmp_path)
    assert prompted == ("q/humaneval", [[5]])  # prompts: even a random-weight model of a pair
    with pytest.raises(ValueError, match="latency.context.ids: prompts for latency model 't', but no prompt file"):
        token_source(trained, context | {"ids": "prompts", "ids_dataset": "mtbench"}, pairs, tmp_path)


def test_every_input_that_changes_a_measurement_is_in_its_key(tmp_path):
    """Changing latency.seed measures the e2e points again (it seeds their sampling), not the
    forward points. (The device and the CUDA-graph setting are in both keys too; a CPU-only
    machine cannot change them.)"""
    from moesd.config import validate_config
    from moesd.latency.sweeps import run_sweeps

    config = tiny_latency_config()
    store = PointStore(tmp_path / "points")

    def kinds():
        return sorted(path.name.split("_")[0] for path in store.folder.glob("*.json"))

    run_sweeps(validate_config(config), tmp_path, tmp_path / "prompts", None, store)
    first = kinds()
    assert first.count("e2e") == 2 and first.count("forward") == 2  # AR and SD; target and draft
    config["latency"]["seed"] = 1
    run_sweeps(validate_config(config), tmp_path, tmp_path / "prompts", None, store)
    again = kinds()
    assert again.count("e2e") == 4 and again.count("forward") == 2 and again.count("reject") == 1


def test_a_stored_failure_is_measured_again_with_its_model_loaded(tmp_path):
    """A forward and an e2e point stored as failed (an out-of-memory, say) are measured on the
    next sweep, their models loaded for them (a stored failure once counted as measured, and the
    sweep timed a model it had not loaded); the measured points stay as they were."""
    import json

    from moesd.config import validate_config
    from moesd.latency.sweeps import run_sweeps

    config = validate_config(tiny_latency_config())
    store = PointStore(tmp_path / "points")
    run_sweeps(config, tmp_path, tmp_path / "prompts", None, store)
    measured = {p: json.loads(p.read_text()) for p in sorted(store.folder.glob("*.json"))}
    measured = {p: r for p, r in measured.items() if r["status"] == "ok"}  # (the forced pair's SD point fails)
    failed = [next(p for p in measured if p.name.startswith(kind)) for kind in ("forward", "e2e")]
    for path in failed:
        kept = {k: v for k, v in measured[path].items() if k not in ("per_s", "seconds", "distinct_experts")}
        path.write_text(json.dumps(kept | {"seconds": [], "distinct_experts": [], "status": "error: injected"}))
    others = {p: p.read_text() for p in measured if p not in failed}
    run_sweeps(config, tmp_path, tmp_path / "prompts", None, store)
    for path in failed:
        again = json.loads(path.read_text())
        assert again["status"] == "ok" and again["attempts"] == 2, path.name
    assert {p: p.read_text() for p in others} == others


def test_vllm_e2e_sweep_passes_resumes_and_records_failures(tmp_path, monkeypatch):
    """The vLLM e2e sweep without vLLM (its engine replaced): one engine per pair, K and mode,
    each (temperature, B) a pass admitting B sequences with its prefill timed, the same prompts
    as our engine's batches; an engine failure is recorded at each of its points, retried on the
    next run, and stored points are not measured again."""
    import json

    from moesd.backends import vllm
    from moesd.config import validate_config
    from moesd.latency.e2e import batches_of
    from moesd.latency.e2e_vllm import sweep_e2e_vllm

    from .tiny_models import save_tiny

    for role, family in (("target", "qwen2_moe"), ("draft", "qwen2")):
        save_tiny(family, tmp_path / role, num_attention_heads=1, num_key_value_heads=1)
    prompts = [[1, 2, 3], [4, 5], [6, 7, 8, 9]]
    (tmp_path / "prompts/p").mkdir(parents=True)
    (tmp_path / "prompts/p/humaneval.jsonl").write_text("".join(json.dumps({"input_ids": p}) + "\n" for p in prompts))
    config = validate_config(
        {
            "pairs": [{"name": "p", "target": f"dir:{tmp_path / 'target'}", "draft": f"dir:{tmp_path / 'draft'}"}],
            "latency": {
                "device": "cpu",
                "e2e": {
                    "backends": ["ours", "vllm"],
                    "pairs": [{"name": "p", "acceptance": "real", "pair": "p", "k_values": [1, 2]}],
                    "batch_sizes": [1, 2],
                    "temperatures": [0.0, 1.0],
                    "sequences": 4,
                    "max_new_tokens": 3,
                },
            },
        }
    )
    calls, fail = [], [True]

    def fake_run_passes(request, passes):
        calls.append((request, passes))
        if fail[0]:
            raise vllm.VllmFailure("vLLM worker failed (exit 1): RuntimeError: out of memory")
        metrics = {"vllm:spec_decode_num_drafts": 4, "vllm:spec_decode_num_draft_tokens": 16,
                   "vllm:spec_decode_num_accepted_tokens": 8, "vllm:spec_decode_num_accepted_tokens_per_pos": [4, 2, 1, 1]}  # fmt: skip
        return [
            vllm.VllmResult([[1] * 3] * len(p["prompts"]), [0.5, 0.4], metrics, [0.1, 0.1], p["slots"]) for p in passes
        ]

    monkeypatch.setattr(vllm, "run_passes", fake_run_passes)
    store = PointStore(tmp_path / "points")
    failed = sweep_e2e_vllm(config, store, tmp_path, tmp_path / "prompts", log=lambda line: None)
    assert len(calls) == 4 and len(failed) == 16  # (K 1, 2) x (ar, sd) engines; x (T, B) points
    assert all("VllmFailure: vLLM worker failed" in r["status"] and r["attempts"] == 1 for r in failed)
    fail[0], calls[:] = False, []
    records = sweep_e2e_vllm(config, store, tmp_path, tmp_path / "prompts", log=lambda line: None)
    assert len(calls) == 4 and all(r["status"] == "ok" and r["attempts"] == 2 for r in records)
    request, passes = calls[0]
    assert request.hf_overrides == {"num_experts_per_tok": 1} and request.batch_size == 2 and request.mode == "ar"
    assert [(p["temperature"], p["slots"], p["prefill"]) for p in passes] == [
        (0.0, 1, True), (0.0, 2, True), (1.0, 1, True), (1.0, 2, True)
    ]  # fmt: skip
    assert passes[1]["prompts"] == [ids for batch in batches_of(prompts, 4, 2) for ids in batch]  # ours' order
    sd = [r for r in records if r["mode"] == "sd"]
    assert {r["K"] for r in records} == {1, 2} and {r["K_native"] for r in records} == {2}
    assert all(r["sigma"] == pytest.approx((8 + 4) / (4 * 5)) and r["backend"] == "vllm" for r in sd)
    assert {r["peak_running"] for r in records if r["B"] == 2} == {2}
    calls[:] = []
    assert {r["batching"] for r in records} == {"continuous"}  # vLLM's own, whatever the config's
    config["latency"]["e2e"]["pairs"][0]["k_values"] = [2, 9]  # the tiny target has 8 experts
    with pytest.raises(vllm.VllmError, match=r"latency.e2e.pairs.0.k_values: K=9, but the target .* has 8 experts"):
        sweep_e2e_vllm(config, store, tmp_path, tmp_path / "prompts", log=lambda line: None)
    config["latency"]["e2e"]["pairs"][0]["k_values"] = [1, 2]
    again = sweep_e2e_vllm(config, store, tmp_path, tmp_path / "prompts", log=lambda line: None)
    assert [r["seconds"] for r in again] == [
        r["seconds"] for r in records
    ] and not calls  # every point stored: no engine starts


def test_a_model_whose_every_point_failed_fails_the_stage(capsys):
    import pandas as pd
    from moesd.io import StageFailure
    from moesd.latency.tables import failures, report_failures

    ok = [{"model": "a", "k_override": None, "B": b, "repeat": r, "status": "ok"} for b in (1, 4) for r in (0, 1)]
    oom = "error: RuntimeError: out of memory"
    forward = pd.DataFrame(
        ok
        + [{"model": "a", "k_override": None, "B": 64, "repeat": -1, "status": oom}]
        + [{"model": "b", "k_override": 2, "B": b, "repeat": -1, "status": oom} for b in (1, 4)]
    )
    e2e = pd.DataFrame([{"name": "p", "backend": "ours", "K": 2, "B": 1, "repeat": 0, "status": "ok"}])
    lines, whole = failures({"forward": forward, "e2e": e2e, "reject": pd.DataFrame()})
    assert lines == [
        f"forward model=a: 1 of 3 points failed (first: {oom})",
        f"forward model=b k_override=2: 2 of 2 points failed (first: {oom})",
    ]
    assert whole == ["forward model=b k_override=2"]
    with pytest.raises(StageFailure, match="latency: every point of forward model=b k_override=2 failed"):
        report_failures({"forward": forward}, "latency")
    report_failures({"forward": forward[forward["model"] == "a"]}, "latency")  # some points failed: no error
    assert "forward model=a: 1 of 3 points failed" in capsys.readouterr().out


@pytest.mark.slow  # times the stage twice (about 10 s)
def test_the_slices_gathered_hold_the_whole_stages_points(tmp_path, capsys):
    """One job per slice (a model at one K, the rejection rule, the end-to-end points), then
    `moesd gather`: the same rows, in the same order, as the stage run as one job (the timings
    themselves differ run to run), each with the slice's platform; an unknown slice stops in one line."""
    import json

    import pandas as pd
    from moesd.cli import main
    from moesd.config import latency_slices, validate_config

    config = tiny_latency_config(tokens=[1, 2], k_values=[2, 8], batch_sizes=[1, 2], max_new_tokens=2)
    path = tmp_path / "latency.json"
    path.write_text(json.dumps(config))
    slices = list(latency_slices(validate_config(config)))
    assert slices == [f"local/{part}" for part in ("model-moe-K2", "model-moe-K8", "model-d", "reject", "e2e-f")]
    base = ["latency", "--config", str(path), "--run-dir", str(tmp_path), "--prompts", str(tmp_path / "prompts")]
    assert main([*base, "--out", str(tmp_path / "whole")]) == 0
    for name in slices:
        assert main([*base, "--slice", name, "--out", str(tmp_path / "slices" / name)]) == 0
    folders = [str(tmp_path / "slices" / name) for name in slices]
    tables = ["--tables", "forward", "draft", "reject", "e2e"]
    assert main(["gather", *folders, *tables, "--out", str(tmp_path / "gathered")]) == 0
    keys = {"forward": ["model", "k_override", "B", "s", "repeat"], "draft": ["model", "B", "s", "repeat"],
            "reject": ["B", "temperature", "repeat"], "e2e": ["name", "mode", "B", "repeat"]}  # fmt: skip
    for table, columns in keys.items():
        whole, gathered = (pd.read_csv(tmp_path / where / f"{table}.csv") for where in ("whole", "gathered"))
        assert len(whole) > 0 and list(whole.columns) == list(gathered.columns), table
        pd.testing.assert_frame_equal(whole[columns], gathered[columns], obj=table)
        assert set(gathered["platform"]) == {"local"}, table
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main([*base, "--slice", "model-nope", "--out", str(tmp_path / "nope")])
    assert stop.value.code == 2 and "--slice model-nope: not a slice of this config" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:  # a slice id names its platform
        main([*base, "--slice", "model-d", "--out", str(tmp_path / "nope")])
    assert (
        stop.value.code == 2
        and "--slice model-d: not a slice of this config (local/model-moe-K2" in capsys.readouterr().err
    )


def test_failed_tries_grow_with_each_failure_and_stay_once_measured(tmp_path):
    """The slice's param that makes Snakemake run it again: a failed try adds one, a retry that
    measures the point keeps the count (no third run), one that fails again adds one more."""
    import pandas as pd
    from moesd.latency.retries import failed_tries
    from moesd.latency.tables import missing_note, missing_points

    def table(rows):
        path = tmp_path / "forward.csv"
        pd.DataFrame(rows).to_csv(path, index=False)
        return [path, tmp_path / "absent.csv"]

    ok = [{"model": "a", "B": 1, "s": s, "repeat": r, "status": "ok", "attempts": 1} for s in (1, 2) for r in (0, 1)]
    failed = [{"model": "a", "B": 8, "s": s, "repeat": -1, "status": "error: oom", "attempts": 1} for s in (1, 2)]
    assert failed_tries(table(ok)) == 0
    first = failed_tries(table(ok + failed))
    retried = [row | {"repeat": 0, "status": "ok", "attempts": 2} for row in failed]
    assert first == 2 and failed_tries(table(ok + retried)) == first
    assert failed_tries(table(ok + [row | {"attempts": 2} for row in failed])) == 4
    (tmp_path / "empty.csv").write_text("\n")  # a slice that writes no rows of this table
    assert failed_tries([tmp_path / "empty.csv"]) == 0
    (tmp_path / "damaged.csv").write_bytes(b"repeat,status,attempts\n0,ok,x\n\xff\xfe")  # its slice runs again
    assert failed_tries([tmp_path / "damaged.csv"]) >= 10**6

    missing = missing_points({"forward": pd.DataFrame(ok + failed), "e2e": pd.DataFrame()})
    assert list(missing.columns) == ["table", "model", "B", "s", "status", "attempts"] and len(missing) == 2
    note = missing_note(missing)
    assert note.startswith("2 latency points failed and are left out (2 forward; first: error: oom)")
    assert missing_note(missing_points({"forward": pd.DataFrame(ok)})) == ""


def test_every_context_length_is_capped_by_max_length():
    """max_length caps a drawn length and the fallback where no prompt set is available (the memory
    estimate and the position check read it as the longest context)."""
    from moesd.latency.measure import context_lengths

    spec = {"source": "humaneval", "length": 128, "max_length": 64}
    assert context_lengths(3, spec, None, seed=0) == [64, 64, 64]
    assert max(context_lengths(50, spec, [10, 70, 900], seed=0)) == 64
    assert context_lengths(2, dict(spec, source="fixed", length=32), None, seed=0) == [32, 32]
