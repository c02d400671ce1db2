"""Where a decode step's time goes: the latency stage's forward (T_T(B, s) of Eq. 2-4 of arXiv
2505.19645: s new tokens for each of B sequences over a KV cache holding a context) timed without
a profiler, then once more under torch.profiler and its operators' own time sorted into what the
step does:

    weights      matrix products that stream the weights: the attention projections, the experts
                 (grouped or per expert), the router, dense MLPs, the LM head (the library's
                 operators and the rows kernel's calls, moesd.models.rows_kernel)
    attention    the softmax over the KV cache (the attention kernel, moesd.models.attention)
    routing      top-k, sorting, gather and scatter of the tokens to their experts, the
                 expert counts read back to the host
    copies       KV-cache writes, concatenations, dtype casts
    allocation   new tensors (empty, zeros, arange, ...)
    elementwise  norms, activations, rotary embeddings, residual adds
    dispatch     the step's wall time under the profiler less its operators' own time: Python,
                 module calls and operator dispatch

beside the time the step's weights take at the probe's read bandwidth (the weights it reads: the
dense part and the distinct experts it routes to, moesd.bandwidth), so that the step's fraction
of the machine's bandwidth is read off the same table. The profiler adds its own cost per
operator: shares are of the profiled step, and the unprofiled step's median is given beside them.
"""

from __future__ import annotations

import contextlib
import statistics
import time

import torch

from moesd.bandwidth import weight_bytes
from moesd.decode.engine import forward_ragged
from moesd.latency.measure import TokenDraw
from moesd.models.rows_kernel import PROFILE_NAME as ROWS_PRODUCT

CATEGORIES = ("weights", "attention", "routing", "copies", "allocation", "elementwise", "dispatch")
GEMMS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::mv", "aten::addmv", "aten::_grouped_mm",
         "aten::_weight_int8pack_mm", "aten::dot", "mkldnn::_linear_pointwise", ROWS_PRODUCT}  # fmt: skip
ROUTING = {"aten::topk", "aten::sort", "aten::argsort", "aten::scatter_add_", "aten::index", "aten::index_add_",
           "aten::index_select", "aten::gather", "aten::cumsum", "aten::_local_scalar_dense", "aten::nonzero",
           "aten::bincount", "aten::floor_divide", "aten::item"}  # fmt: skip
COPIES = {"aten::copy_", "aten::index_put_", "aten::_index_put_impl_", "aten::index_copy_", "aten::cat",
          "aten::clone", "aten::_to_copy", "aten::slice_scatter", "aten::contiguous"}  # fmt: skip
ALLOCATION = {"aten::empty", "aten::empty_strided", "aten::zeros", "aten::zeros_like", "aten::empty_like",
              "aten::full", "aten::ones_like", "aten::resize_", "aten::arange", "aten::new_empty"}  # fmt: skip


def category(name: str, scope: str | None = None) -> str:
    """The category of operator NAME (its own time) inside SCOPE ("attend": the attention kernel,
    whatever its operators; "moe": an MoE layer, where softmax is routing)."""
    if scope == "attend" or "scaled_dot_product" in name or "flash_attention" in name:
        return "attention"
    if name in GEMMS:
        return "weights"
    if name in ROUTING or (scope == "moe" and "softmax" in name):
        return "routing"
    if name in COPIES:
        return "copies"
    if name in ALLOCATION:
        return "allocation"
    return "elementwise"


@contextlib.contextmanager
def scopes(model):
    """Profiler ranges around each MoE layer's forward ("moe", by hooks) and each attention
    kernel call ("attend"), removed after: the engine's code stays as it is."""
    from moesd.models import transformer
    from moesd.models.moe import MoE

    ranges, handles = [], []

    def enter(module, args):
        scope = torch.profiler.record_function("moe")
        scope.__enter__()
        ranges.append(scope)

    def leave(module, args, output):
        ranges.pop().__exit__(None, None, None)

    for module in model.modules():
        if isinstance(module, MoE):
            handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    original = transformer.attend

    def attend(*args, **kwargs):
        with torch.profiler.record_function("attend"):
            return original(*args, **kwargs)

    transformer.attend = attend
    try:
        yield
    finally:
        transformer.attend = original
        for handle in handles:
            handle.remove()


