"""Precision auto-selection follows measured speed, not feature flags alone."""

import torch

from dgn_cli import devices


def test_auto_precision_on_cpu_needs_amx(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert devices.resolve_precision(cpu, "auto") == torch.float32  # bf16 measured slower here
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert devices.resolve_precision(cpu, "auto") == torch.bfloat16
    assert devices.resolve_precision(cpu, "fp32") == torch.float32
    assert devices.resolve_precision(cpu, "bf16") == torch.bfloat16
