"""CUDA-graph capture of fixed-shape forwards (decode steps, verification, timed forwards).

Without graphs a decode step of a many-layer model is bound by kernel launches, not by the GPU
(the paper's vLLM ran with CUDA graphs). A graph is captured the first time a cache sees an
input shape [B, s] and replayed after: the forward runs in its static form (attention over the
whole cache, masked by slot; no host synchronisation), reading the cache's lengths on the device.
Graphs live on the cache object, so they go when the cache goes. The static form is the CPU twin
that tests compare with the dynamic forward.
"""

from __future__ import annotations

import torch


def graphs_supported(model) -> bool:
    """Graphs need CUDA and no host synchronisation inside the forward (the grouped-mm MoE)."""
    return model.device.type == "cuda" and all(moe.impl == "grouped_mm" for moe in model.moe_layers)


def run_graphed(model, input_ids: torch.Tensor, cache) -> torch.Tensor:
    """Logits of model(input_ids, cache) through a captured graph; a fresh tensor every call."""
    graphs = cache.__dict__.setdefault("graphs", {})
    key = tuple(input_ids.shape)
    entry = graphs.get(key)
    if entry is None:
        static_in = input_ids.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up before capture, as torch requires
            for _ in range(2):
                model.forward_static(static_in, cache)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = model.forward_static(static_in, cache)
        entry = graphs[key] = (graph, static_in, static_out)
    graph, static_in, static_out = entry
    static_in.copy_(input_ids)
    graph.replay()
    return static_out.clone()  # the graph's output buffer is overwritten by the next replay