def _scope(event) -> str | None:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name in ("moe", "attend"):
            return parent.name
        parent = parent.cpu_parent
    return None


def split_time(events, wall_us: float, steps: int) -> dict[str, float]:
    """Milliseconds per step of each category from a profile's EVENTS (each operator's own
    time), the rest of WALL_US (the profiled steps' wall time) as dispatch."""
    totals = dict.fromkeys(CATEGORIES, 0.0)
    for event in events:
        if not event.name.startswith(("aten::", "mkldnn::", "moesd::")):  # operators (mkldnn: the packed
            # products; moesd: the rows kernel's range, no operator inside it)
            continue
        totals[category(event.name, _scope(event))] += event.self_cpu_time_total
    totals["dispatch"] = max(0.0, wall_us - sum(totals.values()))
    return {name: value / steps / 1e3 for name, value in totals.items()}


class Steps:
    """The latency stage's step of one shape: a cache holding CONTEXT tokens for each of BATCH
    sequences, and fresh ids of S tokens each for every call (the lengths never advance: every
    call is the same step shape)."""

    def __init__(self, model, batch: int, s: int, context: int, seed: int = 0):
        self.model, self.batch, self.s = model, batch, s
        self.draw = TokenDraw(model.cfg.vocab_size, seed)
        self.cache = model.new_cache(batch, context + s)
        forward_ragged(model, self.cache, [self.draw(context) for _ in range(batch)])
        self.sync = torch.cuda.synchronize if model.device.type == "cuda" else (lambda: None)

    def ids(self) -> torch.Tensor:
        return torch.tensor(self.draw(self.batch * self.s)).view(self.batch, self.s).to(self.model.device)

    @torch.inference_mode()
    def timed(self, n: int, warmup: int = 0) -> list[float]:
        """N steps' wall times in ms (after WARMUP untimed ones), each bracketed by a device sync."""
        times = []
        for i in range(warmup + n):
            step = self.ids()
            self.sync()
            start = time.perf_counter()
            self.model(step, self.cache)
            self.sync()
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
        return times


def profile_step(model, batch: int, s: int, context: int, repeats: int, warmup: int = 3, seed: int = 0) -> dict:
    """One step shape of MODEL: the unprofiled median (ms, fresh tokens each call), the profiled
    step split by category (ms), and the distinct experts per MoE layer it routed to."""
    steps = Steps(model, batch, s, context, seed)
    times = steps.timed(repeats, warmup)
    with torch.inference_mode():
        inputs = [steps.ids() for _ in range(repeats)]
        activities = [torch.profiler.ProfilerActivity.CPU]
        with scopes(model), torch.profiler.profile(activities=activities) as prof:
            start = time.perf_counter()
            for step in inputs:
                model(step, steps.cache)
            steps.sync()
            wall = time.perf_counter() - start
        distinct = float("nan")
        if model.cfg.is_moe:
            with model.router_recording() as recorded:
                model(steps.ids(), steps.cache)
            distinct = torch.stack(recorded).gt(0).sum(dim=2).float().mean().item()  # per layer
    split = split_time(prof.events(), wall * 1e6, repeats)
    return {"step_ms": statistics.median(times), "profiled_ms": wall / repeats * 1e3,
            "distinct_experts": distinct} | split  # fmt: skip


def profile_rows(model, spec: str, dtype: str, shapes, context: int, repeats: int, bandwidth: float) -> list[dict]:
    """A row per (B, s) of SHAPES: profile_step's times, the weights the step reads and their time
    at BANDWIDTH (byte/s), and the step's fraction of it (weights time over the unprofiled step)."""
    rows = []
    for batch, s in shapes:
        part = profile_step(model, batch, s, context, repeats)
        read = weight_bytes(spec, part["distinct_experts"], dtype)
        roofline_ms = read / bandwidth * 1e3
        rows.append({"B": batch, "s": s, "weight_mb": read / 1e6, "roofline_ms": roofline_ms} | part
                    | {"bandwidth_fraction": roofline_ms / part["step_ms"]})  # fmt: skip
    return rows
