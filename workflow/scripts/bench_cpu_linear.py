"""Benchmark: the forms of a linear layer's product on a CPU, side by side, with the read bandwidth.

Per weight shape and row count M, the median ms of each form (interleaved calls, so that a shared
machine's drift hits them alike), the GB/s at which it reads the weight, and its time over
F.linear's. Forms: F.linear; the weight-major product moesd.models.linear takes for fp32 at 2 to
64 rows; oneDNN's product on a packed copy of the weight (moesd.models.linear.Linear.pack); in
fp32, up to its ROWS_MAX rows, the rows kernel (moesd.models.rows_kernel) where it runs. A
memory-bound product should stay near its one-row time until the compute bound. Each call takes
the next of enough copies of the weight to fill STREAM_BYTES, so that weights come from memory, as
in a model's forward, not from a cache warmed by the previous call. Run it on the machine whose
latency tables you read:

    python workflow/scripts/bench_cpu_linear.py [--dtype bfloat16] [--threads 2] [--repeats 20] [--pad-to 4]
        [--shapes 256x256 512x256] [--rows 1 2 4 8 32]

--pad-to N adds the packed product of fewer than N rows padded with zeros to N (the rows past
x's dropped): whether oneDNN's few-row kernel reads the weights faster than its one-row one.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from moesd.hardware import probe_hardware
from moesd.models import rows_kernel
from moesd.models.linear import weight_major_product
from moesd.timing import interleaved_medians

# the default latency models' largest matrices: OPT-30B-shaped fc1 / fc2, Qwen2-57B-shaped
# shared expert and attention, one routed expert's gate_up
SHAPES = [(8192, 2048), (2048, 8192), (3072, 1536), (1536, 1536), (768, 1536)]
ROWS = [1, 2, 4, 5, 8, 16, 32, 64, 320]
STREAM_BYTES = 512 * 2**20  # well above a server CPU's last-level cache


def streamed(product, x: torch.Tensor, weights: list[torch.Tensor]):
    """(call, reset) for interleaved_medians: PRODUCT(x, w) over the next of WEIGHTS each call."""
    turn = iter(range(1 << 62))
    return (lambda: product(x, weights[next(turn) % len(weights)]), lambda: None)


def packed_product(x: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, packed, None, "none", [], "")


def padded(rows: int):
    """packed_product with X padded with zeros to ROWS rows (where it has fewer), its rows kept."""

    def product(x: torch.Tensor, packed: torch.Tensor) -> torch.Tensor:
        if x.shape[0] >= rows:
            return packed_product(x, packed)
        full = x.new_zeros(rows, x.shape[1])
        full[: x.shape[0]] = x
        return packed_product(full, packed)[: x.shape[0]]

    return product


def shape(text: str) -> tuple[int, int]:
    """OUTxIN, both positive integers (argparse names the flag when this raises)."""
    try:
        out_features, in_features = (int(n) for n in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not OUTxIN (for example 256x512)") from None
    if out_features < 1 or in_features < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: both sizes must be at least 1")
    return out_features, in_features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--pad-to", type=int, default=0, help="also the packed product padded to this many rows")
    parser.add_argument("--shapes", type=shape, nargs="+", default=SHAPES, help="weights OUTxIN (default: SHAPES)")
    parser.add_argument("--rows", type=int, nargs="+", default=ROWS, help="row counts M (default: ROWS)")
    args = parser.parse_args()
    if min(args.rows) < 1:
        parser.error(f"--rows: {min(args.rows)} rows; each must be at least 1")
    if args.pad_to == 1 or args.pad_to < 0:
        parser.error(f"--pad-to: {args.pad_to} pads nothing; give 2 or more rows (0: no padded form)")
    forms = ["f_linear", "weight_major", "packed"] + (["padded"] if args.pad_to > 1 else [])
    if args.dtype == "float32" and rows_kernel.available():
        forms.append("rows")
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    size = torch.tensor([], dtype=dtype).element_size()
    read = probe_hardware("cpu", args.dtype)["bandwidth"] / 1e9
    print(
        f"torch {torch.__version__}, {args.threads} threads, {args.dtype}, median ms of {args.repeats} interleaved "
        f"calls; the probe reads {read:.1f} GB/s"
    )
    pad = f" padded to {args.pad_to} ms | GB/s |" if args.pad_to > 1 else ""
    print(
        "| weight (out x in) | M | F.linear ms | GB/s | weight-major ms | GB/s | packed ms | GB/s |"
        + pad
        + (" rows kernel ms | GB/s |" if "rows" in forms else "")
        + " packed / F.linear |"
    )
    print("|" + "---|" * (len(forms) * 2 + 3))
    with torch.inference_mode():
        for out_features, in_features in args.shapes:
            copies = -(-STREAM_BYTES // (out_features * in_features * size))
            weights = [torch.randn(out_features, in_features).to(dtype) for _ in range(copies)]
            packed = [torch.ops.mkldnn._reorder_linear_weight(w) for w in weights]
            gb = out_features * in_features * size / 1e9
            for m in args.rows:
                x = torch.randn(m, in_features).to(dtype)
                calls = {
                    "f_linear": streamed(F.linear, x, weights),
                    "weight_major": streamed(weight_major_product, x, weights),
                    "packed": streamed(packed_product, x, packed),
                    # half a turn behind "packed": never the copy its call has just read into the cache
                    "padded": streamed(padded(args.pad_to), x, packed[len(packed) // 2 :] + packed[: len(packed) // 2]),
                    "rows": streamed(rows_kernel.product, x, weights),
                }
                timed = [k for k in forms if k != "rows" or rows_kernel.fits(x, weights[0])]
                ms = interleaved_medians({k: calls[k] for k in timed}, args.repeats, warmup=3)
                cells = " | ".join(f"{ms[k]:.3f} | {gb / ms[k] * 1e3:.1f}" if k in ms else "- | -" for k in forms)
                print(
                    f"| {out_features} x {in_features} | {m} | {cells} | {ms['packed'] / ms['f_linear']:.2f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
