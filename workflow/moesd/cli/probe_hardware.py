"""Command of the run's environment record (workflow/rules/environment.smk, rule environment):
`moesd probe-hardware` measures the device's memory bandwidth (read, and copy) and matmul throughput into env.json
(moesd.hardware), with the package versions and git commit (moesd.io)."""

from __future__ import annotations

from pathlib import Path

from moesd.cli.args import check_cuda, device_option, positive_int


def cmd_probe(args) -> int:
    from moesd.devices import default_device
    from moesd.hardware import probe_hardware
    from moesd.io import environment, update_json
    from moesd.timing import exclusive_timing

    device = default_device() if args.device == "auto" else args.device
    check_cuda(device)
    gpu = device.startswith("cuda")
    if args.buffer_mib is not None and args.buffer_mib < 1:
        raise ValueError(f"--buffer-mib must be >= 1, got {args.buffer_mib}")
    buffer_mib = args.buffer_mib or (4096 if gpu else 256)
    matmul_n = args.matmul_n or (8192 if gpu else 1024)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    with exclusive_timing(device):
        probe = probe_hardware(device, dtype=args.dtype, buffer_mib=buffer_mib, matmul_n=matmul_n, repeats=args.repeats)
    update_json(args.out, hardware_probe=probe, environment=environment())
    print(
        f"{probe['device_name']}: read bandwidth {probe['bandwidth'] / 1e9:.1f} GB/s (copy "
        f"{probe['copy_bandwidth'] / 1e9:.1f} GB/s), {probe['dtype']} matmul "
        f"{probe['flops'] / 1e12:.3f} TFLOP/s, ridge point {probe['ridge_point']:.1f} FLOP/byte -> {args.out}"
    )
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("probe-hardware", help="measure memory bandwidth and matmul throughput into env.json")
    p.add_argument("--device", type=device_option, default="cpu", help="cpu, cuda[:N] or auto (cuda when available)")
    p.add_argument(
        "--dtype",
        choices=("auto", "float32", "bfloat16", "float16"),
        default="auto",
        help="matmul dtype: the timed models' (auto: bf16 on CUDA and on CPUs with native bf16, else fp32)",
    )
    p.add_argument(
        "--buffer-mib",
        "--copy-mib",
        type=int,
        help="MiB read and copied (default 256 on a CPU, at least 8x its last-level cache; 4096 on a GPU)",
    )
    p.add_argument("--matmul-n", type=positive_int, help="square matmul size (default 1024 on a CPU, 8192 on a GPU)")
    p.add_argument("--repeats", type=positive_int, default=10)
    p.add_argument("--threads", type=positive_int, help="CPU threads (default: torch's); the probe records them")
    p.add_argument("--out", required=True, type=Path, help="env.json to create or update")
    p.set_defaults(func=cmd_probe)
