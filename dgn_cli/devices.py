"""Device and precision resolution, and the memory budget that sizes the default tile.

    resolve_device("auto" | "cpu" | "cuda" | "cuda:N" | "mps") -> torch.device
    resolve_precision(device, "auto" | "fp32" | "bf16" | "fp16") -> torch.dtype
    memory_budget(device) -> bytes the engine may use for one tile's activations

Rules:
- "auto" device: CUDA if PyTorch sees a GPU, else Apple MPS, else CPU. Asking for a device
  that is not there is a `DeviceError`, never a silent fall-back to the CPU.
- "auto" precision: bf16 on CUDA GPUs that support it (compute capability >= 8.0) and on
  CPUs with AMX tiles; fp32 everywhere else (older GPUs, MPS, other CPUs). CPUs with
  AVX512-BF16 but no AMX get fp32: measured on such a Xeon (torch 2.13, 2 threads), the DGN
  at 1280x720 ran 1.26x SLOWER in bf16 autocast than in fp32 (median of 4 paired runs; single
  3x3 convs 1.1-1.8x slower), so bf16 there would cost accuracy and buy nothing. `--precision
  bf16` still forces it. fp16 is never chosen automatically: its range overflows more
  easily (NaN/black tiles); the engine recomputes any non-finite tile in fp32 anyway.
- Memory budget: CUDA: half of the free memory on the card (`torch.cuda.mem_get_info`);
  MPS: a quarter of `torch.mps.recommended_max_memory()`; CPU: a quarter of the available
  RAM (MemAvailable in /proc/meminfo, else a quarter of the physical RAM), capped at 8 GiB.
"""

from __future__ import annotations

import os
import re

import torch

from dgn_cli.errors import DeviceError

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DTYPE_NAMES = {v: k for k, v in PRECISIONS.items()}
CPU_BUDGET_CAP = 8 * 2**30
_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda)(?::(\d+))?$")


def resolve_device(spec: str = "auto") -> torch.device:
    """Parse and check a --device value; raise `DeviceError` if it is not usable here."""
    m = _DEVICE_RE.match(str(spec).strip().lower())
    if not m or (m.group(2) is not None and m.group(1) != "cuda"):
        raise DeviceError(f"unknown device {spec!r}; use auto, cpu, cuda, cuda:N or mps")
    kind, index = m.group(1), m.group(2)
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if kind == "mps":
        if not _mps_available():
            raise DeviceError(
                "--device mps: Apple MPS is not available here; use --device cpu or auto"
            )
        return torch.device("mps")
    if not torch.cuda.is_available():
        build = "a CPU-only PyTorch build" if torch.version.cuda is None else "no visible GPU"
        raise DeviceError(
            f"--device {spec}: CUDA is not available ({build}, torch {torch.__version__}); "
            "use --device cpu or --device auto, or install a CUDA build of PyTorch"
        )
    n = torch.cuda.device_count()
    i = int(index) if index is not None else torch.cuda.current_device()
    if i >= n:
        raise DeviceError(f"--device {spec}: only {n} CUDA device(s) here (cuda:0..cuda:{n - 1})")
    return torch.device("cuda", i)


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def cpu_supports_bf16() -> bool:
    """True on CPUs whose bf16 matrix math beats fp32: those with AMX tiles (see the module
    docstring for why AVX512-BF16 alone does not count)."""
    probe = getattr(getattr(torch, "cpu", None), "_is_amx_tile_supported", None)
    try:
        return bool(probe is not None and probe())
    except Exception:  # a private probe may change between torch versions
        return False


def resolve_precision(device: torch.device, precision: str = "auto") -> torch.dtype:
    """Turn a --precision value into the autocast dtype for `device` (see module docstring)."""
    precision = str(precision).lower()
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        if device.type == "cpu":
            return torch.bfloat16 if cpu_supports_bf16() else torch.float32
        return torch.float32
    if precision not in PRECISIONS:
        raise DeviceError(f"unknown precision {precision!r}; use auto, fp32, bf16 or fp16")
    dtype = PRECISIONS[precision]
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DeviceError(
            f"--precision bf16: {torch.cuda.get_device_name(device)} has no bf16 support; "
            "use --precision fp16 or fp32"
        )
    return dtype


def precision_name(dtype: torch.dtype) -> str:
    return DTYPE_NAMES.get(dtype, str(dtype))


def device_name(device: torch.device) -> str:
    """Human-readable name: 'cuda:0 (NVIDIA H100)', 'cpu (AVX512, 16 threads)', 'mps'."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        try:
            capability = torch.backends.cpu.get_cpu_capability()
        except Exception:
            capability = "cpu"
        return f"cpu ({capability}, {torch.get_num_threads()} threads)"
    return str(device)


def available_ram() -> int:
    """Bytes of RAM available to a new allocation (Linux MemAvailable, else physical RAM / 4)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


def memory_budget(device: torch.device) -> int:
    """Bytes the engine may spend on one tile's activations (formula in the module docstring)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free // 2
    if device.type == "mps":
        recommended = getattr(torch.mps, "recommended_max_memory", None)
        return (recommended() if recommended else 8 * 2**30) // 4
    return min(available_ram() // 4, CPU_BUDGET_CAP)
