"""The rows kernel (moesd.models.rows_kernel): its products against F.linear's, where it runs and
where it gives way, its build, and a model's logits with it against the plain twin's."""

import pytest
import torch
import torch.nn.functional as F
from moesd.models import load_model, rows_kernel
from moesd.models.linear import Linear, linear, product, uses_rows_kernel

from .tiny_models import VOCAB

KERNEL = pytest.mark.skipif(not rows_kernel.available(), reason=f"no rows kernel here: {rows_kernel.problem()}")

# (N, K): both loop orders (K below and from the C source's WIDE_K = 1024), N not a multiple of 4,
# a weight of one row, and a weight too small for a second thread
SHAPES = [(1, 8), (3, 16), (5, 1024), (7, 2048), (64, 1536), (1029, 256), (513, 1032)]


@KERNEL
@pytest.mark.parametrize("n_out, k", SHAPES)
def test_the_kernel_computes_x_times_w_transposed_plus_bias_at_every_row_count(n_out, k):
    gen = torch.Generator().manual_seed(n_out * 7 + k)
    weight, bias = torch.randn(n_out, k, generator=gen), torch.randn(n_out, generator=gen)
    for rows in range(1, rows_kernel.ROWS_MAX + 1):
        x = torch.randn(rows, k, generator=gen)
        for b in (None, bias):
            exact = F.linear(x.double(), weight.double(), None if b is None else b.double())
            got = rows_kernel.product(x, weight, b)
            assert got.dtype == torch.float32 and got.shape == (rows, n_out)
            # fp32 sums of K products: within a few units of the last place of the terms' scale
            assert ((got.double() - exact).abs() / (exact.abs() + k**0.5)).max() < 1e-5, (rows, b is None)


@KERNEL
def test_the_kernel_keeps_leading_dimensions_and_reads_strided_rows():
    x = torch.randn(2, 3, 64)
    weight = torch.randn(40, 64)
    assert torch.allclose(rows_kernel.product(x, weight), F.linear(x, weight), atol=1e-5)
    strided = torch.randn(5, 128)[:, ::2]  # rows that are not contiguous: copied first
    assert rows_kernel.fits(strided, weight)
    assert torch.allclose(rows_kernel.product(strided, weight), F.linear(strided, weight), atol=1e-5)


def test_the_kernel_takes_only_what_it_computes():
    weight = torch.randn(16, 64)
    fits = rows_kernel.fits
    assert fits(torch.randn(rows_kernel.ROWS_MAX, 64), weight)
    assert not fits(torch.randn(rows_kernel.ROWS_MAX + 1, 64), weight)  # too many rows
    assert not fits(torch.randn(0, 64), weight)
    assert not fits(torch.randn(2, 60), torch.randn(16, 60))  # K not a multiple of 8
    assert not fits(torch.randn(2, 64), torch.randn(64, 16).t())  # a transposed view of W
    assert not fits(torch.randn(2, 64).double(), weight.double())
    assert not fits(torch.randn(2, 64), weight, torch.randn(32)[::2])  # a strided bias
    assert not fits(torch.randn(2, 64, requires_grad=True), weight)  # autograd needs the library product
    with torch.no_grad():
        assert fits(torch.randn(2, 64, requires_grad=True), weight)


@KERNEL
def test_linear_layers_use_the_kernel_under_auto_only_and_give_the_same_outputs():
    layer = Linear(64, 48, bias=True)
    x = torch.randn(3, 64)
    with torch.no_grad():
        expected = F.linear(x, layer.weight, layer.bias)
        for impl, rows in (("auto", True), ("plain", False), ("packed", False)):
            layer.pack(impl)
            assert layer.rows is rows, impl
            assert torch.allclose(layer(x), expected, atol=1e-5), impl
        assert torch.allclose(linear(x, layer.weight, layer.bias, rows=True), expected, atol=1e-5)
        many = torch.randn(rows_kernel.ROWS_MAX + 5, 64)  # beyond the kernel: the library products
        assert torch.allclose(
            product(many, layer.weight, None, layer.bias, rows=True),
            F.linear(many, layer.weight, layer.bias),
            atol=1e-5,
        )
    assert not uses_rows_kernel(torch.zeros(4, 8, dtype=torch.bfloat16), "auto")


