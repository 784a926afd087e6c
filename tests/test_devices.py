"""Precision auto-selection follows measured speed, not feature flags alone."""

import pytest
import torch

from dgn_cli import devices
from dgn_cli.errors import DeviceError


def test_auto_precision_on_cpu_follows_amx_or_the_timing(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(devices, "cpu_bf16_measured_faster", lambda: False)
    assert devices.resolve_precision(cpu, "auto") == torch.float32  # bf16 measured slower here
    monkeypatch.setattr(devices, "cpu_bf16_measured_faster", lambda: True)
    assert devices.resolve_precision(cpu, "auto") == torch.bfloat16
    monkeypatch.setattr(devices, "cpu_bf16_measured_faster", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert devices.resolve_precision(cpu, "auto") == torch.bfloat16
    assert devices.resolve_precision(cpu, "fp32") == torch.float32
    assert devices.resolve_precision(cpu, "bf16") == torch.bfloat16


def test_one_precision_rule_for_inference_and_training(monkeypatch):
    """bf16 on a CPU without native bf16 runs for both, with a warning; fp16 trains nowhere."""
    cpu = torch.device("cpu")
    monkeypatch.setattr(devices, "cpu_bf16_support", lambda: None)
    for training in (False, True):
        assert devices.resolve_precision(cpu, "bf16", training=training) == torch.bfloat16
    assert "emulated" in devices.precision_warning(cpu, torch.bfloat16)
    assert devices.precision_warning(cpu, torch.float32) is None
    monkeypatch.setattr(devices, "cpu_bf16_support", lambda: "amx")
    assert devices.precision_warning(cpu, torch.bfloat16) is None
    assert devices.resolve_precision(cpu, "fp16") == torch.float16
    with pytest.raises(DeviceError, match="fp16 is not supported for training"):
        devices.resolve_precision(cpu, "fp16", training=True)


def test_auto_precision_is_the_measured_fastest(monkeypatch):
    """AMX -> bf16; AVX512-BF16 without AMX -> whatever the timing says; AVX2 only -> fp32."""
    cpu = torch.device("cpu")
    for support, faster, expected in (
        ("amx", False, torch.bfloat16),
        ("avx512_bf16", False, torch.float32),  # a Xeon: bf16 measured slower
        ("avx512_bf16", True, torch.bfloat16),  # an AMD EPYC: bf16 measured 3x faster
        (None, True, torch.float32),
    ):
        monkeypatch.setattr(devices, "cpu_bf16_support", lambda s=support: s)
        monkeypatch.setattr(devices, "cpu_bf16_measured_faster", lambda f=faster: f)
        assert devices.resolve_precision(cpu, "auto") == expected
        assert devices.resolve_precision(cpu, "auto", training=True) == expected
        warning = devices.precision_warning(cpu, torch.bfloat16)
        # an explicit bf16 is warned about exactly where auto would not pick it
        assert (warning is None) == (expected == torch.bfloat16)


def test_bf16_timing_is_measured_once_and_gated(monkeypatch):
    """The probe's speed-up decides against a 1.2x bar, and runs once per process."""
    calls = []

    def speedup(value):
        def probe():
            calls.append(value)
            return value

        return probe

    for value, faster in ((3.0, True), (1.1, False), (0.8, False)):
        devices.cpu_bf16_measured_faster.cache_clear()
        monkeypatch.setattr(devices, "_conv_speedup_bf16", speedup(value))
        assert devices.cpu_bf16_measured_faster() is faster
        assert devices.cpu_bf16_measured_faster() is faster
    assert calls == [3.0, 1.1, 0.8]
    devices.cpu_bf16_measured_faster.cache_clear()


def test_bf16_probe_times_real_convolutions_without_touching_the_global_rng():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    ratio = devices._conv_speedup_bf16(trials=1, reps=1)
    assert 0 < ratio < 1000
    assert torch.equal(torch.rand(3), expected)  # a seeded run draws the same numbers


def test_bf16_probe_times_one_thread_and_restores_the_thread_count(monkeypatch):
    seen = []

    def timed(trials, reps):
        seen.append(torch.get_num_threads())
        return 2.0

    monkeypatch.setattr(devices, "_time_conv_speedup", timed)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert devices._conv_speedup_bf16() == 2.0
        assert seen == [1]  # timed on one thread: a busy core cannot skew it
        assert torch.get_num_threads() == 2  # the caller's threads are back
    finally:
        torch.set_num_threads(before)


def test_cpu_autocast_context():
    x = torch.randn(1, 3, 8, 8)
    conv = torch.nn.Conv2d(3, 3, 3)
    with devices.autocast(torch.device("cpu"), torch.bfloat16):
        assert conv(x).dtype == torch.bfloat16
    with devices.autocast(torch.device("cpu"), torch.float32):
        assert conv(x).dtype == torch.float32
