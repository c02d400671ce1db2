"""Benchmark: fp32 F.linear against the weight-major product moesd.models.linear takes on a CPU.

Prints, per weight shape and row count M, the median ms of each form (interleaved calls, so that
a shared machine's drift hits both alike), their ratio, and each form's time relative to its own
one-row time: a memory-bound product should stay near 1x until the compute bound. Each call takes
the next of enough copies of the weight to fill STREAM_BYTES, so that weights come from memory, as
in a model's forward, not from a cache warmed by the previous call. Run it on the machine whose
latency tables you read:

    python workflow/scripts/bench_cpu_linear.py [--threads 2] [--repeats 20]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from moesd.models.linear import weight_major_product
from moesd.timing import interleaved_medians

# the default latency models' largest matrices: OPT-30B-shaped fc1 / fc2, Qwen2-57B-shaped
# shared expert and attention, one routed expert's gate_up
SHAPES = [(8192, 2048), (2048, 8192), (3072, 1536), (1536, 1536), (768, 1536)]
ROWS = [1, 2, 4, 5, 8, 16, 24, 32, 64, 320]
STREAM_BYTES = 512 * 2**20  # well above a server CPU's last-level cache


def streamed(product, x: torch.Tensor, weights: list[torch.Tensor]):
    """(call, reset) for interleaved_medians: PRODUCT(x, w) over the next of WEIGHTS each call."""
    turn = iter(range(1 << 62))
    return (lambda: product(x, weights[next(turn) % len(weights)]), lambda: None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, fp32, median of {args.repeats} interleaved calls")
    print(
        f"{'out x in':>12} {'M':>4} {'F.linear ms':>12} {'weight-major':>13} {'ratio':>6} {'F.lin/M=1':>10} {'wm/M=1':>7}"
    )
    with torch.inference_mode():
        for out_features, in_features in SHAPES:
            copies = -(-STREAM_BYTES // (out_features * in_features * 4))
            weights = [torch.randn(out_features, in_features) for _ in range(copies)]
            first = None
            for m in ROWS:
                x = torch.randn(m, in_features)
                contenders = {
                    "f_linear": streamed(F.linear, x, weights),
                    "weight_major": streamed(weight_major_product, x, weights),
                }
                ms = interleaved_medians(contenders, args.repeats, warmup=3)
                first = first or ms
                print(
                    f"{out_features:>5} x {in_features:<5} {m:>4} {ms['f_linear']:>12.3f} {ms['weight_major']:>13.3f} "
                    f"{ms['f_linear'] / ms['weight_major']:>6.2f} {ms['f_linear'] / first['f_linear']:>10.2f} "
                    f"{ms['weight_major'] / first['weight_major']:>7.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