@KERNEL
@pytest.mark.parametrize("family", ["qwen2_moe", "opt", "qwen2"])
def test_a_model_with_the_kernel_gives_the_plain_twins_logits(tiny_dirs, family):
    """Steps of few rows (one and three tokens of two sequences) and a prefill of more rows than
    the kernel takes, MoE and dense, tied and untied output layers."""
    ids = torch.randint(0, VOCAB, (2, 14), generator=torch.Generator().manual_seed(5))
    logits = {}
    for impl in ("auto", "plain"):
        model = load_model(f"dir:{tiny_dirs[family]}", device="cpu", dtype=torch.float32, linear_impl=impl)
        assert model.linear_impl.endswith("+rows") == (impl == "auto"), model.linear_impl
        with torch.inference_mode():
            cache = model.new_cache(2, 16)
            parts = [model(ids[:, :10], cache)]  # 20 rows
            cache.advance(10)
            parts.append(model(ids[:, 10:11], cache))
            cache.advance(1)
            parts.append(model(ids[:, 11:], cache))
        logits[impl] = torch.cat(parts, dim=1)
    assert (logits["auto"] - logits["plain"]).abs().max() < 1e-4


def test_without_the_kernel_auto_runs_the_library_products(tiny_dirs, monkeypatch):
    monkeypatch.setattr(rows_kernel, "_load", lambda: (None, "switched off for this test"))
    assert rows_kernel.problem() == "switched off for this test" and not rows_kernel.available()
    model = load_model(f"dir:{tiny_dirs['qwen2_moe']}", device="cpu", dtype=torch.float32)
    assert not model.linear_impl.endswith("+rows") and not any(moe.rows for moe in model.moe_layers)
    with torch.inference_mode():
        assert torch.isfinite(model(torch.tensor([[1, 2, 3]]), model.new_cache(1, 8))).all()
    with pytest.raises(RuntimeError, match="the rows kernel does not run here: switched off"):
        rows_kernel.product(torch.randn(1, 8), torch.randn(2, 8))


def test_the_switch_and_a_failed_build_say_why_in_one_line(tmp_path, monkeypatch, capsys):
    load = rows_kernel._load.__wrapped__  # the uncached check (the module caches it per process)
    monkeypatch.setenv("MOESD_ROWS_KERNEL", "off")
    assert load() == (None, "MOESD_ROWS_KERNEL is off")
    monkeypatch.setenv("MOESD_ROWS_KERNEL", "of")  # a typo is refused, not read as on
    with pytest.raises(ValueError, match="MOESD_ROWS_KERNEL='of': give on or off"):
        load()
    from moesd.cli import main

    command = ["predict", "--target", "qwen2-57b-a14b", "--draft", "qwen2-0.5b", "--hardware", "2xH800"]
    with pytest.raises(SystemExit) as stop:  # every command refuses it before its work
        main([*command, "--sigma", "0.9", "--gamma", "2"])
    assert stop.value.code == 2
    assert capsys.readouterr().err == "moesd: error: MOESD_ROWS_KERNEL='of': give on or off (or unset it)\n"
    monkeypatch.delenv("MOESD_ROWS_KERNEL")
    if rows_kernel.problem() is not None:
        pytest.skip(f"no rows kernel here: {rows_kernel.problem()}")
    broken = tmp_path / "broken.c"
    broken.write_text("this is not C\n")
    monkeypatch.setattr(rows_kernel, "SOURCE", broken)
    monkeypatch.setenv("MOESD_KERNEL_CACHE", str(tmp_path / "cache"))
    with pytest.warns(RuntimeWarning, match="the rows kernel does not run here, its build failed"):
        library, problem = load()
    assert library is None and problem.startswith("its build failed: ") and "\n" not in problem
    assert list((tmp_path / "cache").iterdir()) == []  # nothing half-written left


@KERNEL
def test_the_build_is_made_once_and_renamed_into_place(tmp_path, monkeypatch):
    monkeypatch.setenv("MOESD_KERNEL_CACHE", str(tmp_path))
    first = rows_kernel._build(rows_kernel.compiler())
    stamp = first.stat().st_mtime_ns
    assert rows_kernel._build(rows_kernel.compiler()) == first and first.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]  # no temporary file left
