import json

import pytest
from moesd.hardware import HardwareError, last_level_cache_bytes, load_hardware, probe_hardware


@pytest.mark.parametrize(("name", "ridge"), [("A800", 153), ("H800", 295), ("L40", 209), ("A100", 153), ("H200", 206)])
def test_datasheet_ridge_points(name, ridge):
    assert abs(load_hardware(name).ridge_point - ridge) < 1.5


def test_platform_labels():
    hw = load_hardware("2xH800")
    assert (hw.name, hw.gpus, hw.label) == ("H800-SXM", 2, "2xH800-SXM")
    assert hw.target_bandwidth("aggregate") == 2 * hw.target_bandwidth("per_gpu")
    assert load_hardware("L40", gpus=4).gpus == 4


def test_unknown_and_ambiguous_names():
    with pytest.raises(HardwareError, match="unknown hardware 'B300'"):
        load_hardware("B300")
    with pytest.raises(HardwareError, match="ambiguous hardware 'H'"):
        load_hardware("H")
    with pytest.raises(HardwareError, match="no hardware_probe"):
        load_hardware("probe:/nonexistent/env.json")


def test_probe_measures_cpu_and_round_trips(tmp_path):
    probe = probe_hardware("cpu", buffer_mib=16, matmul_n=256, repeats=3)
    assert probe["bandwidth"] > 1e8 and probe["flops"] > 1e8  # any real CPU beats 0.1 GB/s, 0.1 GFLOP/s
    assert probe["bandwidth_kind"] == "read" and probe["copy_bandwidth"] > 1e8
    # the buffer outgrows the caches: 16 MiB asked, at least 8x the last-level cache read
    assert probe["buffer_bytes"] >= max(16 * 2**20, 8 * last_level_cache_bytes())
    assert probe["copy_bytes"] == 2 * probe["buffer_bytes"]
    env = tmp_path / "env.json"
    env.write_text(json.dumps({"hardware_probe": probe}))
    hw = load_hardware(f"probe:{env}")
    assert hw.source == "measured" and hw.bandwidth == probe["bandwidth"]
    assert hw.copy_bandwidth == probe["copy_bandwidth"]
